#!/usr/bin/python3
"""CSI: the whole life of a block volume and its snapshots.

CreateVolume (block, 256 MiB) -> NodePublishVolume -> known random writes
through the published device -> CreateSnapshot to a file:// repository (and a
copy) -> ready_to_use false, then true -> more writes -> a second snapshot ->
GetMetadataDelta / GetMetadataAllocated against the writes (4 KiB blocks),
paging and continuation -> volumes cloned from each snapshot compared byte by
byte -> `ferry restore` of the repository snapshots compared -> `ferry check
--read-data` -> labels -> DeleteVolume of a published volume refused ->
unpublish, delete, nothing left behind."""
import os
import re
import stat
import uuid

from csilib import (StopsClean, BS, L_SNAPSHOT_ID, P_COPY, P_COPY_OPT, P_REPO, P_VS_NAME, P_VS_NS, P_VSC_NAME, PASSWORD, WORK, MiB,
                    Agent, AgentTest, Code, block_cap, blocks, ferry, first_difference, log, loops_backed_by, main,
                    merge_ranges, merged, mounts_at, new_repo, pb, prand, pwrite_sync, read_range,
                    repo_snapshot_of, tuples)

SNAP_ID = re.compile(r"^snap-[0-9a-f]{32}$")
SIZE = 256 * MiB
VARIABLE = pb.BlockMetadataType.Value("VARIABLE_LENGTH")

# (offset, length) of the writes before the first snapshot and between the
# two: aligned and unaligned, single bytes, block-straddling, adjacent to
# earlier writes, large, and at the very end of the volume.
WRITES1 = [(0, 4096), (5 * BS + 100, 3000), (MiB - 2048, 4096), (7 * MiB + 1, 1),
           (100 * MiB, MiB + 3 * BS), (SIZE - BS, BS)]
WRITES2 = [(BS, BS), (5 * BS, 10), (50 * MiB + 7, 20000), (100 * MiB + 2 * BS, BS),
           (200 * MiB, 64 * 1024), (SIZE - 2 * BS, 100), (SIZE - 1, 1)]


def describe_blocks(bset):
    return ", ".join("%d+%d" % r for r in merged(bset)) or "none"


class Lifecycle(StopsClean, AgentTest):
    @classmethod
    def setUpClass(cls):
        cls.agent = Agent("lifecycle", node_id="node-lc").start()
        cls.url, cls.repo_path = new_repo("lifecycle")
        cls.copy_url = "file://" + os.path.join(WORK, "repos", "lifecycle-copy")
        ferry("init", "--repo", cls.copy_url, "--copy-of", cls.url)

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()

    def write(self, target, expected, writes, seed):
        for i, (off, ln) in enumerate(writes):
            data = prand(ln, "%s-%d" % (seed, i))
            pwrite_sync(target, off, data)
            expected[off:off + ln] = data

    def check_stream(self, resps, what, size=SIZE):
        """Every message: VARIABLE_LENGTH, the volume's size; tuples ascending,
        not overlapping, inside the volume.  Returns the tuples."""
        self.assertTrue(all(r.block_metadata_type == VARIABLE for r in resps),
                        "%s: block_metadata_type %s, want VARIABLE_LENGTH"
                        % (what, sorted({r.block_metadata_type for r in resps})))
        self.assertTrue(all(r.volume_capacity_bytes == size for r in resps),
                        "%s: volume_capacity_bytes %s, want %d"
                        % (what, sorted({r.volume_capacity_bytes for r in resps}), size))
        t = tuples(resps)
        end = 0
        for off, ln in t:
            self.assertGreater(ln, 0, "%s: empty tuple at %d" % (what, off))
            self.assertGreaterEqual(off, end, "%s: tuples out of order or overlapping at %d" % (what, off))
            end = off + ln
        self.assertLessEqual(end, size, "%s: a tuple ends at %d, beyond the volume" % (what, end))
        return t

    def continuation(self, kind, **req):
        """The whole list, one tuple per call: each call asks for max_results=1
        from the end of the previous tuple, takes the first tuple and
        cancels the stream, as a client resuming an interrupted stream."""
        out, off = [], 0
        for _ in range(10000):
            fn = self.agent.meta.GetMetadataAllocated if kind == "allocated" else self.agent.meta.GetMetadataDelta
            Req = pb.GetMetadataAllocatedRequest if kind == "allocated" else pb.GetMetadataDeltaRequest
            stream = fn(Req(starting_offset=off, max_results=1, **req), timeout=60)
            first = None
            for r in stream:
                self.assertLessEqual(len(r.block_metadata), 1, "max_results=1 but %d tuples in a message"
                                     % len(r.block_metadata))
                if r.block_metadata:
                    first = (r.block_metadata[0].byte_offset, r.block_metadata[0].size_bytes)
                    break
            stream.cancel()
            if first is None:
                return out
            self.assertGreaterEqual(first[0], off, "%s from %d starts at %d" % (kind, off, first[0]))
            out.append(first)
            off = first[0] + first[1]
            if off >= SIZE:
                return out
        self.fail("continuation does not end")

    def test_block_lifecycle(self):
        a = self.agent
        vs_ns = "ns-lifecycle"
        vol = a.create_volume("pvc-lifecycle-main", SIZE)
        vid = vol.volume_id
        self.assertGreaterEqual(vol.capacity_bytes, SIZE)

        target = a.publish(vid, a.block_target("pvc-lifecycle-main"))
        st = os.stat(target)
        self.assertTrue(stat.S_ISBLK(st.st_mode), "published block target is not a block device (mode %o)"
                        % st.st_mode)
        self.assertTrue(mounts_at(target), "the block target is not a (bind) mount point")
        with open(target, "rb") as f:
            self.assertEqual(f.seek(0, 2), SIZE, "the published device's size")
        # Idempotent publish: the same volume, target and capability again.
        a.publish(vid, target)
        self.assertEqual(len(mounts_at(target)), 1, "publish twice mounted twice")

        # Stats of a block volume: its size in bytes.
        st = a.node.NodeGetVolumeStats(pb.NodeGetVolumeStatsRequest(volume_id=vid, volume_path=target), timeout=30)
        totals = [u.total for u in st.usage if u.unit == pb.VolumeUsage.BYTES]
        self.assertEqual(totals, [SIZE], "NodeGetVolumeStats of a block volume: %s" % st)

        expected = bytearray(SIZE)
        self.write(target, expected, WRITES1, "w1")
        expected1 = bytes(expected)

        params1 = {P_REPO: self.url, P_COPY: self.copy_url, P_VS_NAME: "vs-one", P_VS_NS: vs_ns,
                   P_VSC_NAME: "snapcontent-" + str(uuid.uuid4())}
        secrets = {"password": PASSWORD}
        name1 = "snapshot-" + str(uuid.uuid4())
        s1 = a.create_snapshot(vid, name1, params1, secrets)
        self.assertRegex(s1.snapshot_id, SNAP_ID)
        self.assertEqual(s1.source_volume_id, vid)
        self.assertGreater(s1.creation_time.seconds, 0, "no creation_time")
        self.assertFalse(s1.ready_to_use, "CreateSnapshot with a repository answered ready_to_use=true: "
                         "it must return before the upload ends")
        # The same request again: the same snapshot.
        again = a.create_snapshot(vid, name1, params1, secrets)
        self.assertEqual(again.snapshot_id, s1.snapshot_id)
        self.assertEqual(again.creation_time, s1.creation_time, "creation_time changed between calls")
        self.assertTrue(os.path.exists(a.snap_img(s1.snapshot_id)), "no local clone " + a.snap_img(s1.snapshot_id))

        r1 = a.wait_ready(s1.snapshot_id)
        self.assertEqual(r1.source_volume_id, vid)
        self.assertEqual(r1.creation_time, s1.creation_time)
        self.assertEqual(r1.size_bytes, SIZE, "snapshot size_bytes")
        again = a.create_snapshot(vid, name1, params1, secrets)
        self.assertTrue(again.ready_to_use, "CreateSnapshot after ready: ready_to_use false")

        # Writes after the cut must not reach the snapshot.
        self.write(target, expected, WRITES2, "w2")
        expected2 = bytes(expected)
        # No copy-to this time, but an optional copy that cannot be written (no
        # repository there): dropped with a warning, the snapshot still ready.
        params2 = dict(params1, **{P_VS_NAME: "vs-two", P_VSC_NAME: "snapcontent-" + str(uuid.uuid4()),
                                   P_COPY_OPT: "file://" + os.path.join(WORK, "repos", "lifecycle-no-such-copy")})
        del params2[P_COPY]
        s2 = a.create_snapshot(vid, "snapshot-" + str(uuid.uuid4()), params2, secrets)
        self.assertNotEqual(s2.snapshot_id, s1.snapshot_id)
        a.wait_ready(s2.snapshot_id)

        # --- GetMetadataDelta(s1, s2): exactly the blocks of WRITES2.
        resps = a.metadata("delta", base_snapshot_id=s1.snapshot_id, target_snapshot_id=s2.snapshot_id)
        delta = self.check_stream(resps, "GetMetadataDelta")
        want, got = blocks(WRITES2), blocks(delta)
        self.assertEqual(got, want, "GetMetadataDelta: blocks missing: %s; blocks extra: %s; got %s"
                         % (describe_blocks(want - got), describe_blocks(got - want), delta[:20]))
        self.assertEqual(merge_ranges(delta), merged(want))
        log("delta: %d tuples, %d blocks" % (len(delta), len(got)))

        # Paged: at most one tuple per message, the same list.
        paged = self.check_stream(a.metadata("delta", base_snapshot_id=s1.snapshot_id,
                                             target_snapshot_id=s2.snapshot_id, max_results=1),
                                  "GetMetadataDelta max_results=1")
        self.assertEqual(paged, delta, "GetMetadataDelta with max_results=1 lists other tuples")
        # Continued tuple by tuple with starting_offset: the same list.
        cont = self.continuation("delta", base_snapshot_id=s1.snapshot_id, target_snapshot_id=s2.snapshot_id)
        self.assertEqual(cont, delta, "GetMetadataDelta continued with starting_offset lists other tuples")
        # From inside a range: the blocks from there on (rounding down to a block is allowed).
        big = [t for t in delta if t[1] >= 4 * BS]
        self.assertTrue(big, "no delta tuple of 4 blocks or more (the 64 KiB write)")
        mid = big[0][0] + 2 * BS + 17
        part = self.check_stream(a.metadata("delta", base_snapshot_id=s1.snapshot_id,
                                            target_snapshot_id=s2.snapshot_id, starting_offset=mid),
                                 "GetMetadataDelta from %d" % mid)
        from_mid = {b for b in blocks(delta) if b >= mid // BS}
        self.assertEqual({b for b in blocks(part) if b >= mid // BS}, from_mid,
                         "GetMetadataDelta from the middle of a range")
        self.assertTrue(blocks(part) <= blocks(delta))
        self.assertTrue(all(o + n > mid for o, n in part), "tuples ending before starting_offset")

        # --- GetMetadataAllocated: covers what was written, not the whole volume.
        for sid, writes, what in ((s1.snapshot_id, WRITES1, "s1"), (s2.snapshot_id, WRITES1 + WRITES2, "s2")):
            alloc = self.check_stream(a.metadata("allocated", snapshot_id=sid), "GetMetadataAllocated " + what)
            missing = blocks(writes) - blocks(alloc)
            self.assertFalse(missing, "GetMetadataAllocated %s: written blocks not allocated: %s"
                             % (what, describe_blocks(missing)))
            total = sum(n for _, n in alloc)
            self.assertLess(total, SIZE // 4, "GetMetadataAllocated %s: %d bytes of a sparse volume with "
                            "%d bytes written" % (what, total, len(blocks(writes)) * BS))
            paged = self.check_stream(a.metadata("allocated", snapshot_id=sid, max_results=1),
                                      "GetMetadataAllocated max_results=1 " + what)
            self.assertEqual(paged, alloc, "GetMetadataAllocated %s with max_results=1" % what)
            cont = self.continuation("allocated", snapshot_id=sid)
            self.assertEqual(cont, alloc, "GetMetadataAllocated %s continued with starting_offset" % what)
            log("allocated %s: %d tuples, %d bytes" % (what, len(alloc), total))

        # --- volumes from each snapshot hold exactly the snapshot's bytes.
        clones = []
        for snap, exp, name in ((s1, expected1, "pvc-lifecycle-from-s1"), (s2, expected2, "pvc-lifecycle-from-s2")):
            c = a.create_volume(name, SIZE, snapshot=snap.snapshot_id)
            self.assertEqual(c.content_source.snapshot.snapshot_id, snap.snapshot_id,
                             "CreateVolume from a snapshot: content_source not echoed")
            self.assertGreaterEqual(c.capacity_bytes, SIZE)
            again = a.create_volume(name, SIZE, snapshot=snap.snapshot_id)
            self.assertEqual(again.volume_id, c.volume_id, "CreateVolume from a snapshot is not idempotent")
            t = a.publish(c.volume_id, a.block_target(name))
            diff = first_difference(t, exp)
            self.assertIsNone(diff, "volume from %s differs from the snapshot at byte %s" % (snap.snapshot_id, diff))
            clones.append((c.volume_id, t))
        # A clone is independent: writing to it changes neither the source
        # volume nor the snapshot.
        pwrite_sync(clones[0][1], 0, b"\xa5" * BS)
        self.assertEqual(read_range(target, 0, BS), expected2[:BS], "a write to a clone reached the source")
        c3 = a.create_volume("pvc-lifecycle-from-s1-again", SIZE, snapshot=s1.snapshot_id)
        t3 = a.publish(c3.volume_id, a.block_target("pvc-lifecycle-from-s1-again"))
        self.assertIsNone(first_difference(t3, expected1), "a write to a clone reached the snapshot")
        clones.append((c3.volume_id, t3))

        # --- a clone of the live volume (CLONE_VOLUME): its bytes at that moment.
        r = pb.CreateVolumeRequest(name="pvc-lifecycle-clone", capacity_range=pb.CapacityRange(required_bytes=SIZE),
                                   volume_capabilities=[block_cap()])
        r.volume_content_source.volume.volume_id = vid
        vc = a.controller.CreateVolume(r, timeout=120).volume
        self.assertEqual(vc.content_source.volume.volume_id, vid, "CreateVolume from a volume: content_source")
        tc = a.publish(vc.volume_id, a.block_target("pvc-lifecycle-clone"))
        self.assertIsNone(first_difference(tc, expected2), "the clone of the volume differs from it")
        clones.append((vc.volume_id, tc))

        # --- the repository: labels, restores, check.
        for snap, exp, vsname, params in ((s1, expected1, "vs-one", params1), (s2, expected2, "vs-two", params2)):
            rs = repo_snapshot_of(self.url, snap.snapshot_id)
            labels = rs.get("labels", {})
            self.assertEqual(labels.get(L_SNAPSHOT_ID), snap.snapshot_id)
            self.assertEqual(labels.get(P_VS_NAME), vsname, "label %s: %s" % (P_VS_NAME, labels))
            self.assertEqual(labels.get(P_VS_NS), vs_ns, "label %s: %s" % (P_VS_NS, labels))
            self.assertEqual(labels.get(P_VSC_NAME), params[P_VSC_NAME], "label %s: %s" % (P_VSC_NAME, labels))
            self.assertEqual(rs.get("size"), SIZE, "repository snapshot size")
            log("repository snapshot %s of %s: labels %s, stats %s"
                % (rs["id"][:8], snap.snapshot_id, sorted(labels), rs.get("stats")))
            out = os.path.join(WORK, "restore-%s.img" % snap.snapshot_id)
            ferry("restore", "--repo", self.url, rs["id"], out)
            self.assertEqual(os.path.getsize(out), SIZE)
            diff = first_difference(out, exp)
            self.assertIsNone(diff, "`ferry restore` of %s differs from the snapshot at byte %s"
                              % (snap.snapshot_id, diff))
            os.unlink(out)
        # The copy got the first snapshot (copy-to), not the second.
        rc = repo_snapshot_of(self.copy_url, s1.snapshot_id)
        out = os.path.join(WORK, "restore-copy.img")
        ferry("restore", "--repo", self.copy_url, rc["id"], out)
        self.assertIsNone(first_difference(out, expected1), "the copy's snapshot differs")
        os.unlink(out)
        ferry("check", "--repo", self.url, "--read-data")
        ferry("check", "--repo", self.copy_url, "--read-data")

        # --- a published volume cannot be deleted.
        e = self.assertCode(Code.FAILED_PRECONDITION, a.controller.DeleteVolume,
                            pb.DeleteVolumeRequest(volume_id=vid), "DeleteVolume of a published volume")
        self.assertTrue(os.path.exists(a.vol_img(vid)), "the image went away: " + e.details())
        self.assertEqual(read_range(target, SIZE - BS, BS), expected2[SIZE - BS:], "published volume damaged")

        # --- tear down: unpublish (twice), delete snapshots and volumes.
        for v, t in [(vid, target)] + clones:
            a.unpublish(v, t)
            a.unpublish(v, t)
            self.assertFalse(mounts_at(t), "%s still mounted after NodeUnpublishVolume" % t)
            self.assertFalse(os.path.lexists(t), "NodeUnpublishVolume left the target %s behind" % t)
        for snap in (s1, s2):
            a.delete_snapshot(snap.snapshot_id)
            self.assertIsNone(a.get_snapshot(snap.snapshot_id), "deleted snapshot still listed")
            self.assertFalse(os.path.exists(a.snap_img(snap.snapshot_id)), "deleted snapshot's clone remains")
            a.delete_snapshot(snap.snapshot_id)   # idempotent
        for v in [vid] + [c for c, _ in clones]:
            img = a.vol_img(v)
            a.delete_volume(v)
            self.assertFalse(os.path.exists(img), "deleted volume's image remains")
            self.assertEqual(loops_backed_by(img), [], "loop device still attached to deleted %s" % img)
        self.assertEqual(a.list_snapshots(), [])

    def test_two_targets(self):
        """One volume at two block targets (two pods on the node): unpublishing
        one leaves the other working; the loop device goes with the last."""
        a = self.agent
        v = a.create_volume("pvc-lifecycle-two", 16 * MiB)
        t1 = a.publish(v.volume_id, a.block_target("pvc-lifecycle-two"))
        t2 = a.publish(v.volume_id, a.block_target("pvc-lifecycle-two"))
        data = prand(MiB, "two")
        pwrite_sync(t1, 3 * MiB, data)
        self.assertEqual(read_range(t2, 3 * MiB, MiB), data, "the two targets are not the same volume")
        a.unpublish(v.volume_id, t1)
        self.assertFalse(mounts_at(t1))
        pwrite_sync(t2, 5 * MiB, data)
        self.assertEqual(read_range(t2, 3 * MiB, MiB), data, "the second target after unpublishing the first")
        self.assertEqual(read_range(t2, 5 * MiB, MiB), data)
        self.assertCode(Code.FAILED_PRECONDITION, a.controller.DeleteVolume,
                        pb.DeleteVolumeRequest(volume_id=v.volume_id), "DeleteVolume with one target left")
        a.unpublish(v.volume_id, t2)
        img = a.vol_img(v.volume_id)
        self.assertEqual(loops_backed_by(img), [], "loop device still attached after the last unpublish")
        self.assertEqual(read_range(img, 5 * MiB, MiB), data, "data written through the device not in the image")
        a.delete_volume(v.volume_id)

    def test_snapshot_outlives_volume(self):
        """A snapshot stays usable after its volume is deleted."""
        a = self.agent
        v = a.create_volume("pvc-lifecycle-gone", 16 * MiB)
        t = a.publish(v.volume_id, a.block_target("pvc-lifecycle-gone"))
        exp = bytearray(16 * MiB)
        exp[MiB:3 * MiB] = prand(2 * MiB, "gone")
        pwrite_sync(t, MiB, bytes(exp[MiB:3 * MiB]))
        s = a.create_snapshot(v.volume_id, "snapshot-lifecycle-gone")
        self.assertTrue(s.ready_to_use)
        a.unpublish(v.volume_id, t)
        a.delete_volume(v.volume_id)
        got = a.get_snapshot(s.snapshot_id)
        self.assertIsNotNone(got, "the snapshot went with its volume")
        self.assertEqual(got.source_volume_id, v.volume_id)
        alloc = tuples(a.metadata("allocated", snapshot_id=s.snapshot_id))
        self.assertEqual(blocks(alloc), blocks([(MiB, 2 * MiB)]), "allocated ranges of the orphaned snapshot")
        c = a.create_volume("pvc-lifecycle-gone-restored", 16 * MiB, snapshot=s.snapshot_id)
        tc = a.publish(c.volume_id, a.block_target("pvc-lifecycle-gone-restored"))
        self.assertIsNone(first_difference(tc, exp), "volume from a snapshot whose source was deleted")
        a.unpublish(c.volume_id, tc)
        a.delete_volume(c.volume_id)
        a.delete_snapshot(s.snapshot_id)


if __name__ == "__main__":
    main()
