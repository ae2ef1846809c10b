#!/usr/bin/python3
"""CSI: bad input, each with its status code (BadInput); uploads that fail
-- reported as UNAVAILABLE by the next CreateSnapshot and retried with its
secrets --, a repository created on demand, one volume to two repositories,
and failed uploads that must not hold others back (Uploads, one agent per
test); and no secret in any agent's log, in an error message, or left in its
state directory.  BadInput's agent logs text, the Uploads agents JSON
(--log-format json: every line must parse, and the secrets are looked for
in the decoded values too).

Every secret value sent is distinctive (most hold SECRET_MARK), so a grep
finds them."""
import os
import stat
import subprocess
import time

import grpc

from csilib import (BS, P_CREATE, P_REPO, PASSWORD, WORK, MiB, Agent, AgentTest, Code, block_cap,
                    ferry, log, main, mount_cap, mounts_at, new_repo, pb, prand, pwrite_sync,
                    repo_snapshot_of)

SECRET_MARK = "s3cr3t-CSI"
WRONG_PASSWORD = "wrong-password-" + SECRET_MARK + "-1"
AWS_KEY = "AKIA" + SECRET_MARK + "-KEY"
AWS_SECRET = "aws-secret-" + SECRET_MARK + "-2"
AWS_TOKEN = "aws-token-" + SECRET_MARK + "-3"
COPY_PASSWORD = "copy-password-" + SECRET_MARK + "-4"
BIG_SECRET = "big-" + SECRET_MARK + "-5-" + "x" * 5000
META_SECRET = "meta-" + SECRET_MARK + "-6"
VOL_SECRET = "volume-" + SECRET_MARK + "-7"
ALL_SECRETS = [WRONG_PASSWORD, AWS_KEY, AWS_SECRET, AWS_TOKEN, COPY_PASSWORD, BIG_SECRET[:60], META_SECRET,
               VOL_SECRET, SECRET_MARK, PASSWORD]

NOVOL = "vol-" + "0123456789abcdef" * 2
NOSNAP = "snap-" + "0123456789abcdef" * 2
BAD_IDS = ["../../etc/passwd", "vol-../x", "vol-../../../../etc/passwd", "/etc/passwd", "vol-abc/def",
           "..", "vol-0123456789abcdef0123456789abcdef/..", "vol-0123456789abcdef0123456789abcdef\n"]
BAD_SNAP_IDS = ["../../etc/passwd", "snap-../x", "snap-../../../../etc/shadow", "/x", "..", "snap-a/b"]
SIZE = 32 * MiB


def count_snapshots(repo_path):
    d = os.path.join(repo_path, "snapshots")
    return len(os.listdir(d)) if os.path.isdir(d) else 0


class BadInput(AgentTest):
    @classmethod
    def setUpClass(cls):
        cls.agent = Agent("badinput", node_id="node-bad").start()
        cls.errors = []   # details of every error the agent returned
        a = cls.agent
        cls.vol = a.create_volume("pvc-bad-main", SIZE)
        cls.vol2 = a.create_volume("pvc-bad-other", SIZE)
        t = a.publish(cls.vol.volume_id, a.block_target("pvc-bad-main"))
        pwrite_sync(t, 0, prand(MiB, "bad"))
        a.unpublish(cls.vol.volume_id, t)
        cls.snap = a.create_snapshot(cls.vol.volume_id, "snapshot-bad-1")
        cls.snap_b = a.create_snapshot(cls.vol.volume_id, "snapshot-bad-1b")   # nothing written in between
        cls.snap_other = a.create_snapshot(cls.vol2.volume_id, "snapshot-bad-other")

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()

    def code(self, code, fn, req, what):
        with self.subTest(what):
            e = None
            try:
                e = self.assertCode(code, fn, req, what)
            finally:
                if e is not None:
                    self.errors.append("%s: %s" % (what, e.details()))

    def code_in(self, codes, fn, req, what):
        with self.subTest(what):
            try:
                r = fn(req, timeout=60)
                if hasattr(r, "__iter__") and not hasattr(r, "ListFields"):
                    list(r)
                self.fail("%s: succeeded, want one of %s" % (what, [c.name for c in codes]))
            except grpc.RpcError as e:
                self.errors.append("%s: %s" % (what, e.details()))
                self.assertIn(e.code(), codes, "%s: got %s (%s)" % (what, e.code().name, e.details()))

    # ---------------------------------------------------------- volumes
    def test_create_volume(self):
        a, C = self.agent, self.agent.controller
        R = pb.CreateVolumeRequest
        cr = pb.CapacityRange(required_bytes=SIZE)
        self.code(Code.INVALID_ARGUMENT, C.CreateVolume, R(name="", capacity_range=cr, volume_capabilities=[block_cap()]),
                  "CreateVolume name empty")
        self.code(Code.INVALID_ARGUMENT, C.CreateVolume,
                  R(name="n" * 129, capacity_range=cr, volume_capabilities=[block_cap()]), "CreateVolume name 129 bytes")
        # A control character would forge lines in logs and rows in tables.
        for name in ("pvc-bad\nforged row", "pvc-bad\x1b[2J", "pvc-bad\x7f"):
            self.code(Code.INVALID_ARGUMENT, C.CreateVolume,
                      R(name=name, capacity_range=cr, volume_capabilities=[block_cap()]), "CreateVolume name %r" % name)
        self.code(Code.INVALID_ARGUMENT, C.CreateVolume,
                  R(name="pvc-bad-ctl-param", capacity_range=cr, volume_capabilities=[block_cap()],
                    parameters={"csi.storage.k8s.io/pvc/name": "x\ny"}), "CreateVolume parameter value with a newline")
        self.code(Code.INVALID_ARGUMENT, C.CreateVolume, R(name="pvc-bad-nocap", capacity_range=cr),
                  "CreateVolume without capabilities")
        self.code(Code.INVALID_ARGUMENT, C.CreateVolume,
                  R(name="pvc-bad-noaccess", capacity_range=cr,
                    volume_capabilities=[pb.VolumeCapability(access_mode=pb.VolumeCapability.AccessMode(mode=1))]),
                  "CreateVolume with a capability neither block nor mount")
        self.code(Code.INVALID_ARGUMENT, C.CreateVolume,
                  R(name="pvc-bad-params", capacity_range=cr, volume_capabilities=[block_cap()],
                    parameters={"p%d" % i: "v" * 100 for i in range(50)}), "CreateVolume 5 KiB parameters")
        self.code(Code.INVALID_ARGUMENT, C.CreateVolume,
                  R(name="pvc-bad-secrets", capacity_range=cr, volume_capabilities=[block_cap()],
                    secrets={"password": BIG_SECRET}), "CreateVolume 5 KiB secrets")
        self.code(Code.ALREADY_EXISTS, C.CreateVolume,
                  R(name="pvc-bad-main", capacity_range=pb.CapacityRange(required_bytes=2 * SIZE),
                    volume_capabilities=[block_cap()]), "CreateVolume same name, other size")
        r = R(name="pvc-bad-from-nosnap", capacity_range=cr, volume_capabilities=[block_cap()],
              secrets={"password": VOL_SECRET})
        r.volume_content_source.snapshot.snapshot_id = NOSNAP
        self.code(Code.NOT_FOUND, C.CreateVolume, r, "CreateVolume from an unknown snapshot")
        for bad in BAD_SNAP_IDS:
            r = R(name="pvc-bad-from-bad", capacity_range=cr, volume_capabilities=[block_cap()])
            r.volume_content_source.snapshot.snapshot_id = bad
            self.code(Code.INVALID_ARGUMENT, C.CreateVolume, r, "CreateVolume from snapshot %r" % bad)
        r = R(name="pvc-bad-from-novol", capacity_range=cr, volume_capabilities=[block_cap()])
        r.volume_content_source.volume.volume_id = NOVOL
        self.code(Code.NOT_FOUND, C.CreateVolume, r, "CreateVolume from an unknown volume")
        for bad in BAD_IDS:
            r = R(name="pvc-bad-from-badvol", capacity_range=cr, volume_capabilities=[block_cap()])
            r.volume_content_source.volume.volume_id = bad
            self.code(Code.INVALID_ARGUMENT, C.CreateVolume, r, "CreateVolume from volume %r" % bad)
        # Smaller than its source: OUT_OF_RANGE.
        r = R(name="pvc-bad-too-small", capacity_range=pb.CapacityRange(required_bytes=MiB, limit_bytes=MiB),
              volume_capabilities=[block_cap()])
        r.volume_content_source.snapshot.snapshot_id = self.snap.snapshot_id
        self.code(Code.OUT_OF_RANGE, C.CreateVolume, r, "CreateVolume from a snapshot, limit below its size")
        # The boundary: a 128-byte name is fine.
        v = a.create_volume("n" * 128, SIZE)
        a.delete_volume(v.volume_id)
        for p in os.listdir(os.path.join(a.state, "volumes")):
            self.assertNotIn("pvc-bad-", p, "an image was made for a refused CreateVolume")

    def test_delete_volume(self):
        C = self.agent.controller
        self.code(Code.INVALID_ARGUMENT, C.DeleteVolume, pb.DeleteVolumeRequest(volume_id=""), "DeleteVolume ''")
        for bad in BAD_IDS:
            self.code(Code.INVALID_ARGUMENT, C.DeleteVolume, pb.DeleteVolumeRequest(volume_id=bad),
                      "DeleteVolume %r" % bad)
        with self.subTest("DeleteVolume unknown"):
            C.DeleteVolume(pb.DeleteVolumeRequest(volume_id=NOVOL), timeout=30)
        self.assertTrue(os.path.exists("/etc/passwd"))

    def test_validate(self):
        C = self.agent.controller
        R = pb.ValidateVolumeCapabilitiesRequest
        self.code(Code.INVALID_ARGUMENT, C.ValidateVolumeCapabilities, R(volume_id="", volume_capabilities=[block_cap()]),
                  "ValidateVolumeCapabilities ''")
        self.code(Code.INVALID_ARGUMENT, C.ValidateVolumeCapabilities, R(volume_id=self.vol.volume_id),
                  "ValidateVolumeCapabilities without capabilities")
        self.code(Code.NOT_FOUND, C.ValidateVolumeCapabilities, R(volume_id=NOVOL, volume_capabilities=[block_cap()]),
                  "ValidateVolumeCapabilities unknown")
        self.code(Code.INVALID_ARGUMENT, C.ValidateVolumeCapabilities,
                  R(volume_id="../../etc/passwd", volume_capabilities=[block_cap()]),
                  "ValidateVolumeCapabilities ../../etc/passwd")

    # -------------------------------------------------------- snapshots
    def test_create_snapshot(self):
        a, C = self.agent, self.agent.controller
        R = pb.CreateSnapshotRequest
        vid = self.vol.volume_id
        self.code(Code.INVALID_ARGUMENT, C.CreateSnapshot, R(source_volume_id=vid, name=""), "CreateSnapshot name ''")
        self.code(Code.INVALID_ARGUMENT, C.CreateSnapshot, R(source_volume_id="", name="snapshot-bad-x"),
                  "CreateSnapshot source ''")
        self.code(Code.NOT_FOUND, C.CreateSnapshot, R(source_volume_id=NOVOL, name="snapshot-bad-x"),
                  "CreateSnapshot unknown source")
        for bad in BAD_IDS:
            self.code(Code.INVALID_ARGUMENT, C.CreateSnapshot, R(source_volume_id=bad, name="snapshot-bad-x"),
                      "CreateSnapshot source %r" % bad)
        self.code(Code.INVALID_ARGUMENT, C.CreateSnapshot, R(source_volume_id=vid, name="s" * 129),
                  "CreateSnapshot name 129 bytes")
        for name in ("snapshot-bad\nforged", "snapshot-bad\x1b]0;x\x07"):
            self.code(Code.INVALID_ARGUMENT, C.CreateSnapshot, R(source_volume_id=vid, name=name),
                      "CreateSnapshot name %r" % name)
        self.code(Code.INVALID_ARGUMENT, C.CreateSnapshot,
                  R(source_volume_id=vid, name="snapshot-bad-ctl-param",
                    parameters={"csi.storage.k8s.io/volumesnapshot/name": "a\rb"}),
                  "CreateSnapshot parameter value with a carriage return")
        self.code(Code.INVALID_ARGUMENT, C.CreateSnapshot,
                  R(source_volume_id=vid, name="snapshot-bad-ctl-key", parameters={"k\tey": "v"}),
                  "CreateSnapshot parameter key with a tab")
        self.code(Code.ALREADY_EXISTS, C.CreateSnapshot,
                  R(source_volume_id=self.vol2.volume_id, name="snapshot-bad-1"),
                  "CreateSnapshot same name, other source")
        self.code(Code.INVALID_ARGUMENT, C.CreateSnapshot,
                  R(source_volume_id=vid, name="snapshot-bad-params",
                    parameters={"k%d" % i: "v" * 200 for i in range(25)}), "CreateSnapshot 5 KiB parameters")
        self.code(Code.INVALID_ARGUMENT, C.CreateSnapshot,
                  R(source_volume_id=vid, name="snapshot-bad-secrets", parameters={P_REPO: "file:///nonexistent"},
                    secrets={"password": BIG_SECRET}), "CreateSnapshot 5 KiB secrets")
        self.assertEqual(a.get_snapshot(self.snap.snapshot_id).source_volume_id, vid)
        # Boundary: 128 bytes is a valid name.
        s = a.create_snapshot(vid, "s" * 128)
        self.assertTrue(s.ready_to_use)
        a.delete_snapshot(s.snapshot_id)
        names = [x.snapshot_id for x in a.list_snapshots()]
        self.assertEqual(sorted(names), sorted([self.snap.snapshot_id, self.snap_b.snapshot_id,
                                                self.snap_other.snapshot_id]),
                         "refused CreateSnapshot calls left snapshots behind")

    def test_delete_snapshot(self):
        C = self.agent.controller
        self.code(Code.INVALID_ARGUMENT, C.DeleteSnapshot, pb.DeleteSnapshotRequest(snapshot_id=""),
                  "DeleteSnapshot ''")
        for bad in BAD_SNAP_IDS:
            self.code(Code.INVALID_ARGUMENT, C.DeleteSnapshot, pb.DeleteSnapshotRequest(snapshot_id=bad),
                      "DeleteSnapshot %r" % bad)
        with self.subTest("DeleteSnapshot unknown"):
            C.DeleteSnapshot(pb.DeleteSnapshotRequest(snapshot_id=NOSNAP), timeout=30)

    def test_list_snapshots(self):
        C = self.agent.controller
        for tok in ("garbage", "99999999999999999999999", "-1"):
            self.code(Code.ABORTED, C.ListSnapshots, pb.ListSnapshotsRequest(starting_token=tok),
                      "ListSnapshots starting_token %r" % tok)
        self.code(Code.INVALID_ARGUMENT, C.ListSnapshots, pb.ListSnapshotsRequest(max_entries=-3),
                  "ListSnapshots max_entries -3")

    # ------------------------------------------------------------- node
    def test_node_publish(self):
        a = self.agent
        N = a.node
        R = pb.NodePublishVolumeRequest
        vid = self.vol.volume_id
        good = a.block_target()
        self.code(Code.INVALID_ARGUMENT, N.NodePublishVolume, R(volume_id="", target_path=good,
                                                               volume_capability=block_cap()),
                  "NodePublishVolume volume_id ''")
        for bad in BAD_IDS:
            self.code(Code.INVALID_ARGUMENT, N.NodePublishVolume,
                      R(volume_id=bad, target_path=good, volume_capability=block_cap()),
                      "NodePublishVolume volume_id %r" % bad)
        self.code(Code.NOT_FOUND, N.NodePublishVolume, R(volume_id=NOVOL, target_path=good,
                                                        volume_capability=block_cap()),
                  "NodePublishVolume unknown volume")
        self.code(Code.INVALID_ARGUMENT, N.NodePublishVolume, R(volume_id=vid, target_path=good),
                  "NodePublishVolume without capability")
        # Targets outside the kubelet directory, or not absolute.
        outside = os.path.join(WORK, "outside")
        os.makedirs(outside, exist_ok=True)
        link_parent = os.path.join(a.kubelet, "pods", "evil-link")
        os.makedirs(os.path.dirname(link_parent), exist_ok=True)
        if not os.path.lexists(link_parent):
            os.symlink(outside, link_parent)          # inside the kubelet dir, pointing out of it
        sibling = a.kubelet.rstrip("/") + "-evil"     # shares the kubelet dir's prefix, not under it
        os.makedirs(sibling, exist_ok=True)
        targets = ["", "/etc/x", outside, os.path.join(outside, "x"), "relative/path/target",
                   a.kubelet + "/../../../etc/x", a.kubelet + "/pods/../../" + os.path.basename(a.kubelet) + "-evil/x",
                   os.path.join(sibling, "x"), os.path.join(link_parent, "x"), a.kubelet, a.kubelet + "/"]
        etc_x_before = os.path.lexists("/etc/x")
        created_etc_x = False
        try:
            for t in targets:
                for cap, kind in ((block_cap(), "block"), (mount_cap("ext4"), "mount")):
                    self.code(Code.INVALID_ARGUMENT, N.NodePublishVolume,
                              R(volume_id=vid, target_path=t, volume_capability=cap),
                              "NodePublishVolume %s target %r" % (kind, t))
        finally:
            # Undo /etc/x if a wrongly accepted publish made it (run.sh unmounts
            # whatever lands in the scratch and kubelet dirs).
            created_etc_x = not etc_x_before and os.path.lexists("/etc/x")
            if created_etc_x:
                while mounts_at("/etc/x"):
                    subprocess.run(["umount", "/etc/x"], check=True)
                if os.path.isdir("/etc/x"):
                    os.rmdir("/etc/x")
                else:
                    os.unlink("/etc/x")
        self.assertFalse(created_etc_x, "NodePublishVolume created /etc/x")
        self.assertEqual(os.listdir(outside), [], "NodePublishVolume created or mounted something outside the kubelet dir")
        self.assertEqual(os.listdir(sibling), [], "NodePublishVolume created something in %s" % sibling)
        self.assertTrue(os.path.isdir("/etc") and not os.path.ismount("/etc"))

    def test_node_unpublish(self):
        a = self.agent
        N = a.node
        R = pb.NodeUnpublishVolumeRequest
        vid = self.vol.volume_id
        self.code(Code.INVALID_ARGUMENT, N.NodeUnpublishVolume, R(volume_id="", target_path=a.block_target()),
                  "NodeUnpublishVolume volume_id ''")
        self.code(Code.INVALID_ARGUMENT, N.NodeUnpublishVolume, R(volume_id=vid, target_path=""),
                  "NodeUnpublishVolume target ''")
        # A mount point outside the kubelet dir (a small tmpfs of ours): no
        # NodeUnpublishVolume may unmount it, however the path is spelled.
        outside = os.path.join(WORK, "outside-mount")
        os.makedirs(outside, exist_ok=True)
        if not mounts_at(outside):
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", outside], check=True)
        link = os.path.join(a.kubelet, "pods", "evil-link-2")     # in the kubelet dir, pointing out
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if not os.path.lexists(link):
            os.symlink(WORK, link)
        try:
            # Existing paths outside the kubelet dir: refused.
            for t in ("/etc", outside, os.path.join(a.kubelet, "../../work/outside-mount"),
                      os.path.join(link, "outside-mount"), a.kubelet + "/../../work/outside-mount/"):
                self.code(Code.INVALID_ARGUMENT, N.NodeUnpublishVolume, R(volume_id=vid, target_path=t),
                          "NodeUnpublishVolume target %r" % t)
            # Paths outside it that do not exist: never published, so refused
            # or (idempotent) OK, and nothing touched.
            for t in ("/etc/x", "relative", os.path.join(a.kubelet, "../../work/no-such-dir/x")):
                with self.subTest("NodeUnpublishVolume target %r" % t):
                    try:
                        N.NodeUnpublishVolume(R(volume_id=vid, target_path=t), timeout=30)
                    except grpc.RpcError as e:
                        self.errors.append(e.details())
                        self.assertEqual(e.code(), Code.INVALID_ARGUMENT, e.details())
            for bad in BAD_IDS:
                self.code(Code.INVALID_ARGUMENT, N.NodeUnpublishVolume,
                          R(volume_id=bad, target_path=a.block_target()), "NodeUnpublishVolume volume_id %r" % bad)
            self.assertTrue(mounts_at(outside), "NodeUnpublishVolume unmounted %s" % outside)
            self.assertTrue(os.path.isdir("/etc"))
        finally:
            while mounts_at(outside):
                subprocess.run(["umount", outside], check=True)

    def test_node_stats(self):
        a = self.agent
        N = a.node
        R = pb.NodeGetVolumeStatsRequest
        self.code(Code.INVALID_ARGUMENT, N.NodeGetVolumeStats, R(volume_id="", volume_path=a.kubelet),
                  "NodeGetVolumeStats volume_id ''")
        self.code(Code.INVALID_ARGUMENT, N.NodeGetVolumeStats, R(volume_id=self.vol.volume_id, volume_path=""),
                  "NodeGetVolumeStats volume_path ''")
        self.code(Code.NOT_FOUND, N.NodeGetVolumeStats, R(volume_id=NOVOL, volume_path=a.mount_target()),
                  "NodeGetVolumeStats unknown volume")
        self.code(Code.NOT_FOUND, N.NodeGetVolumeStats,
                  R(volume_id=self.vol.volume_id, volume_path=a.mount_target()),
                  "NodeGetVolumeStats at a path where the volume is not published")

    # --------------------------------------------------- snapshot metadata
    def test_metadata(self):
        a = self.agent
        M = a.meta
        RA, RD = pb.GetMetadataAllocatedRequest, pb.GetMetadataDeltaRequest
        sid, sid_b, other = self.snap.snapshot_id, self.snap_b.snapshot_id, self.snap_other.snapshot_id
        sec = {"token": META_SECRET}
        self.code(Code.INVALID_ARGUMENT, M.GetMetadataAllocated, RA(snapshot_id="", secrets=sec),
                  "GetMetadataAllocated snapshot ''")
        self.code(Code.NOT_FOUND, M.GetMetadataAllocated, RA(snapshot_id=NOSNAP, secrets=sec),
                  "GetMetadataAllocated unknown snapshot")
        for bad in BAD_SNAP_IDS:
            self.code(Code.INVALID_ARGUMENT, M.GetMetadataAllocated, RA(snapshot_id=bad),
                      "GetMetadataAllocated snapshot %r" % bad)
        self.code(Code.OUT_OF_RANGE, M.GetMetadataAllocated, RA(snapshot_id=sid, starting_offset=SIZE + MiB),
                  "GetMetadataAllocated starting_offset beyond the volume")
        self.code(Code.OUT_OF_RANGE, M.GetMetadataAllocated, RA(snapshot_id=sid, starting_offset=1 << 62),
                  "GetMetadataAllocated starting_offset 2^62")
        self.code(Code.INVALID_ARGUMENT, M.GetMetadataAllocated, RA(snapshot_id=sid, max_results=-1),
                  "GetMetadataAllocated max_results -1")
        self.code_in((Code.INVALID_ARGUMENT, Code.OUT_OF_RANGE), M.GetMetadataAllocated,
                     RA(snapshot_id=sid, starting_offset=-BS), "GetMetadataAllocated starting_offset -4096")

        self.code(Code.NOT_FOUND, M.GetMetadataDelta,
                  RD(base_snapshot_id=NOSNAP, target_snapshot_id=sid, secrets=sec), "GetMetadataDelta unknown base")
        self.code(Code.NOT_FOUND, M.GetMetadataDelta,
                  RD(base_snapshot_id=sid, target_snapshot_id=NOSNAP), "GetMetadataDelta unknown target")
        self.code(Code.INVALID_ARGUMENT, M.GetMetadataDelta,
                  RD(base_snapshot_id="", target_snapshot_id=sid), "GetMetadataDelta base ''")
        self.code(Code.INVALID_ARGUMENT, M.GetMetadataDelta,
                  RD(base_snapshot_id=sid, target_snapshot_id=""), "GetMetadataDelta target ''")
        for bad in BAD_SNAP_IDS:
            self.code(Code.INVALID_ARGUMENT, M.GetMetadataDelta,
                      RD(base_snapshot_id=bad, target_snapshot_id=sid), "GetMetadataDelta base %r" % bad)
        self.code(Code.OUT_OF_RANGE, M.GetMetadataDelta,
                  RD(base_snapshot_id=sid, target_snapshot_id=sid_b, starting_offset=SIZE + MiB),
                  "GetMetadataDelta starting_offset beyond the volume")
        self.code(Code.INVALID_ARGUMENT, M.GetMetadataDelta,
                  RD(base_snapshot_id=sid, target_snapshot_id=sid_b, max_results=-5),
                  "GetMetadataDelta max_results -5")
        self.code(Code.INVALID_ARGUMENT, M.GetMetadataDelta,
                  RD(base_snapshot_id=sid, target_snapshot_id=other),
                  "GetMetadataDelta between snapshots of two volumes")
        # Sanity: the valid calls work; nothing was written between snap and snap_b.
        with self.subTest("valid metadata calls"):
            alloc = a.metadata("allocated", snapshot_id=sid, secrets=sec)
            self.assertTrue(any(r.block_metadata for r in alloc), "no allocated block in a written snapshot")
            d = a.metadata("delta", base_snapshot_id=sid, target_snapshot_id=sid_b, secrets=sec)
            self.assertEqual([m for r in d for m in r.block_metadata], [],
                             "delta between two snapshots with no write in between")

    # -------------------------------------------- uploads that fail, secrets
    def test_zz_no_secrets_anywhere(self):
        """Last: no secret in the log, in any error detail, or in a file of
        the state dir."""
        a = self.agent
        rc, _ = a.stop()
        self.assertEqual(rc, 0, "exit status after SIGTERM")
        self.assertAgentClean(a)
        self.assertGreater(len(self.errors), 50, "too few errors collected")
        check_no_secrets(self, a, self.errors)


def check_no_secrets(tc, a, errors):
    """No secret in the (stopped) agent's log, in the error details it
    returned, or in any file of its state dir once no upload is pending
    (docs/agent.md: a job's secrets are deleted when it ends)."""
    text = a.log_text()
    tc.assertGreater(len(text.splitlines()), 3, "the agent logged (almost) nothing: the grep proves nothing")
    for s in ALL_SECRETS:
        hits = [ln for ln in text.splitlines() if s in ln]
        tc.assertEqual(hits, [], "secret %r in the agent log" % s[:40])
    if a.log_format == "json":
        objs = a.json_log()     # every line is one JSON object
        tc.assertGreater(len(objs), 3)
        for o in objs:
            for s in ALL_SECRETS:
                tc.assertFalse(any(s in str(v) for v in o.values()), "secret %r in a JSON log line: %r" % (s[:40], o))
    for e in errors:
        for s in ALL_SECRETS:
            tc.assertNotIn(s, e, "secret in an error message")
    for root, dirs, files in os.walk(a.state):
        for f in files:
            p = os.path.join(root, f)
            if p.endswith(".img") or os.path.islink(p) or not os.path.isfile(p):
                continue
            with open(p, "rb") as fh:
                body = fh.read(16 * MiB)
            found = [x[:40] for x in ALL_SECRETS if x.encode() in body]
            mode = stat.S_IMODE(os.stat(p).st_mode)
            tc.assertEqual(found, [], "%s (mode %04o) still holds secrets after every upload ended"
                           % (os.path.relpath(p, a.state), mode))


class Uploads(AgentTest):
    """Uploads that fail, and their retries: one agent per test, so that a
    stuck upload in one test cannot hold up the next; each agent's log and
    state are checked for secrets when it stops."""

    def setUp(self):
        self.agent = Agent("up-" + self._testMethodName[len("test_"):], node_id="node-up",
                           log_format="json").start()
        self.errors = []
        a = self.agent
        self.vol = a.create_volume("pvc-up", SIZE)
        t = a.publish(self.vol.volume_id, a.block_target("pvc-up"))
        pwrite_sync(t, 0, prand(MiB, "up"))
        a.unpublish(self.vol.volume_id, t)

    def tearDown(self):
        a = self.agent
        if not a.running():
            return
        # Uploads that have not finished (a failure) end with their snapshots:
        # then no upload may hold secrets any more.
        for snap in a.list_snapshots():
            if not snap.ready_to_use:
                log("deleting %s (upload not finished)" % snap.snapshot_id)
                a.delete_snapshot(snap.snapshot_id)
        rc, _ = a.stop()
        self.assertEqual(rc, 0, "exit status after SIGTERM")
        self.assertAgentClean(a)
        check_no_secrets(self, a, self.errors)

    def until_error(self, vid, name, params, secrets, what, timeout=45):
        """Call CreateSnapshot again and again (as the snapshotter does) until
        it fails; returns the error.  Fails if it becomes ready instead."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                r = self.agent.create_snapshot(vid, name, params, secrets)
                self.assertFalse(r.ready_to_use, "%s: became ready" % what)
            except grpc.RpcError as e:
                self.errors.append("%s: %s" % (what, e.details()))
                return e
            time.sleep(0.1)
        self.fail("%s: no error within %ds" % (what, timeout))

    def until_ready(self, vid, name, params, secrets, what, timeout=45, tolerate=True):
        """Call CreateSnapshot again and again until ready_to_use; errors from
        an earlier failed attempt (UNAVAILABLE) are tolerated meanwhile
        (unless tolerate=False: then the first error fails)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                r = self.agent.create_snapshot(vid, name, params, secrets)
                if r.ready_to_use:
                    return r
            except grpc.RpcError as e:
                self.errors.append("%s: %s" % (what, e.details()))
                self.assertTrue(tolerate, "%s: %s %s" % (what, e.code().name, e.details()))
                self.assertEqual(e.code(), Code.UNAVAILABLE, "%s: %s" % (what, e.details()))
                last = e.details()
            time.sleep(0.1)
        self.fail("%s: not ready within %ds (last error: %s)" % (what, timeout, last))

    def test_upload_wrong_password_then_retry(self):
        a = self.agent
        url, path = new_repo("up-wrongpw")
        vid = self.vol.volume_id
        name = "snapshot-bad-wrongpw"
        params = {P_REPO: url}
        s = a.create_snapshot(vid, name, params, {"password": WRONG_PASSWORD})
        self.assertFalse(s.ready_to_use)
        # The next calls with that name report the failure once the upload has failed.
        err = self.until_error(vid, name, params, {"password": WRONG_PASSWORD}, "wrong password")
        self.assertEqual(err.code(), Code.UNAVAILABLE, "upload failure: got %s (%s)"
                         % (err.code().name, err.details()))
        self.assertFalse(a.get_snapshot(s.snapshot_id).ready_to_use)
        self.assertEqual(count_snapshots(path), 0)
        # Retried with the right secrets by the next calls.
        r = self.until_ready(vid, name, params, {"password": PASSWORD}, "retry with the right password")
        self.assertEqual(r.snapshot_id, s.snapshot_id)
        repo_snapshot_of(url, s.snapshot_id)

    def test_upload_missing_repository(self):
        # A repository that does not exist, not to be created: UNAVAILABLE too.
        a, vid = self.agent, self.vol.volume_id
        missing = "file://" + os.path.join(WORK, "repos", "up-does-not-exist")
        s2 = a.create_snapshot(vid, "snapshot-bad-norepo", {P_REPO: missing}, {"password": PASSWORD})
        err = self.until_error(vid, "snapshot-bad-norepo", {P_REPO: missing}, {"password": PASSWORD}, "missing repo")
        self.assertEqual(err.code(), Code.UNAVAILABLE, err.details())
        self.assertFalse(os.path.exists(missing[len("file://"):]), "a repository was created without being asked")
        a.delete_snapshot(s2.snapshot_id)

    def test_upload_create_repository(self):
        # create-repository "true": made on first use, with the password given.
        vid = self.vol.volume_id
        fresh_url = "file://" + os.path.join(WORK, "repos", "up-created-by-agent")
        s3 = self.until_ready(vid, "snapshot-bad-create", {P_REPO: fresh_url, P_CREATE: "true"},
                              {"password": PASSWORD}, "create-repository", tolerate=False)
        repo_snapshot_of(fresh_url, s3.snapshot_id)
        ferry("check", "--repo", fresh_url)

    def test_upload_all_secret_kinds(self):
        # Every kind of secret at once (S3 keys and copy overrides are not used
        # by a file:// repository): accepted, uploaded, and never logged.
        url, _ = new_repo("up-secrets")
        vid = self.vol.volume_id
        self.until_ready(vid, "snapshot-bad-allsecrets", {P_REPO: url},
                         {"password": PASSWORD, "copy-1.password": COPY_PASSWORD,
                          "AWS_ACCESS_KEY_ID": AWS_KEY, "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
                          "AWS_SESSION_TOKEN": AWS_TOKEN}, "all kinds of secrets", tolerate=False)

    def test_same_volume_two_repositories(self):
        """Snapshots of one volume to one repository, then to another (a class
        changed, or two classes): each upload lands in its own repository."""
        vid = self.vol.volume_id
        url1, _ = new_repo("up-two-1")
        url2, _ = new_repo("up-two-2")
        sec = {"password": PASSWORD}
        s1 = self.until_ready(vid, "snapshot-up-two-1", {P_REPO: url1}, sec, "first repository", tolerate=False)
        s2 = self.until_ready(vid, "snapshot-up-two-2", {P_REPO: url2}, sec, "second repository", tolerate=False)
        s3 = self.until_ready(vid, "snapshot-up-two-3", {P_REPO: url1}, sec, "first repository again",
                              tolerate=False)
        for url, snap in ((url1, s1), (url2, s2), (url1, s3)):
            repo_snapshot_of(url, snap.snapshot_id)
            ferry("check", "--repo", url, "--read-data")

    def failing_then_good(self, failing_vid, good_vid, what):
        """A snapshot of failing_vid whose upload fails (reported, retried with
        backoff), then three snapshots of good_vid to a good repository: each
        must become ready within 30 s."""
        a = self.agent
        missing = {P_REPO: "file://" + os.path.join(WORK, "repos", "up-missing-" + what)}
        a.create_snapshot(failing_vid, "snapshot-up-failing", missing, {"password": PASSWORD})
        err = self.until_error(failing_vid, "snapshot-up-failing", missing, {"password": PASSWORD}, "failing upload")
        self.assertEqual(err.code(), Code.UNAVAILABLE, err.details())
        url, _ = new_repo("up-good-" + what)
        for i in range(3):
            t0 = time.monotonic()
            s = self.until_ready(good_vid, "snapshot-up-good-%d" % i, {P_REPO: url}, {"password": PASSWORD},
                                 "%s: upload %d after a failing one" % (what, i), timeout=30, tolerate=False)
            log("upload %d ready in %.1fs" % (i, time.monotonic() - t0))
            repo_snapshot_of(url, s.snapshot_id)

    def test_failed_upload_does_not_block_other_volumes(self):
        other = self.agent.create_volume("pvc-up-other", SIZE)
        self.failing_then_good(self.vol.volume_id, other.volume_id, "other-volume")

    def test_failed_upload_does_not_block_other_repository(self):
        """The same volume, another repository: no incremental chain links the
        two, so the failing one must not hold the others back."""
        self.failing_then_good(self.vol.volume_id, self.vol.volume_id, "same-volume")

if __name__ == "__main__":
    main()
