#!/usr/bin/python3
"""Edit a file:// repository by hand, the way someone who can write to the
store could: for tests of what ferry does with such a repository.

    repo_tool.py REPO config-show
    repo_tool.py REPO config-set FIELD=VALUE ...   rewrite the config object
    repo_tool.py REPO add-plain-key                a key object without KDF
                                                   (KDF_NONE, a random master
                                                   key in the clear); prints
                                                   its key
    repo_tool.py REPO add-manifest VOLUME [K=V ...]
                                                   a manifest of an empty
                                                   volume with that name and
                                                   labels (an unencrypted
                                                   repository: no key needed);
                                                   prints its id
    repo_tool.py REPO add-lock HOSTNAME            a live shared lock of a
                                                   backup on that host
                                                   (unencrypted repository)

In VOLUME, K, V and HOSTNAME, the text INVALIDUTF8 is replaced by 11 bytes
that are not UTF-8 (Python's protobuf would not write those).

FIELD is a RepoConfig field (proto/ferry.proto): encryption (NONE or
AES256_GCM), compression (NONE or DEFLATE), chunk_size, compression_level,
format_version, folders (true/false), repo_id (32 hex digits).  The Python
classes come from proto/ferry.proto, compiled at each run with grpc_tools
(python3-grpc-tools); FERRY_SRC names the source tree (ctest sets it).
"""
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time


def load_pb():
    src = os.environ.get("FERRY_SRC") or os.path.join(os.path.dirname(__file__), "..", "..")
    out = tempfile.mkdtemp(prefix="ferry-pb.")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", os.path.join(src, "proto"),
                    "--python_out=" + out, os.path.join(src, "proto", "ferry.proto")], check=True)
    sys.path.insert(0, out)
    import ferry_pb2  # noqa: E402
    return ferry_pb2


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def frame(magic, plain):
    """A sealed object of an unencrypted repository (docs/FORMAT.md): the
    24-byte header, then the body stored raw."""
    le = lambda v: v.to_bytes(4, "little")  # noqa: E731
    hdr = magic + bytes([1, 0, 0, 0]) + le(len(plain)) + le(crc32c(plain)) + le(len(plain))
    return hdr + le(crc32c(hdr)) + plain


def not_utf8(data):
    return data.replace(b"INVALIDUTF8", b"\xff\xfe\xc0\x80invalid")


def write_atomically(path, data):
    tmp = path + ".repo_tool"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    repo, cmd, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    pb = load_pb()
    cfg_path = os.path.join(repo, "config")
    cfg = pb.RepoConfig()
    with open(cfg_path, "rb") as f:
        cfg.ParseFromString(f.read())
    if cmd == "config-show":
        print(json.dumps({"format_version": cfg.format_version, "repo_id": cfg.repo_id.hex(),
                          "chunk_size": cfg.chunk_size,
                          "compression": pb.Compression.Name(cfg.compression),
                          "compression_level": cfg.compression_level,
                          "encryption": pb.Encryption.Name(cfg.encryption), "folders": cfg.folders}))
    elif cmd == "config-set":
        for a in args:
            k, _, v = a.partition("=")
            if k == "encryption":
                cfg.encryption = pb.Encryption.Value("ENCRYPTION_" + v)
            elif k == "compression":
                cfg.compression = pb.Compression.Value("COMPRESSION_" + v)
            elif k == "folders":
                cfg.folders = v == "true"
            elif k == "repo_id":
                cfg.repo_id = bytes.fromhex(v)
            elif k in ("chunk_size", "compression_level", "format_version"):
                setattr(cfg, k, int(v))
            else:
                sys.exit("unknown field %r" % k)
        write_atomically(cfg_path, cfg.SerializeToString())
    elif cmd in ("add-manifest", "add-lock"):
        if cfg.encryption != pb.ENCRYPTION_NONE:
            sys.exit("%s writes into unencrypted repositories only" % cmd)
        oid = secrets.token_bytes(16)
        now = time.time_ns()
        if cmd == "add-manifest":
            m = pb.Manifest(format_version=1, snapshot_id=oid, volume=args[0], size=0,
                            chunk_size=cfg.chunk_size, created_unix_nano=now, hostname="hostile",
                            source="/dev/null")
            for kv in args[1:]:
                k, _, v = kv.partition("=")
                m.labels[k] = v
            key, obj = "snapshots/" + oid.hex(), frame(b"FYM1", not_utf8(m.SerializeToString()))
        else:
            lk = pb.Lock(exclusive=False, command="backup", hostname=args[0], pid=999999,
                         created_unix_nano=now, refreshed_unix_nano=now, pid_namespace="pid:[1]")
            key, obj = "locks/" + oid.hex(), frame(b"FYL1", not_utf8(lk.SerializeToString()))
        os.makedirs(os.path.dirname(os.path.join(repo, key)), exist_ok=True)
        write_atomically(os.path.join(repo, key), obj)
        print(oid.hex())
    elif cmd == "add-plain-key":
        kf = pb.KeyFile(kdf=pb.KDF_NONE, wrapped_master=secrets.token_bytes(64), hostname="attacker")
        key = "keys/" + secrets.token_hex(8)
        write_atomically(os.path.join(repo, key), kf.SerializeToString())
        print(key)
    else:
        sys.exit("unknown command %r" % cmd)


if __name__ == "__main__":
    main()
