#!/usr/bin/python3
"""CSI: --local-snapshots 1 keeps one local clone per volume once uploaded.
After two ready snapshots the first one's clone is gone, the snapshot is
still listed and ready, and CreateVolume from it restores it from the
repository with the CreateVolume secrets: byte-identical."""
import os
import time

import grpc

from csilib import (StopsClean, P_REPO, PASSWORD, MiB, Agent, AgentTest, block_cap, blocks, first_difference, log, main,
                    new_repo, pb, prand, pwrite_sync, repo_snapshot_of, tuples)

SIZE = 64 * MiB


class Eviction(StopsClean, AgentTest):
    @classmethod
    def setUpClass(cls):
        cls.agent = Agent("eviction", node_id="node-evict", local_snapshots=1).start()
        cls.url, cls.repo_path = new_repo("eviction")

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()

    def test_eviction_and_restore_from_repository(self):
        a = self.agent
        v = a.create_volume("pvc-evict", SIZE)
        t = a.publish(v.volume_id, a.block_target("pvc-evict"))
        expected = bytearray(SIZE)
        writes1 = [(off, MiB) for off in (0, 3 * MiB + 4096, 40 * MiB, SIZE - 2 * MiB)]
        for i, (off, _) in enumerate(writes1):
            d = prand(MiB, "evict-a-%d" % i)
            pwrite_sync(t, off, d)
            expected[off:off + len(d)] = d
        exp1 = bytes(expected)
        params, secrets = {P_REPO: self.url}, {"password": PASSWORD}
        s1 = a.create_snapshot(v.volume_id, "snapshot-evict-1", params, secrets)
        a.wait_ready(s1.snapshot_id)
        self.assertTrue(os.path.exists(a.snap_img(s1.snapshot_id)), "the only snapshot's clone was evicted")

        writes2 = [(off, MiB) for off in (MiB, 40 * MiB + 512 * 1024)]
        for i, (off, _) in enumerate(writes2):
            d = prand(MiB, "evict-b-%d" % i)
            pwrite_sync(t, off, d)
            expected[off:off + len(d)] = d
        exp2 = bytes(expected)
        s2 = a.create_snapshot(v.volume_id, "snapshot-evict-2", params, secrets)
        a.wait_ready(s2.snapshot_id)

        # The first clone goes (eviction may trail the upload: poll with a deadline).
        deadline = time.monotonic() + 60
        while os.path.exists(a.snap_img(s1.snapshot_id)) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertFalse(os.path.exists(a.snap_img(s1.snapshot_id)),
                         "with --local-snapshots 1, the first snapshot's clone is still there after two uploads")
        self.assertTrue(os.path.exists(a.snap_img(s2.snapshot_id)), "the newest snapshot's clone was evicted")
        got = a.get_snapshot(s1.snapshot_id)
        self.assertIsNotNone(got, "an evicted snapshot is no longer listed")
        self.assertTrue(got.ready_to_use, "an evicted (uploaded) snapshot is not ready_to_use")

        # SnapshotMetadata still answers for the evicted snapshot, from the
        # repository's manifests (with the request's secrets), at the
        # repository's chunk granularity: a superset of the written blocks
        # within the chunks they touch.
        chunk = repo_snapshot_of(self.url, s1.snapshot_id)["chunk_size"]
        alloc = tuples(a.metadata("allocated", snapshot_id=s1.snapshot_id, secrets=secrets))
        self.assertFalse(blocks(writes1) - blocks(alloc), "GetMetadataAllocated of the evicted snapshot misses "
                         "written blocks: %s" % alloc)
        self.assertTrue(blocks(alloc, chunk) <= blocks(writes1, chunk),
                        "GetMetadataAllocated of the evicted snapshot: %s beyond the chunks written" % alloc)
        delta = tuples(a.metadata("delta", base_snapshot_id=s1.snapshot_id, target_snapshot_id=s2.snapshot_id,
                                  secrets=secrets))
        self.assertFalse(blocks(writes2) - blocks(delta), "GetMetadataDelta from the evicted snapshot misses "
                         "changed blocks: %s" % delta)
        self.assertTrue(blocks(delta, chunk) <= blocks(writes2, chunk),
                        "GetMetadataDelta from the evicted snapshot: %s beyond the chunks changed" % delta)
        log("metadata after eviction: allocated %s, delta %s (chunk %d)" % (alloc, delta, chunk))

        # Without the password it cannot be restored: an error, and no volume left behind.
        with self.subTest("CreateVolume from an evicted snapshot without secrets"):
            try:
                r = a.create_volume("pvc-evict-nosecret", SIZE, snapshot=s1.snapshot_id)
                self.fail("CreateVolume from an evicted snapshot without a password succeeded: %s" % r.volume_id)
            except grpc.RpcError as e:
                log("without secrets: %s %s" % (e.code().name, e.details()))
                self.assertNotIn(e.code(), (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), e.details())
        imgs = os.listdir(os.path.join(a.state, "volumes"))
        self.assertEqual(imgs, [v.volume_id + ".img"], "a failed CreateVolume left an image behind")

        # With it: restored from the repository, byte-identical.
        t0 = time.monotonic()
        c1 = a.create_volume("pvc-evict-from-1", SIZE, snapshot=s1.snapshot_id, secrets=secrets)
        log("CreateVolume from the evicted snapshot: %.2fs" % (time.monotonic() - t0))
        self.assertEqual(c1.content_source.snapshot.snapshot_id, s1.snapshot_id)
        t1 = a.publish(c1.volume_id, a.block_target("pvc-evict-from-1"))
        diff = first_difference(t1, exp1)
        self.assertIsNone(diff, "volume restored from the repository differs at byte %s" % diff)
        # The kept clone still serves, too.
        c2 = a.create_volume("pvc-evict-from-2", SIZE, snapshot=s2.snapshot_id)
        t2 = a.publish(c2.volume_id, a.block_target("pvc-evict-from-2"))
        self.assertIsNone(first_difference(t2, exp2), "volume from the local clone differs")
        vv = a.controller.ValidateVolumeCapabilities(
            pb.ValidateVolumeCapabilitiesRequest(volume_id=c1.volume_id, volume_capabilities=[block_cap()]),
            timeout=10)
        self.assertTrue(vv.HasField("confirmed"))

        for vid, tt in ((c1.volume_id, t1), (c2.volume_id, t2), (v.volume_id, t)):
            a.unpublish(vid, tt)
            a.delete_volume(vid)
        for s in (s1, s2):
            a.delete_snapshot(s.snapshot_id)
        self.assertEqual(a.list_snapshots(), [])


if __name__ == "__main__":
    main()
