#!/usr/bin/python3
"""The kernel's floor under the cut's frozen window: FIFREEZE + FITHAW of an
idle ext4 (nothing dirty, synced) on a loop device, after a pause before each
(as between two cuts), and again back to back.  freeze_super() first waits
for RCU grace periods (one per freeze level) unless the previous freeze was
a moment ago, so the first figure is what any freeze costs on this kernel,
whatever ferry does before it.  Must run as root.

  bench/freeze_floor.py [--work DIR] [--runs N] [--pause S]
"""
import argparse
import fcntl
import os
import shutil
import statistics
import subprocess
import tempfile
import time

FIFREEZE, FITHAW = 0xC0045877, 0xC0045878


def sh(*args):
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


def freeze_ms(fd):
    t = time.perf_counter()
    fcntl.ioctl(fd, FIFREEZE, 0)
    dt = (time.perf_counter() - t) * 1e3
    fcntl.ioctl(fd, FITHAW, 0)
    return dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/var/tmp")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--pause", type=float, default=0.5, help="seconds idle before each freeze (default 0.5)")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="ferry-freeze-floor.", dir=a.work)
    img, mnt = os.path.join(work, "vol.img"), os.path.join(work, "mnt")
    os.makedirs(mnt)
    sh("truncate", "-s", "1G", img)
    sh("mkfs.ext4", "-q", "-F", img)
    dev = sh("losetup", "-f", "--show", img)
    try:
        sh("mount", dev, mnt)
        try:
            fd = os.open(mnt, os.O_RDONLY)
            os.sync()
            paused, back = [], []
            for _ in range(a.runs):
                time.sleep(a.pause)  # idle time between cuts (what is measured, not a synchronisation)
                paused.append(freeze_ms(fd))
                back.append(freeze_ms(fd))
            os.close(fd)
        finally:
            sh("umount", mnt)
    finally:
        sh("losetup", "-d", dev)
        shutil.rmtree(work, ignore_errors=True)
    for name, v in (("after %.1f s idle" % a.pause, paused), ("right after another", back)):
        print("FIFREEZE of an idle ext4, %-20s p50 %6.2f ms  max %6.2f ms  (%d)" %
              (name, statistics.median(v), max(v), len(v)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
