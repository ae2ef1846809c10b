"""Shared helpers of the CSI tests (tests/csi/test_*.py).

The tests drive `ferry agent` the way kubelet and the CSI sidecars do: over
its unix socket, with Python stubs generated from proto/csi.proto
(gen_stubs.sh), never through the agent's own code.  tests/csi/run.sh sets
the scene and the environment:

  FERRY            the ferry binary under test
  CSI_STUBS        directory holding csi_pb2.py / csi_pb2_grpc.py
  CSI_STATE_ROOT   a loop-mounted XFS (reflink=1): each agent's --state-dir
                   is a directory in it
  CSI_KUBELET_ROOT each agent's --kubelet-dir is a directory in it
  CSI_WORK         scratch space on another filesystem: sockets, logs,
                   repositories, restored images
"""
import errno
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import unittest
import urllib.request
import uuid

import grpc

FERRY = os.environ["FERRY"]
STUBS = os.environ["CSI_STUBS"]
STATE_ROOT = os.environ["CSI_STATE_ROOT"]
KUBELET_ROOT = os.environ["CSI_KUBELET_ROOT"]
WORK = os.environ["CSI_WORK"]
SRC_DIR = os.environ.get("FERRY_SRC") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

sys.path.insert(0, STUBS)
import csi_pb2 as pb  # noqa: E402
import csi_pb2_grpc as pbg  # noqa: E402

DRIVER = "ferry.csi.dev"
TOPOLOGY_KEY = "topology.ferry.csi.dev/node"
P_REPO = "ferry.csi.dev/repository"
P_COPY = "ferry.csi.dev/copy-to"
P_COPY_OPT = "ferry.csi.dev/copy-to-optional"
P_CREATE = "ferry.csi.dev/create-repository"
P_HOOK = "ferry.csi.dev/hook"
P_FREEZE = "ferry.csi.dev/freeze"
P_VS_NAME = "csi.storage.k8s.io/volumesnapshot/name"
P_VS_NS = "csi.storage.k8s.io/volumesnapshot/namespace"
P_VSC_NAME = "csi.storage.k8s.io/volumesnapshotcontent/name"
L_SNAPSHOT_ID = "ferry.csi.dev/snapshot-id"

MiB = 1 << 20
GiB = 1 << 30
BS = 4096                  # the block granularity of the metadata checks
PASSWORD = "csi-test-password-7f3a9c"   # the repositories' password (distinctive: grepped for in logs)
SCRYPT_LOG2N = "12"        # a cheap KDF for test repositories

START_MARK = "==== csilib: start #"   # csilib's own line in an agent's log, before each start

Code = grpc.StatusCode
AM = pb.VolumeCapability.AccessMode
PIDFILE = os.path.join(WORK, "agent.pids")    # run.sh kills whatever is left in it


def log(msg):
    print("  # " + msg, flush=True)


# ------------------------------------------------------------------ the agent

class Agent:
    """One `ferry agent` process with its own state and kubelet directories.

    Logs (stdout and stderr) go, appended across restarts, to WORK/NAME.log.
    log_format="json": --log-format json (json_log() parses it).
    metrics=True: --metrics-address 127.0.0.1:0 (a free port, which the
    agent logs; metrics_url is set at each start)."""

    def __init__(self, name, node_id="node-a", upload_workers=None, local_snapshots=None,
                 config=None, debug=True, extra_args=(), log_format=None, metrics=False, env=None):
        self.name = name
        self.node_id = node_id
        self.state = os.path.join(STATE_ROOT, name)
        self.kubelet = os.path.join(KUBELET_ROOT, name)
        self.sock = os.path.join(WORK, name + ".sock")
        self.log_path = os.path.join(WORK, name + ".log")
        self.config_path = None
        os.makedirs(self.state, exist_ok=True)
        os.makedirs(self.kubelet, exist_ok=True)
        self.args = [FERRY, "agent", "--endpoint", "unix://" + self.sock, "--node-id", node_id,
                     "--state-dir", self.state, "--kubelet-dir", self.kubelet]
        if config is not None:
            self.config_path = os.path.join(WORK, name + ".conf")
            with open(self.config_path, "w") as f:
                f.write(config)
            self.args += ["--config", self.config_path]
        if upload_workers is not None:
            self.args += ["--upload-workers", str(upload_workers)]
        if local_snapshots is not None:
            self.args += ["--local-snapshots", str(local_snapshots)]
        if debug:
            self.args.append("--debug")
        self.log_format = log_format or "text"
        if log_format:
            self.args += ["--log-format", log_format]
        self.metrics = metrics
        self.metrics_url = None
        if metrics:
            self.args += ["--metrics-address", "127.0.0.1:0"]
        self.args += list(extra_args)
        self.extra_env = dict(env or {})
        self.proc = None
        self.channel = None
        self.starts = 0

    # -- process
    def start(self, timeout=60):
        """Start the agent and wait (with a deadline) until Probe says ready."""
        assert self.proc is None, "agent already running"
        self.starts += 1
        env = dict(os.environ)
        env.pop("CSI_ENDPOINT", None)
        env.pop("NODE_ID", None)
        env.pop("FERRY_PASSWORD", None)     # secrets reach the agent only through CSI calls
        env["FERRY_SCRYPT_LOG2N"] = SCRYPT_LOG2N
        env.update(self.extra_env)
        with open(self.log_path, "a") as lf:
            lf.write("%s%d: %s\n" % (START_MARK, self.starts, " ".join(self.args)))
            lf.flush()
            self.log_offset = lf.tell()     # where this start's lines begin
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=lf,
                                         stderr=subprocess.STDOUT, env=env)
        with open(PIDFILE, "a") as f:
            f.write("%d %s\n" % (self.proc.pid, self.sock))
        self.t_start = time.monotonic()
        deadline = time.monotonic() + timeout
        last = None
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self.proc = None
                raise AssertionError("agent %s exited with %s during start-up; log tail:\n%s"
                                     % (self.name, rc, self.log_tail()))
            if os.path.exists(self.sock):
                self._connect()
                try:
                    r = self.identity.Probe(pb.ProbeRequest(), timeout=2)
                    if not r.HasField("ready") or r.ready.value:
                        if self.metrics:
                            self.metrics_url = self._metrics_url()
                        return self
                    last = "Probe: ready=false"
                except grpc.RpcError as e:
                    last = "Probe: %s %s" % (e.code().name, e.details())
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError("agent %s not ready within %ds (%s); log tail:\n%s"
                                     % (self.name, timeout, last, self.log_tail()))
            time.sleep(0.05)

    def _metrics_url(self):
        """The URL the agent logged for its metrics at this start (it
        logs it before it serves the CSI socket)."""
        with open(self.log_path, "rb") as f:
            f.seek(self.log_offset)
            text = f.read().decode("utf-8", "replace")
        for ln in text.splitlines():
            if self.log_format == "json":
                try:
                    ln = json.loads(ln).get("msg", "")
                except ValueError:
                    continue
            m = re.search(r"metrics: serving (http://\S+/metrics)", ln)
            if m:
                return m.group(1)
        raise AssertionError("agent %s: no 'metrics: serving' line in its log:\n%s" % (self.name, self.log_tail()))

    def scrape(self, timeout=30):
        """The text of GET /metrics."""
        with urllib.request.urlopen(self.metrics_url, timeout=timeout) as r:
            assert r.status == 200, "GET %s: %s" % (self.metrics_url, r.status)
            ctype = r.headers.get("Content-Type", "")
            assert ctype.startswith("text/plain; version=0.0.4"), "Content-Type %r" % ctype
            return r.read().decode("utf-8")

    def json_log(self):
        """The agent's log as JSON objects, one a line (csilib's own start
        lines skipped); fails on a line that is not one."""
        out = []
        for i, ln in enumerate(self.log_text().splitlines()):
            if ln.startswith(START_MARK) or not ln:
                continue
            try:
                obj = json.loads(ln)
            except ValueError as e:
                raise AssertionError("agent %s: log line %d is not JSON (%s): %r" % (self.name, i + 1, e, ln[:300]))
            assert isinstance(obj, dict), "log line %d is not an object: %r" % (i + 1, ln[:300])
            out.append(obj)
        return out

    def _connect(self):
        if self.channel is None:
            self.channel = grpc.insecure_channel("unix://" + self.sock)
            self.identity = pbg.IdentityStub(self.channel)
            self.controller = pbg.ControllerStub(self.channel)
            self.node = pbg.NodeStub(self.channel)
            self.meta = pbg.SnapshotMetadataStub(self.channel)
            self.group = pbg.GroupControllerStub(self.channel)

    def _disconnect(self):
        if self.channel is not None:
            self.channel.close()
            self.channel = None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Signal the agent and wait for it; returns (exit status, seconds taken).
        SIGKILLs it (and fails) if it outlives the timeout."""
        if self.proc is None:
            return None, 0.0
        self._disconnect()
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            raise AssertionError("agent %s still running %ds after %s; log tail:\n%s"
                                 % (self.name, timeout, signal.Signals(sig).name, self.log_tail()))
        self.proc = None
        return rc, time.monotonic() - t0

    def kill(self):
        """SIGKILL: no chance to clean up."""
        if self.proc is None:
            return
        self._disconnect()
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def restart(self, **kw):
        self.stop()
        return self.start(**kw)

    # -- log
    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log_tail(self, n=40):
        return "\n".join(self.log_text().splitlines()[-n:])

    def log_grep(self, needle):
        return [ln for ln in self.log_text().splitlines() if needle in ln]

    def sanitizer_reports(self):
        t = self.log_text()
        return [w for w in ("AddressSanitizer", "LeakSanitizer", "runtime error:", "ThreadSanitizer")
                if w in t]

    # -- paths
    def vol_img(self, vol_id):
        return os.path.join(self.state, "volumes", vol_id + ".img")

    def snap_img(self, snap_id):
        return os.path.join(self.state, "snapshots", snap_id + ".img")

    def block_target(self, pv=None):
        """A block publish target like kubelet's: the parent exists, the file does not."""
        pv = pv or "pvc-" + uuid.uuid4().hex[:12]
        d = os.path.join(self.kubelet, "plugins/kubernetes.io/csi/volumeDevices/publish", pv)
        os.makedirs(d, exist_ok=True)
        return os.path.join(d, str(uuid.uuid4()))

    def mount_target(self, pv=None):
        """A mount publish target like kubelet's: the parent exists, the directory does not."""
        pv = pv or "pvc-" + uuid.uuid4().hex[:12]
        d = os.path.join(self.kubelet, "pods", str(uuid.uuid4()), "volumes/kubernetes.io~csi", pv)
        os.makedirs(d, exist_ok=True)
        return os.path.join(d, "mount")

    # -- calls
    def create_volume(self, name, size, cap=None, snapshot=None, secrets=None, parameters=None,
                      timeout=120):
        req = pb.CreateVolumeRequest(name=name, capacity_range=pb.CapacityRange(required_bytes=size),
                                     volume_capabilities=[cap or block_cap()],
                                     parameters=parameters or {}, secrets=secrets or {})
        if snapshot:
            req.volume_content_source.snapshot.snapshot_id = snapshot
        return self.controller.CreateVolume(req, timeout=timeout).volume

    def delete_volume(self, vol_id, timeout=60):
        return self.controller.DeleteVolume(pb.DeleteVolumeRequest(volume_id=vol_id), timeout=timeout)

    def publish(self, vol_id, target, cap=None, readonly=False, timeout=120):
        req = pb.NodePublishVolumeRequest(volume_id=vol_id, target_path=target,
                                          volume_capability=cap or block_cap(), readonly=readonly)
        self.node.NodePublishVolume(req, timeout=timeout)
        return target

    def unpublish(self, vol_id, target, timeout=60):
        return self.node.NodeUnpublishVolume(
            pb.NodeUnpublishVolumeRequest(volume_id=vol_id, target_path=target), timeout=timeout)

    def create_snapshot(self, vol_id, name, parameters=None, secrets=None, timeout=120):
        req = pb.CreateSnapshotRequest(source_volume_id=vol_id, name=name,
                                       parameters=parameters or {}, secrets=secrets or {})
        return self.controller.CreateSnapshot(req, timeout=timeout).snapshot

    def delete_snapshot(self, snap_id, timeout=60):
        return self.controller.DeleteSnapshot(pb.DeleteSnapshotRequest(snapshot_id=snap_id),
                                              timeout=timeout)

    def list_snapshots(self, max_entries=0, **kw):
        """Every snapshot, following next_token; returns the list of Snapshot messages."""
        out, token, pages = [], "", 0
        while True:
            r = self.controller.ListSnapshots(
                pb.ListSnapshotsRequest(max_entries=max_entries, starting_token=token, **kw), timeout=30)
            pages += 1
            if max_entries:
                assert len(r.entries) <= max_entries, \
                    "ListSnapshots returned %d entries for max_entries=%d" % (len(r.entries), max_entries)
            out += [e.snapshot for e in r.entries]
            if not r.next_token:
                return out
            assert pages < 10000, "ListSnapshots paging does not end"
            token = r.next_token

    def get_snapshot(self, snap_id):
        """The snapshot as ListSnapshots(snapshot_id=...) shows it, or None."""
        r = self.controller.ListSnapshots(pb.ListSnapshotsRequest(snapshot_id=snap_id), timeout=30)
        found = [e.snapshot for e in r.entries if e.snapshot.snapshot_id == snap_id]
        assert len(found) <= 1, "ListSnapshots(snapshot_id=%s) lists it %d times" % (snap_id, len(found))
        return found[0] if found else None

    def wait_ready(self, snap_id, timeout=180):
        """Poll ListSnapshots until the snapshot is ready_to_use; fails at the deadline."""
        deadline = time.monotonic() + timeout
        s = None
        while time.monotonic() < deadline:
            s = self.get_snapshot(snap_id)
            if s is not None and s.ready_to_use:
                return s
            if not self.running():
                raise AssertionError("agent died while waiting for %s; log tail:\n%s"
                                     % (snap_id, self.log_tail()))
            time.sleep(0.1)
        raise AssertionError("snapshot %s not ready_to_use within %ds (last seen: %s); log tail:\n%s"
                             % (snap_id, timeout, s, self.log_tail()))

    def metadata(self, kind, timeout=60, **req):
        """All responses of GetMetadataAllocated ("allocated") or GetMetadataDelta ("delta")."""
        if kind == "allocated":
            it = self.meta.GetMetadataAllocated(pb.GetMetadataAllocatedRequest(**req), timeout=timeout)
        else:
            it = self.meta.GetMetadataDelta(pb.GetMetadataDeltaRequest(**req), timeout=timeout)
        return list(it)


# ------------------------------------------------------------- capabilities

def block_cap(mode=AM.SINGLE_NODE_WRITER):
    return pb.VolumeCapability(block=pb.VolumeCapability.BlockVolume(),
                               access_mode=pb.VolumeCapability.AccessMode(mode=mode))


def mount_cap(fs_type="", flags=(), mode=AM.SINGLE_NODE_WRITER):
    return pb.VolumeCapability(mount=pb.VolumeCapability.MountVolume(fs_type=fs_type, mount_flags=list(flags)),
                               access_mode=pb.VolumeCapability.AccessMode(mode=mode))


# ------------------------------------------------------------- repositories

def ferry(*args, password=PASSWORD, check=True, timeout=600):
    env = dict(os.environ)
    env["FERRY_PASSWORD"] = password
    env["FERRY_SCRYPT_LOG2N"] = SCRYPT_LOG2N
    env.pop("FERRY_REPO", None)
    p = subprocess.run([FERRY] + list(args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError("ferry %s: exit %d\nstdout: %s\nstderr: %s"
                             % (" ".join(args), p.returncode, p.stdout.decode(errors="replace")[-2000:],
                                p.stderr.decode(errors="replace")[-2000:]))
    return p


def new_repo(name, password=PASSWORD, init=True):
    """A file:// repository in WORK (initialised with `ferry init` unless init=False)."""
    path = os.path.join(WORK, "repos", name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    url = "file://" + path
    if init:
        ferry("init", "--repo", url, password=password)
    return url, path


def repo_snapshots(url, password=PASSWORD):
    p = ferry("snapshots", "--repo", url, "--json", password=password)
    return json.loads(p.stdout.decode())


def repo_snapshot_of(url, csi_snap_id, password=PASSWORD):
    """The one repository snapshot whose labels name this CSI snapshot."""
    found = [s for s in repo_snapshots(url, password)
             if s.get("labels", {}).get(L_SNAPSHOT_ID) == csi_snap_id]
    assert len(found) == 1, "%d repository snapshots labelled %s=%s in %s" % (
        len(found), L_SNAPSHOT_ID, csi_snap_id, url)
    return found[0]


def count_files(d):
    n = 0
    for _, _, files in os.walk(d):
        n += sum(1 for f in files if not f.startswith(".tmp-"))
    return n


# ------------------------------------------------------------------- data

def prand(n, seed):
    """n deterministic pseudo-random bytes."""
    r = random.Random(seed)
    return b"".join(r.randbytes(min(MiB, n - i)) for i in range(0, n, MiB))


def prand_stream(n, seed, chunk=4 * MiB):
    """n deterministic pseudo-random bytes in chunks, fast (AES-128-CTR
    keystream from openssl), for volumes too big to hold in memory."""
    p = subprocess.Popen(["openssl", "enc", "-aes-128-ctr", "-nosalt", "-pass", "pass:%s" % seed,
                          "-in", "/dev/zero"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        left = n
        while left > 0:
            b = p.stdout.read(min(chunk, left))
            if not b:
                raise AssertionError("openssl keystream ended early")
            left -= len(b)
            yield b
    finally:
        p.kill()
        p.stdout.close()
        p.wait()


def fill_prand(path, n, seed):
    """Write prand_stream(n, seed) from offset 0 of path (a device), then
    fsync: a volume full of data that never dedupes."""
    fd = os.open(path, os.O_WRONLY)
    try:
        off = 0
        for b in prand_stream(n, seed):
            os.pwrite(fd, b, off)
            off += len(b)
        os.fsync(fd)
    finally:
        os.close(fd)


def pwrite_sync(path, offset, data):
    fd = os.open(path, os.O_RDWR)
    try:
        done = 0
        while done < len(data):
            done += os.pwrite(fd, data[done:], offset + done)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_range(path, offset, length):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def sha256_of(path, length=None, chunk=8 * MiB):
    h = hashlib.sha256()
    left = length
    with open(path, "rb") as f:
        while left is None or left > 0:
            b = f.read(chunk if left is None else min(chunk, left))
            if not b:
                break
            h.update(b)
            if left is not None:
                left -= len(b)
    return h.hexdigest()


def first_difference(path, expected, chunk=4 * MiB):
    """Offset of the first byte where the file differs from expected (bytes-like),
    or None when they are equal (a shorter file differs at its end)."""
    mv = memoryview(expected)
    with open(path, "rb") as f:
        off = 0
        while off < len(mv):
            b = f.read(min(chunk, len(mv) - off))
            if len(b) == 0:
                return off
            if b != mv[off:off + len(b)]:
                for i in range(len(b)):
                    if b[i] != mv[off + i]:
                        return off + i
            off += len(b)
    return None


def blocks(ranges, bs=BS):
    """The set of bs-sized block numbers that (offset, length) ranges touch."""
    out = set()
    for off, ln in ranges:
        if ln <= 0:
            continue
        out.update(range(off // bs, (off + ln - 1) // bs + 1))
    return out


def merged(block_set, bs=BS):
    """Block numbers as sorted, merged (offset, length) byte ranges."""
    out = []
    for b in sorted(block_set):
        if out and out[-1][0] + out[-1][1] == b * bs:
            out[-1][1] += bs
        else:
            out.append([b * bs, bs])
    return [tuple(r) for r in out]


def tuples(responses):
    """(offset, length) tuples of a metadata stream, in order."""
    return [(m.byte_offset, m.size_bytes) for r in responses for m in r.block_metadata]


def merge_ranges(rs):
    out = []
    for off, ln in sorted(rs):
        if out and off <= out[-1][0] + out[-1][1]:
            end = max(out[-1][0] + out[-1][1], off + ln)
            out[-1][1] = end - out[-1][0]
        else:
            out.append([off, ln])
    return [tuple(r) for r in out]


# ------------------------------------------------------------ mounts, loops

def mountinfo():
    """[(mount point, fs type, mount options, super options, source)] of this mount namespace."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            a, b = line.rstrip("\n").split(" - ", 1)
            fa, fb = a.split(" "), b.split(" ")
            mp = fa[4].encode().decode("unicode_escape")
            out.append((mp, fb[0], fa[5], fb[2] if len(fb) > 2 else "", fb[1]))
    return out


def mounts_at(path):
    return [m for m in mountinfo() if m[0] == path]


def mounts_under(prefix):
    prefix = prefix.rstrip("/") + "/"
    return [m for m in mountinfo() if m[0].startswith(prefix)]


def loops_backed_by(path):
    """Loop devices whose backing file is path (also when it was deleted)."""
    p = subprocess.run(["losetup", "-n", "-l", "-O", "NAME,BACK-FILE"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL)
    out = []
    for line in p.stdout.decode(errors="replace").splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2:
            back = parts[1].strip()
            if back.endswith(" (deleted)"):
                back = back[:-len(" (deleted)")]
            if back == path:
                out.append(parts[0])
    return out


# --------------------------------------------------------------- test base

class AgentTest(unittest.TestCase):
    """A TestCase with status-code assertions and sanitizer checks."""

    maxDiff = 4000

    def assertCode(self, code, fn, req, what, timeout=60):
        """The call must fail with this gRPC status code; returns the error."""
        try:
            resp = fn(req, timeout=timeout)
            if hasattr(resp, "__iter__") and not hasattr(resp, "ListFields"):
                resp = list(resp)   # a server stream: the status comes at its end
        except grpc.RpcError as e:
            self.assertEqual(e.code(), code, "%s: got %s (%s), want %s"
                             % (what, e.code().name, e.details(), code.name))
            return e
        self.fail("%s: succeeded (%s), want %s" % (what, str(resp)[:300].replace("\n", " "), code.name))

    def assertOK(self, fn, req, what, timeout=60):
        try:
            resp = fn(req, timeout=timeout)
            if hasattr(resp, "__iter__") and not hasattr(resp, "ListFields"):
                resp = list(resp)
            return resp
        except grpc.RpcError as e:
            self.fail("%s: failed with %s (%s), want OK" % (what, e.code().name, e.details()))

    def assertAgentClean(self, agent):
        bad = agent.sanitizer_reports()
        self.assertEqual(bad, [], "sanitizer reports in the agent log %s:\n%s"
                         % (agent.log_path, agent.log_tail(80)))


class StopsClean:
    """Mixed into a TestCase whose class-wide agent is cls.agent: the last
    test stops it with SIGTERM and wants exit 0 and no sanitizer report."""

    def test_zz_stop_clean(self):
        a = self.agent
        rc, _ = a.stop()
        self.assertEqual(rc, 0, "exit status after SIGTERM")
        self.assertAgentClean(a)


def enoent_ok(fn, *a):
    try:
        fn(*a)
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise


def main():
    unittest.main(verbosity=2)
