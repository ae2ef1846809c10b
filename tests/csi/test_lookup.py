#!/usr/bin/python3
"""CSI: snapshots another node cut, answered from the repository.

Two agents with their own node ids and state directories share one file://
repository, as two nodes of a cluster share a bucket.  Agent A cuts and
uploads snapshots of a volume with data written between them.  Agent B has
never seen them: the metadata sidecar's Service may send it any request,
and a PVC restored from a snapshot (a static VolumeSnapshotContent in
another cluster, or after A's node was rebuilt) may be provisioned on it.
B finds them by the label ferry.csi.dev/snapshot-id that every upload
records, in the repositories of its config (lookup-repositories) or of the
CreateVolume parameters (the StorageClass):

- GetMetadataAllocated / GetMetadataDelta on B equal what A answers once its
  clones are evicted (from the manifests), and cover every 4 KiB block A
  wrote; paging with max_results and starting_offset; the repository is
  read once, later calls answer from what B remembers;
- ListSnapshots(snapshot_id) on B answers for A's snapshot (the status a
  csi-snapshotter asks of a static VolumeSnapshotContent);
- a wrong password: PERMISSION_DENIED, no secret in the message; an unknown
  id: NOT_FOUND naming the repositories searched, UNAVAILABLE when one of
  them could not be listed; snapshots of different volumes, or in different
  repositories: INVALID_ARGUMENT;
- CreateVolume on B (config) and on C (parameters only, the repository
  found through copy-to) restores the snapshot byte-identical (`cmp`)."""
import os
import subprocess
import time
import uuid

import grpc

from csilib import (FERRY, P_COPY, P_REPO, PASSWORD, WORK, MiB, Agent, AgentTest, Code, block_cap, blocks, log, main,
                    new_repo, pb, prand, pwrite_sync, repo_snapshot_of, tuples)

SIZE = 64 * MiB
WRONG = "not-the-password-5d1e0b"
VARIABLE = pb.BlockMetadataType.Value("VARIABLE_LENGTH")


def configmap_dir(name, files):
    """A directory as the kubelet mounts a ConfigMap: the files in a
    timestamped directory, ..data linking to it, each key linking through ..data."""
    d = os.path.join(WORK, name)
    ts = os.path.join(d, "..2025_01_01_00_00_00.000000001")
    os.makedirs(ts)
    for k, v in files.items():
        with open(os.path.join(ts, k), "w") as f:
            f.write(v)
        os.symlink(os.path.join("..data", k), os.path.join(d, k))
    os.symlink(os.path.basename(ts), os.path.join(d, "..data"))
    return d


def write(t, expected, writes, seed):
    for i, (off, ln) in enumerate(writes):
        d = prand(ln, "%s-%d" % (seed, i))
        pwrite_sync(t, off, d)
        expected[off:off + ln] = d


class Lookup(AgentTest):
    @classmethod
    def setUpClass(cls):
        cls.url, _ = new_repo("lookup")
        cls.url2, _ = new_repo("lookup-other")
        cls.secrets = {"password": PASSWORD}
        # A keeps one clone per volume: its own answers for s1 and s2 come
        # from the manifests too, the reference B is held to.
        cls.a = Agent("lookup-a", node_id="node-a", local_snapshots=1).start()
        # B's config is a directory laid out as the kubelet mounts a
        # ConfigMap (files linked through ..data), one file per key.
        conf = configmap_dir("lookup-b.conf.d", {
            "agent.conf": "upload-workers = 1\n",
            "lookup.conf": "# another node of the cluster\nlookup-repositories = %s, %s\n" % (cls.url, cls.url2)})
        cls.b = Agent("lookup-b", node_id="node-b", extra_args=("--config", conf)).start()
        cls.c = Agent("lookup-c", node_id="node-c").start()
        a, p = cls.a, {P_REPO: cls.url}
        v = a.create_volume("pvc-lookup", SIZE)
        t = a.publish(v.volume_id, a.block_target("pvc-lookup"))
        expected = bytearray(SIZE)
        cls.writes1 = [(0, MiB), (3 * MiB + 4096, MiB), (40 * MiB, 4096), (SIZE - 2 * MiB, MiB)]
        write(t, expected, cls.writes1, "lookup-a")
        cls.exp1 = bytes(expected)
        cls.s1 = a.create_snapshot(v.volume_id, "snapshot-lookup-1", p, cls.secrets)
        a.wait_ready(cls.s1.snapshot_id)
        # Scattered 4 KiB writes and one of a MiB: what the delta must cover.
        cls.writes2 = [(MiB + 8192, 4096), (17 * MiB + 4096 * 5, 4096), (40 * MiB + 512 * 1024, MiB),
                       (SIZE - 4096, 4096)]
        write(t, expected, cls.writes2, "lookup-b")
        cls.exp2 = bytes(expected)
        cls.s2 = a.create_snapshot(v.volume_id, "snapshot-lookup-2", p, cls.secrets)
        a.wait_ready(cls.s2.snapshot_id)
        s3 = a.create_snapshot(v.volume_id, "snapshot-lookup-3", p, cls.secrets)
        a.wait_ready(s3.snapshot_id)
        # A snapshot of the same volume in another repository, one of another volume.
        cls.sx = a.create_snapshot(v.volume_id, "snapshot-lookup-other-repo", {P_REPO: cls.url2}, cls.secrets)
        a.wait_ready(cls.sx.snapshot_id)
        w = a.create_volume("pvc-lookup-w", 8 * MiB)
        cls.sw = a.create_snapshot(w.volume_id, "snapshot-lookup-w", p, cls.secrets)
        a.wait_ready(cls.sw.snapshot_id)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(os.path.exists(a.snap_img(s.snapshot_id))
                                                  for s in (cls.s1, cls.s2)):
            time.sleep(0.1)
        for s in (cls.s1, cls.s2):
            assert not os.path.exists(a.snap_img(s.snapshot_id)), "A kept the clone of %s" % s.snapshot_id
        a.unpublish(v.volume_id, t)
        cls.chunk = repo_snapshot_of(cls.url, cls.s1.snapshot_id)["chunk_size"]

    @classmethod
    def tearDownClass(cls):
        for ag in (cls.a, cls.b, cls.c):
            ag.stop()

    def meta(self, agent, kind, **req):
        req.setdefault("secrets", self.secrets)
        return agent.metadata(kind, **req)

    def scans(self, agent):
        return len(agent.log_grep("manifests read"))

    def test_allocated_from_the_repository(self):
        a, b = self.a, self.b
        for s, writes in ((self.s1, self.writes1), (self.s2, self.writes1 + self.writes2)):
            want = self.meta(a, "allocated", snapshot_id=s.snapshot_id)
            got = self.meta(b, "allocated", snapshot_id=s.snapshot_id)
            self.assertEqual(tuples(got), tuples(want), "B's GetMetadataAllocated(%s) differs from A's" % s.snapshot_id)
            self.assertTrue(all(r.volume_capacity_bytes == SIZE for r in got), "volume_capacity_bytes")
            self.assertTrue(all(r.block_metadata_type == VARIABLE for r in got))
            self.assertFalse(blocks(writes) - blocks(tuples(got)), "B misses written blocks: %s" % tuples(got))
            self.assertTrue(blocks(tuples(got), self.chunk) <= blocks(writes, self.chunk),
                            "B: %s beyond the chunks written" % tuples(got))
        log("allocated on B, from the repository: %s" % tuples(got))

    def test_delta_from_the_repository(self):
        a, b = self.a, self.b
        want = self.meta(a, "delta", base_snapshot_id=self.s1.snapshot_id, target_snapshot_id=self.s2.snapshot_id)
        got = self.meta(b, "delta", base_snapshot_id=self.s1.snapshot_id, target_snapshot_id=self.s2.snapshot_id)
        self.assertEqual(tuples(got), tuples(want), "B's GetMetadataDelta differs from A's")
        self.assertTrue(all(r.volume_capacity_bytes == SIZE for r in got), "volume_capacity_bytes")
        self.assertFalse(blocks(self.writes2) - blocks(tuples(got)),
                         "B's delta misses changed 4 KiB blocks: %s" % tuples(got))
        self.assertTrue(blocks(tuples(got), self.chunk) <= blocks(self.writes2, self.chunk),
                        "B's delta: %s beyond the chunks changed" % tuples(got))
        log("delta on B, from the repository: %s (chunk %d)" % (tuples(got), self.chunk))

    def test_list_snapshots(self):
        """ListSnapshots(snapshot_id) of another node's snapshot: what the
        csi-snapshotter asks of a static VolumeSnapshotContent."""
        b, c = self.b, self.c
        want = self.a.get_snapshot(self.s1.snapshot_id)
        r = b.controller.ListSnapshots(pb.ListSnapshotsRequest(snapshot_id=self.s1.snapshot_id, secrets=self.secrets),
                                       timeout=60)
        self.assertEqual(len(r.entries), 1, "ListSnapshots(snapshot_id) on B: %s" % r)
        got = r.entries[0].snapshot
        self.assertEqual((got.snapshot_id, got.source_volume_id, got.size_bytes, got.ready_to_use),
                         (want.snapshot_id, want.source_volume_id, want.size_bytes, True))
        self.assertLess(abs(got.creation_time.ToNanoseconds() - want.creation_time.ToNanoseconds()), 60 * 10**9,
                        "creation time: B says %s, A %s" % (got.creation_time, want.creation_time))
        r = b.controller.ListSnapshots(pb.ListSnapshotsRequest(snapshot_id=self.s1.snapshot_id,
                                                               source_volume_id="vol-" + "0" * 32,
                                                               secrets=self.secrets), timeout=60)
        self.assertEqual(len(r.entries), 0, "a source_volume_id filter that does not match")
        e = self.assertCode(Code.PERMISSION_DENIED, b.controller.ListSnapshots,
                            pb.ListSnapshotsRequest(snapshot_id=self.s1.snapshot_id, secrets={"password": WRONG}),
                            "ListSnapshots with a wrong password")
        self.assertNotIn(WRONG, e.details())
        for ag, sid in ((b, "snap-" + uuid.uuid4().hex), (c, self.s1.snapshot_id)):
            r = ag.controller.ListSnapshots(pb.ListSnapshotsRequest(snapshot_id=sid, secrets=self.secrets), timeout=60)
            self.assertEqual(len(r.entries), 0, "%s: ListSnapshots(%s): %s" % (ag.name, sid, r))
        self.assertEqual(b.list_snapshots(), [], "B lists snapshots it does not hold")

    def test_paging_reads_the_repository_once(self):
        b, s2 = self.b, self.s2.snapshot_id
        full = tuples(self.meta(b, "allocated", snapshot_id=s2))
        dfull = tuples(self.meta(b, "delta", base_snapshot_id=self.s1.snapshot_id, target_snapshot_id=s2))
        before = self.scans(b)
        paged = self.meta(b, "allocated", snapshot_id=s2, max_results=1)
        self.assertTrue(all(len(r.block_metadata) <= 1 for r in paged), "a message with more than max_results")
        self.assertEqual(tuples(paged), full)
        # Continue from the middle of the second range, as a client that lost its stream does.
        off, ln = full[1]
        mid = off + ln // 2 // 4096 * 4096
        rest = tuples(self.meta(b, "allocated", snapshot_id=s2, starting_offset=mid))
        self.assertEqual(rest, [(mid, off + ln - mid)] + full[2:])
        dpaged = self.meta(b, "delta", base_snapshot_id=self.s1.snapshot_id, target_snapshot_id=s2, max_results=1,
                           starting_offset=dfull[1][0])
        self.assertTrue(all(len(r.block_metadata) <= 1 for r in dpaged))
        self.assertEqual(tuples(dpaged), dfull[1:])
        self.assertEqual(self.scans(b), before, "a later call read the repository's manifests again:\n%s"
                         % "\n".join(b.log_grep("manifests read")))
        log("B's searches so far:\n    " + "\n    ".join(ln.split(" info ", 1)[-1] for ln in
                                                         b.log_grep("manifests read")))

    def test_wrong_password(self):
        b = self.b
        for secrets in ({"password": WRONG}, {}):
            e = self.assertCode(Code.PERMISSION_DENIED, b.meta.GetMetadataAllocated,
                                pb.GetMetadataAllocatedRequest(snapshot_id=self.s1.snapshot_id, secrets=secrets),
                                "GetMetadataAllocated with secrets %s" % list(secrets))
            self.assertNotIn(WRONG, e.details())
            self.assertNotIn(PASSWORD, e.details())
            log("secrets %s: %s" % (list(secrets), e.details()))
        e = self.assertCode(Code.PERMISSION_DENIED, b.meta.GetMetadataDelta,
                            pb.GetMetadataDeltaRequest(base_snapshot_id=self.s1.snapshot_id,
                                                       target_snapshot_id=self.s2.snapshot_id,
                                                       secrets={"password": WRONG}), "GetMetadataDelta, wrong password")
        self.assertNotIn(WRONG, e.details())
        e = self.assertCode(Code.PERMISSION_DENIED, b.controller.CreateVolume,
                            pb.CreateVolumeRequest(name="pvc-lookup-wrong", volume_capabilities=[block_cap()],
                                                   volume_content_source=snap_source(self.s1.snapshot_id),
                                                   secrets={"password": WRONG}), "CreateVolume, wrong password",
                            timeout=120)
        self.assertNotIn(WRONG, e.details())
        self.assertEqual(os.listdir(os.path.join(b.state, "volumes")), [], "a failed CreateVolume left an image")
        for ag in (self.a, self.b, self.c):
            self.assertNotIn(WRONG, ag.log_text())
            self.assertNotIn(PASSWORD, ag.log_text())

    def test_unknown_and_mismatched(self):
        b, c = self.b, self.c
        unknown = "snap-" + uuid.uuid4().hex
        e = self.assertCode(Code.NOT_FOUND, b.meta.GetMetadataAllocated,
                            pb.GetMetadataAllocatedRequest(snapshot_id=unknown, secrets=self.secrets), "unknown id")
        for u in (self.url, self.url2):
            self.assertIn(u[len("file://"):], e.details(), "NOT_FOUND does not name the repository searched")
        log("unknown: %s" % e.details())
        self.assertCode(Code.NOT_FOUND, b.meta.GetMetadataDelta,
                        pb.GetMetadataDeltaRequest(base_snapshot_id=unknown, target_snapshot_id=self.s2.snapshot_id,
                                                   secrets=self.secrets), "delta from an unknown base")
        self.assertCode(Code.NOT_FOUND, b.meta.GetMetadataDelta,
                        pb.GetMetadataDeltaRequest(base_snapshot_id=self.s1.snapshot_id, target_snapshot_id=unknown,
                                                   secrets=self.secrets), "delta to an unknown target")
        # No repository to look in: NOT_FOUND, saying so.
        e = self.assertCode(Code.NOT_FOUND, c.meta.GetMetadataAllocated,
                            pb.GetMetadataAllocatedRequest(snapshot_id=self.s1.snapshot_id, secrets=self.secrets),
                            "an agent without lookup-repositories")
        self.assertIn("lookup-repositories", e.details())
        e = self.assertCode(Code.INVALID_ARGUMENT, b.meta.GetMetadataDelta,
                            pb.GetMetadataDeltaRequest(base_snapshot_id=self.sw.snapshot_id,
                                                       target_snapshot_id=self.s2.snapshot_id, secrets=self.secrets),
                            "a delta between snapshots of different volumes")
        self.assertIn("different volumes", e.details())
        e = self.assertCode(Code.INVALID_ARGUMENT, b.meta.GetMetadataDelta,
                            pb.GetMetadataDeltaRequest(base_snapshot_id=self.sx.snapshot_id,
                                                       target_snapshot_id=self.s2.snapshot_id, secrets=self.secrets),
                            "a delta between snapshots in different repositories")
        self.assertIn("one repository", e.details())
        self.assertCode(Code.OUT_OF_RANGE, b.meta.GetMetadataAllocated,
                        pb.GetMetadataAllocatedRequest(snapshot_id=self.s1.snapshot_id, starting_offset=SIZE,
                                                       secrets=self.secrets), "starting_offset at the end")

    def test_unreadable_repository(self):
        """A repository whose listing fails may hold the snapshot: the
        others still answer, and found nowhere is UNAVAILABLE (try again),
        not NOT_FOUND."""
        c = self.c
        url3, path3 = new_repo("lookup-broken")
        os.rmdir(os.path.join(path3, "snapshots"))
        with open(os.path.join(path3, "snapshots"), "w") as f:
            f.write("not a folder: the listing cannot be trusted\n")
        params = {P_REPO: url3, P_COPY: self.url}
        r = c.controller.ListSnapshots(pb.ListSnapshotsRequest(snapshot_id=self.s1.snapshot_id,
                                                               secrets=self.secrets), timeout=60)
        self.assertEqual(len(r.entries), 0, "C has no lookup-repositories")
        v = c.create_volume("pvc-lookup-broken", SIZE, snapshot=self.s1.snapshot_id, secrets=self.secrets,
                            parameters=params)
        self.restored(c, v, self.exp1, "lookup-broken")
        c.delete_volume(v.volume_id)
        e = self.assertCode(Code.UNAVAILABLE, c.controller.CreateVolume,
                            pb.CreateVolumeRequest(name="pvc-lookup-unknown", volume_capabilities=[block_cap()],
                                                   volume_content_source=snap_source("snap-" + uuid.uuid4().hex),
                                                   parameters=params, secrets=self.secrets),
                            "CreateVolume of an unknown id with an unreadable repository among those named")
        self.assertIn(path3, e.details())
        self.assertIn(self.url[len("file://"):] + ": not there", e.details())
        log("unreadable: %s" % e.details())

    def restored(self, agent, vol, exp, name):
        """The volume's image equals exp (`cmp`)."""
        ref = os.path.join(WORK, name + ".expected")
        with open(ref, "wb") as f:
            f.write(exp)
        img = agent.vol_img(vol.volume_id)
        self.assertEqual(os.path.getsize(img), len(exp), "restored volume's size")
        p = subprocess.run(["cmp", img, ref], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.assertEqual(p.returncode, 0, "cmp: %s" % p.stdout.decode(errors="replace"))
        os.unlink(ref)

    def test_create_volume_from_config(self):
        b = self.b
        v = b.create_volume("pvc-lookup-b", SIZE, snapshot=self.s1.snapshot_id, secrets=self.secrets)
        self.assertEqual(v.content_source.snapshot.snapshot_id, self.s1.snapshot_id)
        self.assertEqual(dict(v.accessible_topology[0].segments), {"topology.ferry.csi.dev/node": "node-b"})
        self.restored(b, v, self.exp1, "lookup-b")
        again = b.create_volume("pvc-lookup-b", SIZE, snapshot=self.s1.snapshot_id, secrets=self.secrets)
        self.assertEqual(again.volume_id, v.volume_id, "a repeated CreateVolume made another volume")
        b.delete_volume(v.volume_id)

    def test_create_volume_from_parameters(self):
        c = self.c
        # The StorageClass names a repository that lacks it, and a copy that has it.
        params = {P_REPO: self.url2, P_COPY: self.url}
        v = c.create_volume("pvc-lookup-c", SIZE, snapshot=self.s2.snapshot_id, secrets=self.secrets,
                            parameters=params)
        self.assertEqual(v.content_source.snapshot.snapshot_id, self.s2.snapshot_id)
        self.restored(c, v, self.exp2, "lookup-c")
        c.delete_volume(v.volume_id)
        # Larger than the snapshot: grown, the snapshot's bytes first.
        v = c.create_volume("pvc-lookup-c-big", SIZE + 16 * MiB, snapshot=self.s1.snapshot_id, secrets=self.secrets,
                            parameters={P_REPO: self.url})
        self.assertEqual(v.capacity_bytes, SIZE + 16 * MiB)
        self.restored(c, v, self.exp1 + bytes(16 * MiB), "lookup-c-big")
        c.delete_volume(v.volume_id)

    def test_bad_config(self):
        """A lookup-repositories entry that is no repository URL: one line, exit 2."""
        for val in ("http://example.com/bucket", "file://relative/path", "s3://a, /tmp/x"):
            conf = os.path.join(WORK, "lookup-bad.conf")
            with open(conf, "w") as f:
                f.write("lookup-repositories = %s\n" % val)
            sock = os.path.join(WORK, "lookup-bad.sock")
            p = subprocess.run([FERRY, "agent", "--endpoint", "unix://" + sock, "--config", conf,
                                "--state-dir", os.path.join(WORK, "lookup-bad-state")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
            err = p.stderr.decode(errors="replace")
            self.assertEqual(p.returncode, 2, "lookup-repositories = %s: exit %d, %s" % (val, p.returncode, err))
            self.assertEqual(len(err.splitlines()), 1, err)
            self.assertIn("lookup-repositories", err)
            self.assertIn(val.split(", ")[-1], err)
            self.assertFalse(os.path.exists(sock) or os.path.exists(os.path.join(WORK, "lookup-bad-state")),
                             "a refused config touched the socket or the state directory")
        log("refused: %s" % err.strip())

    def test_zz_stop_clean(self):
        for ag in (self.a, self.b, self.c):
            rc, _ = ag.stop()
            self.assertEqual(rc, 0, "%s: exit status after SIGTERM" % ag.name)
            self.assertAgentClean(ag)


def snap_source(snap_id):
    return pb.VolumeContentSource(snapshot=pb.VolumeContentSource.SnapshotSource(snapshot_id=snap_id))


if __name__ == "__main__":
    main()
