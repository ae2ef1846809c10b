#!/usr/bin/python3
"""The CSI agent's latency rows (bench/run.sh --only csi).

  cut      CreateSnapshot of a mounted (ext4) volume, node-local class: the
           freeze -> reflink clone -> thaw inside the call.  Reported twice:
           the agent's own measure of the cut (its log line "cut in X ms") and
           the whole call as the client sees it.  1 GiB and 100 GiB sparse
           volumes, the same files on both, 256 KiB written before each cut;
           and 1 GiB with 64 MiB written (not synced) before each cut: the
           frozen window after heavy writes, target max <= 50 ms (the agent
           syncs the filesystem before it freezes it).
  delta    GetMetadataDelta between two snapshots of a 100 GiB volume with
           1000 separate 4 KiB writes between them, streamed to the end
           (max_results 256); the ranges are checked against the writes.

Percentiles are over every call of every run; medians per run are listed too.
Runs on a reflink XFS on a loop device (sparse backing file under --work).
Must run as root.  Writes OUT/csi-results.json and OUT/csi-table.txt.
"""
import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def sh(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw)


def pct(values, p):
    v = sorted(values)
    if not v:
        return None
    k = (len(v) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


class WriteProbe:
    """An application writing during the cut: a thread rewriting 4 KiB of a
    file on the volume every 2 ms, each write timed.  stop() ends it and
    returns the longest write in ms: how long the application was really
    held.  (The agent's own figure starts at FIFREEZE, and freeze_super first
    waits for RCU grace periods while writers still go through; the writes
    say when they were blocked.)"""

    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        self.longest = 0.0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        buf = os.urandom(4096)
        while not self.done.is_set():
            t = time.perf_counter()
            os.pwrite(self.fd, buf, 0)
            self.longest = max(self.longest, time.perf_counter() - t)
            time.sleep(0.002)

    def stop(self):
        self.done.set()
        self.thread.join()
        os.close(self.fd)
        return self.longest * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ferry", required=True)
    ap.add_argument("--src", required=True, help="the source tree (for proto/csi.proto)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cuts", type=int, default=40, help="snapshots per volume per run")
    ap.add_argument("--work", default=None, help="scratch directory (default: a new one in /var/tmp)")
    ap.add_argument("--write-probe", action="store_true",
                    help="an application writing 4 KiB every 2 ms during each call: its longest write (it slows "
                         "the calls, so the other rows are not comparable with runs without it)")
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix="ferry-csi-bench.", dir=a.work or "/var/tmp")
    py = os.path.join(work, "py")
    os.makedirs(py)
    sh("/usr/bin/python3", "-m", "grpc_tools.protoc", "-I" + os.path.join(a.src, "proto"), "-I/usr/include",
       "--python_out=" + py, "--grpc_python_out=" + py, os.path.join(a.src, "proto", "csi.proto"))
    sys.path.insert(0, py)
    import grpc
    import csi_pb2 as p
    import csi_pb2_grpc as g

    xfs_img, xfs = os.path.join(work, "xfs.img"), os.path.join(work, "xfs")
    kube = os.path.join(work, "kubelet")
    os.makedirs(xfs)
    os.makedirs(kube)
    sh("truncate", "-s", "256G", xfs_img)
    sh("mkfs.xfs", "-q", "-m", "reflink=1", xfs_img)
    sh("mount", "-o", "loop", xfs_img, xfs)
    sock = os.path.join(work, "csi.sock")
    log = open(os.path.join(work, "agent.log"), "w+")
    agent = subprocess.Popen([a.ferry, "agent", "--endpoint", "unix://" + sock, "--node-id", "bench",
                              "--state-dir", os.path.join(xfs, "state"), "--kubelet-dir", kube],
                             stderr=log, stdout=log)
    results = {"cut": {}, "delta": {}}
    published = []
    try:
        ch = grpc.insecure_channel("unix://" + sock)
        grpc.channel_ready_future(ch).result(timeout=30)
        ctl, node, sm = g.ControllerStub(ch), g.NodeStub(ch), g.SnapshotMetadataStub(ch)
        mode = p.VolumeCapability.AccessMode(mode=p.VolumeCapability.AccessMode.SINGLE_NODE_WRITER)
        mount_cap = p.VolumeCapability(mount=p.VolumeCapability.MountVolume(fs_type="ext4"), access_mode=mode)
        block_cap = p.VolumeCapability(block=p.VolumeCapability.BlockVolume(), access_mode=mode)

        def cut_ms_from_log(sid):
            log.flush()
            with open(log.name) as f:
                for line in f:
                    if sid in line and "cut in" in line:
                        return float(re.search(r"cut in ([0-9.]+) ms", line).group(1))
            return None

        # ---- the cut, 1 GiB and 100 GiB with 256 KiB written before each;
        # and 1 GiB with 64 MiB written before each (not synced): the frozen
        # window after heavy writes (the agent syncs before it freezes)
        for label, size, dirty, cuts in (("1GiB", 1 << 30, 256 << 10, a.cuts), ("100GiB", 100 << 30, 256 << 10, a.cuts),
                                         ("1GiB-64MiB-dirty", 1 << 30, 64 << 20, max(1, a.cuts // 4))):
            v = ctl.CreateVolume(p.CreateVolumeRequest(
                name="bench-cut-" + label, capacity_range=p.CapacityRange(required_bytes=size),
                volume_capabilities=[mount_cap])).volume
            tgt = os.path.join(kube, "cut-" + label)
            node.NodePublishVolume(p.NodePublishVolumeRequest(volume_id=v.volume_id, target_path=tgt,
                                                              volume_capability=mount_cap))
            published.append((v.volume_id, tgt))
            with open(os.path.join(tgt, "base"), "wb") as f:
                f.write(os.urandom(64 << 20))
            agent_ms, call_ms, stall_ms, medians = [], [], [], []
            for r in range(a.runs):
                run_calls = []
                for i in range(cuts):
                    with open(os.path.join(tgt, "f%d" % (i % 8)), "wb") as f:
                        f.write(os.urandom(dirty))  # dirty data for the freeze to flush
                    probe = WriteProbe(os.path.join(tgt, "probe")) if a.write_probe else None
                    t0 = time.perf_counter()
                    s = ctl.CreateSnapshot(p.CreateSnapshotRequest(
                        source_volume_id=v.volume_id, name="cut-%s-%d-%d" % (label, r, i))).snapshot
                    dt = (time.perf_counter() - t0) * 1e3
                    if probe:
                        stall_ms.append(probe.stop())
                    call_ms.append(dt)
                    run_calls.append(dt)
                    m = cut_ms_from_log(s.snapshot_id)
                    if m is not None:
                        agent_ms.append(m)
                    ctl.DeleteSnapshot(p.DeleteSnapshotRequest(snapshot_id=s.snapshot_id))
                medians.append(statistics.median(run_calls))
            results["cut"][label] = {
                "calls": len(call_ms),
                "agent_cut_ms": {"p50": pct(agent_ms, 50), "p99": pct(agent_ms, 99), "max": max(agent_ms)},
                "call_ms": {"p50": pct(call_ms, 50), "p99": pct(call_ms, 99), "max": max(call_ms)},
                "write_stall_ms": {"p50": pct(stall_ms, 50), "p99": pct(stall_ms, 99),
                                   "max": max(stall_ms)} if stall_ms else None,
                "call_median_per_run_ms": medians,
            }

        # ---- GetMetadataDelta on 100 GiB with 1000 changed ranges
        v = ctl.CreateVolume(p.CreateVolumeRequest(
            name="bench-delta", capacity_range=p.CapacityRange(required_bytes=100 << 30),
            volume_capabilities=[block_cap])).volume
        tgt = os.path.join(kube, "delta")
        node.NodePublishVolume(p.NodePublishVolumeRequest(volume_id=v.volume_id, target_path=tgt,
                                                          volume_capability=block_cap))
        published.append((v.volume_id, tgt))
        rnd = random.Random(1)
        with open(tgt, "r+b") as f:
            for off in range(0, 100 << 30, 1 << 30):   # some data everywhere first
                f.seek(off)
                f.write(os.urandom(1 << 20))
            f.flush()
            os.fsync(f.fileno())
        s1 = ctl.CreateSnapshot(p.CreateSnapshotRequest(source_volume_id=v.volume_id, name="delta-1")).snapshot
        slots = sorted(rnd.sample(range((100 << 30) // (64 << 20)), 1000))
        written = []
        with open(tgt, "r+b") as f:
            for s in slots:
                off = s * (64 << 20) + rnd.randrange(0, (64 << 20) // 4096 - 1) * 4096
                f.seek(off)
                f.write(os.urandom(4096))
                written.append((off, 4096))
            f.flush()
            os.fsync(f.fileno())
        s2 = ctl.CreateSnapshot(p.CreateSnapshotRequest(source_volume_id=v.volume_id, name="delta-2")).snapshot
        times, per_run = [], []
        for r in range(a.runs):
            run_t = []
            for _ in range(5):
                t0 = time.perf_counter()
                got = []
                for resp in sm.GetMetadataDelta(p.GetMetadataDeltaRequest(
                        base_snapshot_id=s1.snapshot_id, target_snapshot_id=s2.snapshot_id)):
                    got.extend((b.byte_offset, b.size_bytes) for b in resp.block_metadata)
                dt = (time.perf_counter() - t0) * 1e3
                times.append(dt)
                run_t.append(dt)
            per_run.append(statistics.median(run_t))
        results["delta"] = {
            "volume_bytes": 100 << 30, "ranges_written": len(written), "ranges_streamed": len(got),
            "exact": got == written,
            "ms": {"p50": pct(times, 50), "p99": pct(times, 99), "max": max(times)},
            "median_per_run_ms": per_run,
        }
    finally:
        for vid, tgt in published:
            try:
                node.NodeUnpublishVolume(p.NodeUnpublishVolumeRequest(volume_id=vid, target_path=tgt))
            except Exception as e:  # noqa: BLE001 - cleanup goes on
                print("csi bench: unpublish %s: %s" % (tgt, e), file=sys.stderr)
        agent.terminate()
        agent.wait(timeout=60)
        subprocess.run(["umount", xfs])
        shutil.rmtree(work, ignore_errors=True)

    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "csi-results.json"), "w") as f:
        json.dump(results, f, indent=1)
    lines = ["%-34s %10s %10s %10s  %s" % ("row", "p50 ms", "p99 ms", "max ms", "target")]
    for label in ("1GiB", "100GiB", "1GiB-64MiB-dirty"):
        c = results["cut"][label]
        if label.endswith("dirty"):
            target = "max <= 50 ms: " + ("PASS" if c["agent_cut_ms"]["max"] <= 50 else "FAIL")
        else:
            target = "p99 <= 50 ms: " + ("PASS" if c["agent_cut_ms"]["p99"] <= 50 else "FAIL")
        lines.append("%-34s %10.2f %10.2f %10.2f  %s" % (
            "cut in CreateSnapshot, " + label + " (agent)", c["agent_cut_ms"]["p50"], c["agent_cut_ms"]["p99"],
            c["agent_cut_ms"]["max"], target))
        lines.append("%-34s %10.2f %10.2f %10.2f  %s" % (
            "CreateSnapshot call, " + label, c["call_ms"]["p50"], c["call_ms"]["p99"], c["call_ms"]["max"],
            "(%d calls)" % c["calls"]))
        w = c["write_stall_ms"]
        if w:
            lines.append("%-34s %10.2f %10.2f %10.2f  %s" % (
                "longest write stall, " + label, w["p50"], w["p99"], w["max"],
                "(an application's 4 KiB writes during the call)"))
    d = results["delta"]
    lines.append("%-34s %10.2f %10.2f %10.2f  %s" % (
        "GetMetadataDelta 100 GiB, 1000 ranges", d["ms"]["p50"], d["ms"]["p99"], d["ms"]["max"],
        "< 100 ms: " + ("PASS" if d["ms"]["p99"] < 100 else "FAIL") + ("" if d["exact"] else " (RANGES WRONG)")))
    table = "\n".join(lines) + "\n"
    with open(os.path.join(a.out, "csi-table.txt"), "w") as f:
        f.write(table)
    print(table, end="")
    return 0 if d["exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
