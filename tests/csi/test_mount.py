#!/usr/bin/python3
"""CSI: mount access (XFS and ext4), freeze hooks, the freeze itself,
readonly publishes, mount flags, NodeGetVolumeStats, idempotent unpublish.

How the freeze is seen from outside:
- a file written just before CreateSnapshot without fsync (and one the pre
  hook writes into the volume) must be in the snapshot: read back from a
  volume restored from it, published read-only;
- ext4 keeps the `needs_recovery` feature set in its on-disk superblock
  while mounted and clears it only when frozen (or unmounted): a snapshot
  cut under FIFREEZE has it clear, one cut with freeze "false" has it set
  (the control that shows the check can fail)."""
import errno
import fcntl
import os
import struct
import subprocess
import uuid

from csilib import (StopsClean, P_FREEZE, P_HOOK, P_REPO, PASSWORD, WORK, MiB, Agent, AgentTest, Code, ferry,
                    log, main, mount_cap, mounts_at, new_repo, pb, prand, read_range,
                    repo_snapshot_of)

MARKS = os.path.join(WORK, "hook-marks")
HOOK = """#!/bin/sh
# {which} hook of the CSI tests: record when and with what environment it ran.
set -e
t=$(date +%s%N)
f={marks}/{which}.$FERRY_SNAPSHOT_NAME
{{
  echo "time=$t"
  echo "FERRY_VOLUME_ID=$FERRY_VOLUME_ID"
  echo "FERRY_VOLUME_NAME=$FERRY_VOLUME_NAME"
  echo "FERRY_SNAPSHOT_NAME=$FERRY_SNAPSHOT_NAME"
  echo "FERRY_MOUNT_PATH=$FERRY_MOUNT_PATH"
}} > "$f.tmp"
mv "$f.tmp" "$f"
{extra}
"""
# The pre hook also writes into the volume, without syncing: the freeze that
# follows it must carry this into the snapshot.
PRE_EXTRA = 'echo "pre-hook $t" > "$FERRY_MOUNT_PATH/written-by-pre-hook"'


def read_marks(which, snap_name):
    path = os.path.join(MARKS, "%s.%s" % (which, snap_name))
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)


def ext4_features(image):
    p = subprocess.run(["dumpe2fs", "-h", image], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise AssertionError("dumpe2fs -h %s: %s" % (image, p.stderr.decode(errors="replace")))
    for line in p.stdout.decode().splitlines():
        if line.startswith("Filesystem features:"):
            return line.split(":", 1)[1].split()
    raise AssertionError("dumpe2fs -h %s: no features line" % image)


def debugfs_cat(image, path):
    p = subprocess.run(["debugfs", "-R", "cat " + path, image], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p.stdout


def logical_sector_size(dev):
    """BLKSSZGET of a block device."""
    fd = os.open(dev, os.O_RDONLY)
    try:
        return struct.unpack("i", fcntl.ioctl(fd, 0x1268, b"\0" * 4))[0]   # BLKSSZGET
    finally:
        os.close(fd)


def write_file(path, data, sync=True):
    with open(path, "wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


class Mount(StopsClean, AgentTest):
    @classmethod
    def setUpClass(cls):
        os.makedirs(MARKS, exist_ok=True)
        hooks = os.path.join(WORK, "hooks")
        os.makedirs(hooks, exist_ok=True)
        for which, extra in (("pre", PRE_EXTRA), ("post", "")):
            p = os.path.join(hooks, which + ".sh")
            with open(p, "w") as f:
                f.write(HOOK.format(which=which, marks=MARKS, extra=extra))
            os.chmod(p, 0o755)
        config = ("# CSI tests\n"
                  "hook.app.pre = /bin/sh %s/pre.sh\n"
                  "hook.app.post = /bin/sh %s/post.sh\n" % (hooks, hooks))
        cls.agent = Agent("mount", node_id="node-mount", config=config).start()

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()

    def check_hooks(self, snap_name, vid, vname, target, t_before, t_after):
        pre, post = read_marks("pre", snap_name), read_marks("post", snap_name)
        self.assertIsNotNone(pre, "the pre hook did not run (no marker)")
        self.assertIsNotNone(post, "the post hook did not run (no marker)")
        tpre, tpost = int(pre["time"]), int(post["time"])
        self.assertLess(t_before, tpre, "the pre hook ran before CreateSnapshot was sent")
        self.assertLessEqual(tpre, tpost, "the post hook ran before the pre hook")
        self.assertLess(tpost, t_after, "the post hook ran after CreateSnapshot returned")
        for m, which in ((pre, "pre"), (post, "post")):
            self.assertEqual(m["FERRY_VOLUME_ID"], vid, which)
            self.assertEqual(m["FERRY_VOLUME_NAME"], vname, which)
            self.assertEqual(m["FERRY_SNAPSHOT_NAME"], snap_name, which)
            self.assertEqual(m["FERRY_MOUNT_PATH"], target, which)
        log("hooks: pre at %d, post %.1f ms later" % (tpre, (tpost - tpre) / 1e6))
        return tpre

    def check_thawed(self, target):
        """The filesystem takes writes again (a frozen one would block: bounded by timeout)."""
        p = subprocess.run(["timeout", "30", "sh", "-c", 'echo after > "$1/after-snapshot" && sync -f "$1"',
                            "sh", target])
        self.assertEqual(p.returncode, 0, "writing after the snapshot failed or blocked (still frozen?)")

    def check_stats(self, vid, target, written):
        r = self.agent.node.NodeGetVolumeStats(pb.NodeGetVolumeStatsRequest(volume_id=vid, volume_path=target),
                                               timeout=30)
        by_unit = {pb.VolumeUsage.Unit.Name(u.unit): u for u in r.usage}
        self.assertIn("BYTES", by_unit, "NodeGetVolumeStats: no BYTES usage")
        b = by_unit["BYTES"]
        st = os.statvfs(target)
        self.assertGreater(b.total, 0)
        self.assertEqual(b.total, st.f_blocks * st.f_frsize, "BYTES total vs statvfs")
        self.assertGreaterEqual(b.used, written, "BYTES used below what was written")
        self.assertLessEqual(b.available, b.total)
        if "INODES" in by_unit:
            self.assertGreater(by_unit["INODES"].used, 0)
            self.assertGreater(by_unit["INODES"].total, 0)
        caps = self.agent.node.NodeGetCapabilities(pb.NodeGetCapabilitiesRequest(), timeout=10).capabilities
        if pb.NodeServiceCapability.RPC.VOLUME_CONDITION in [c.rpc.type for c in caps]:
            self.assertTrue(r.HasField("volume_condition"), "VOLUME_CONDITION advertised, no volume_condition")
        if r.HasField("volume_condition"):
            self.assertFalse(r.volume_condition.abnormal, r.volume_condition.message)

    def check_readonly(self, target):
        with self.assertRaises(OSError) as cm:
            with open(os.path.join(target, "should-not-exist"), "wb") as f:
                f.write(b"x")
        self.assertEqual(cm.exception.errno, errno.EROFS, "write to a read-only publish: %s" % cm.exception)
        m = mounts_at(target)
        self.assertTrue(m and "ro" in m[-1][2].split(","), "read-only publish not mounted ro: %s" % m)

    def unpublish_twice(self, vid, target):
        self.agent.unpublish(vid, target)
        self.agent.unpublish(vid, target)
        self.assertFalse(mounts_at(target), "still mounted after NodeUnpublishVolume")
        self.assertFalse(os.path.lexists(target), "NodeUnpublishVolume left %s behind" % target)

    def test_xfs(self):
        """XFS with mount flags, the hooks and the freeze; the snapshot restored
        into a new volume published read-only beside the still-published source."""
        a = self.agent
        size = 320 * MiB   # mkfs.xfs refuses below 300 MB
        vname = "pvc-mount-xfs"
        cap = mount_cap("xfs", flags=["noatime"])
        v = a.create_volume(vname, size, cap=cap)
        vid = v.volume_id
        target = a.publish(vid, a.mount_target(vname), cap=cap)
        m = mounts_at(target)
        self.assertTrue(m, "%s is not a mount point after NodePublishVolume" % target)
        self.assertEqual(m[-1][1], "xfs", "fs type of the published volume")
        self.assertIn("noatime", m[-1][2].split(","), "mount flag noatime not honoured: %s" % m[-1][2])
        a.publish(vid, target, cap=cap)   # idempotent
        self.assertEqual(len(mounts_at(target)), 1, "publish twice mounted twice")

        data = prand(3 * MiB + 123, "xfs-data")
        write_file(os.path.join(target, "data.bin"), data)
        os.makedirs(os.path.join(target, "dir"))
        unsynced = prand(200 * 1024, "xfs-unsynced")
        write_file(os.path.join(target, "dir", "unsynced.bin"), unsynced, sync=False)
        self.check_stats(vid, target, len(data))

        snap_name = "snapshot-" + str(uuid.uuid4())
        t0 = int(subprocess.check_output(["date", "+%s%N"]))
        s = a.create_snapshot(vid, snap_name, {P_HOOK: "app"})
        t1 = int(subprocess.check_output(["date", "+%s%N"]))
        self.assertTrue(s.ready_to_use, "a node-local snapshot is ready at once")
        tpre = self.check_hooks(snap_name, vid, vname, target, t0, t1)
        self.check_thawed(target)

        # The snapshot, restored into a new volume, read-only, while the source is still mounted.
        c = a.create_volume(vname + "-restored", size, cap=cap, snapshot=s.snapshot_id)
        t2 = a.publish(c.volume_id, a.mount_target(vname + "-restored"), cap=mount_cap("xfs"), readonly=True)
        self.assertEqual(mounts_at(t2)[-1][1], "xfs")
        self.assertEqual(read_file(os.path.join(t2, "data.bin")), data, "data.bin in the snapshot")
        self.assertEqual(read_file(os.path.join(t2, "dir", "unsynced.bin")), unsynced,
                         "a file written just before the snapshot (no fsync) is not in it: no freeze?")
        self.assertEqual(read_file(os.path.join(t2, "written-by-pre-hook")), b"pre-hook %d\n" % tpre,
                         "the file the pre hook wrote is not in the snapshot")
        self.assertFalse(os.path.exists(os.path.join(t2, "after-snapshot")), "a later write is in the snapshot")
        self.check_readonly(t2)

        self.unpublish_twice(c.volume_id, t2)
        self.unpublish_twice(vid, target)
        a.delete_snapshot(s.snapshot_id)
        a.delete_volume(c.volume_id)
        a.delete_volume(vid)

    def test_ext4(self):
        """ext4 (the default fs_type), uploaded snapshots with the hook and the
        freeze, and the control without freeze; mount flag "ro" honoured."""
        a = self.agent
        url, _ = new_repo("mount-ext4")
        size = 96 * MiB
        vname = "pvc-mount-ext4"
        v = a.create_volume(vname, size, cap=mount_cap())
        vid = v.volume_id
        target = a.publish(vid, a.mount_target(vname), cap=mount_cap())
        m = mounts_at(target)
        self.assertTrue(m, "not a mount point after NodePublishVolume")
        self.assertEqual(m[-1][1], "ext4", "the default fs_type")

        data = prand(5 * MiB + 1, "ext4-data")
        write_file(os.path.join(target, "data.bin"), data)
        unsynced = prand(300 * 1024, "ext4-unsynced")
        write_file(os.path.join(target, "unsynced.bin"), unsynced, sync=False)
        self.check_stats(vid, target, len(data))

        secrets = {"password": PASSWORD}
        frozen_name = "snapshot-" + str(uuid.uuid4())
        t0 = int(subprocess.check_output(["date", "+%s%N"]))
        s = a.create_snapshot(vid, frozen_name, {P_REPO: url, P_HOOK: "app"}, secrets)
        t1 = int(subprocess.check_output(["date", "+%s%N"]))
        tpre = self.check_hooks(frozen_name, vid, vname, target, t0, t1)
        self.check_thawed(target)

        # Control: no freeze (explicitly), another unsynced file.
        unsynced2 = prand(100 * 1024, "ext4-unsynced-2")
        write_file(os.path.join(target, "unsynced-2.bin"), unsynced2, sync=False)
        thawed_name = "snapshot-" + str(uuid.uuid4())
        s2 = a.create_snapshot(vid, thawed_name, {P_REPO: url, P_FREEZE: "false"}, secrets)
        self.assertIsNone(read_marks("pre", thawed_name), "a hook ran for a snapshot without one")
        a.wait_ready(s.snapshot_id)
        a.wait_ready(s2.snapshot_id)

        # The repository copies: frozen -> clean superblock, the unsynced files in it.
        imgs = {}
        for snap in (s, s2):
            rs = repo_snapshot_of(url, snap.snapshot_id)
            out = os.path.join(WORK, "ext4-%s.img" % snap.snapshot_id)
            ferry("restore", "--repo", url, rs["id"], out)
            imgs[snap.snapshot_id] = out
        frozen_img, thawed_img = imgs[s.snapshot_id], imgs[s2.snapshot_id]
        self.assertNotIn("needs_recovery", ext4_features(frozen_img),
                         "the snapshot cut with freeze has a dirty journal: the filesystem was not frozen")
        self.assertIn("needs_recovery", ext4_features(thawed_img),
                      "control: a snapshot of the mounted ext4 cut without freeze should need recovery")
        self.assertEqual(debugfs_cat(frozen_img, "/unsynced.bin"), unsynced,
                         "the file written just before the frozen snapshot is not in the repository copy")
        self.assertEqual(debugfs_cat(frozen_img, "/data.bin"), data)
        self.assertEqual(debugfs_cat(frozen_img, "/written-by-pre-hook"), b"pre-hook %d\n" % tpre)
        for p in imgs.values():
            os.unlink(p)

        # A volume from the frozen snapshot, published with the mount flag "ro".
        c = a.create_volume(vname + "-restored", size, cap=mount_cap(), snapshot=s.snapshot_id)
        rocap = mount_cap(flags=["ro"])
        t2 = a.publish(c.volume_id, a.mount_target(vname + "-restored"), cap=rocap)
        self.assertEqual(read_file(os.path.join(t2, "data.bin")), data)
        self.assertEqual(read_file(os.path.join(t2, "unsynced.bin")), unsynced)
        self.assertFalse(os.path.exists(os.path.join(t2, "unsynced-2.bin")), "a later file is in the snapshot")
        self.check_readonly(t2)
        # The same volume at a second target, readonly=true: both served.
        t3 = a.publish(c.volume_id, a.mount_target(vname + "-restored-2"), cap=mount_cap(), readonly=True)
        self.assertEqual(read_file(os.path.join(t3, "data.bin")), data)
        self.check_readonly(t3)

        # Unpublish of a target never published (under the kubelet dir): OK.
        a.unpublish(c.volume_id, a.mount_target("never-published"))
        for vv, t in ((c.volume_id, t3), (c.volume_id, t2), (vid, target)):
            self.unpublish_twice(vv, t)
        # The source's files survived it all.
        t4 = a.publish(vid, a.mount_target(vname), cap=mount_cap())
        self.assertEqual(read_file(os.path.join(t4, "unsynced-2.bin")), unsynced2)
        self.assertEqual(read_file(os.path.join(t4, "after-snapshot")), b"after\n")
        self.unpublish_twice(vid, t4)
        for snap in (s, s2):
            a.delete_snapshot(snap.snapshot_id)
        a.delete_volume(c.volume_id)
        a.delete_volume(vid)

    def test_republish_after_snapshot(self):
        """A volume published, snapshotted, unpublished and published again:
        its filesystem mounts and its files are there (ext4 with 1 KiB
        blocks, as mkfs makes it on small volumes; XFS with 512-byte
        sectors); a block volume keeps its logical sector size."""
        a = self.agent
        for fs, size in (("ext4", 64 * MiB), ("xfs", 320 * MiB)):
            with self.subTest(fs=fs):
                cap = mount_cap(fs)
                v = a.create_volume("pvc-mount-again-" + fs, size, cap=cap)
                t = a.publish(v.volume_id, a.mount_target("again-" + fs), cap=cap)
                write_file(os.path.join(t, "f"), b"before the snapshot\n")
                s = a.create_snapshot(v.volume_id, "snapshot-again-" + fs)
                self.unpublish_twice(v.volume_id, t)
                try:
                    t = a.publish(v.volume_id, a.mount_target("again-" + fs), cap=cap)
                    self.assertEqual(read_file(os.path.join(t, "f")), b"before the snapshot\n")
                    self.unpublish_twice(v.volume_id, t)
                finally:
                    a.delete_snapshot(s.snapshot_id)
                    a.delete_volume(v.volume_id)
        with self.subTest(kind="block"):
            v = a.create_volume("pvc-mount-again-block", 16 * MiB)
            t = a.publish(v.volume_id, a.block_target())
            before = logical_sector_size(t)
            s = a.create_snapshot(v.volume_id, "snapshot-again-block")
            self.unpublish_twice(v.volume_id, t)
            t = a.publish(v.volume_id, a.block_target())
            after = logical_sector_size(t)
            c = a.create_volume("pvc-mount-again-block-clone", 16 * MiB, snapshot=s.snapshot_id)
            tc = a.publish(c.volume_id, a.block_target())
            clone = logical_sector_size(tc)
            for vid, tt in ((v.volume_id, t), (c.volume_id, tc)):
                self.unpublish_twice(vid, tt)
                a.delete_volume(vid)
            a.delete_snapshot(s.snapshot_id)
            self.assertEqual((after, clone), (before, before),
                             "logical sector size of a block volume: %d when new, %d after a snapshot, %d for "
                             "its clone" % (before, after, clone))

    def test_block_volume_readonly(self):
        """A block volume published readonly: the device refuses writes."""
        a = self.agent
        v = a.create_volume("pvc-mount-blockro", 16 * MiB)
        t = a.publish(v.volume_id, a.block_target(), readonly=True)
        self.addCleanup(lambda: (mounts_at(t) and a.unpublish(v.volume_id, t), a.delete_volume(v.volume_id)))
        with self.assertRaises(OSError, msg="a write to a block volume published readonly went through "
                               "(and reached the image: %s)" % a.vol_img(v.volume_id)) as cm:
            fd = os.open(t, os.O_WRONLY)
            try:
                os.write(fd, b"x" * 4096)
                os.fsync(fd)
            finally:
                os.close(fd)
        self.assertIn(cm.exception.errno, (errno.EROFS, errno.EACCES, errno.EPERM), str(cm.exception))
        self.assertEqual(read_range(a.vol_img(v.volume_id), 0, 4096), b"\0" * 4096)
        self.unpublish_twice(v.volume_id, t)

    def test_mount_unknown_fs_type(self):
        a = self.agent
        v = a.create_volume("pvc-mount-badfs", 16 * MiB, cap=mount_cap("ext4"))
        target = a.mount_target("badfs")
        self.assertCode(Code.INVALID_ARGUMENT, a.node.NodePublishVolume,
                        pb.NodePublishVolumeRequest(volume_id=v.volume_id, target_path=target,
                                                    volume_capability=mount_cap("nosuchfs")),
                        "NodePublishVolume with fs_type nosuchfs")
        self.assertFalse(mounts_at(target))
        a.delete_volume(v.volume_id)


if __name__ == "__main__":
    main()
