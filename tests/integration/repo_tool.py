#!/usr/bin/python3
"""Edit a file:// repository by hand, the way someone who can write to the
store could: for tests of what ferry does with such a repository.

    repo_tool.py REPO config-show
    repo_tool.py REPO config-set FIELD=VALUE ...   rewrite the config object
    repo_tool.py REPO add-plain-key                a key object without KDF
                                                   (KDF_NONE, a random master
                                                   key in the clear); prints
                                                   its key

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


def load_pb():
    src = os.environ.get("FERRY_SRC") or os.path.join(os.path.dirname(__file__), "..", "..")
    out = tempfile.mkdtemp(prefix="ferry-pb.")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", os.path.join(src, "proto"),
                    "--python_out=" + out, os.path.join(src, "proto", "ferry.proto")], check=True)
    sys.path.insert(0, out)
    import ferry_pb2  # noqa: E402
    return ferry_pb2


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
    elif cmd == "add-plain-key":
        kf = pb.KeyFile(kdf=pb.KDF_NONE, wrapped_master=secrets.token_bytes(64), hostname="attacker")
        key = "keys/" + secrets.token_hex(8)
        write_atomically(os.path.join(repo, key), kf.SerializeToString())
        print(key)
    else:
        sys.exit("unknown command %r" % cmd)


if __name__ == "__main__":
    main()
