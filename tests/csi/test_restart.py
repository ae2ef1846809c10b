#!/usr/bin/python3
"""CSI: the agent killed (SIGKILL) and stopped (SIGTERM) in the middle of an
upload resumes it at its next start; the catalog, the volumes and their
publications survive restarts; SIGTERM ends the process with status 0 within
a few seconds.

The upload is made long enough to interrupt with a 1 GiB volume of random
data and --upload-workers 1; the interruption is timed by watching the
repository grow (the first chunk objects appear under chunks/), and checked
afterwards: no manifest under snapshots/ means the upload had not finished."""
import hashlib
import os
import signal
import time

from csilib import (P_REPO, PASSWORD, WORK, GiB, MiB, Agent, AgentTest, Code, block_cap, count_files,
                    ferry, first_difference, log, loops_backed_by, main, mounts_at, new_repo, pb, prand, prand_stream,
                    pwrite_sync, repo_snapshot_of, repo_snapshots, sha256_of)

BIG = 1 * GiB


def wait_for_chunks(agent, repo_path, timeout=60):
    """Poll until the repository holds chunk objects (the upload is under
    way); returns how many.  Fails if the snapshot manifest appears first."""
    chunks = os.path.join(repo_path, "chunks")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = count_files(chunks) if os.path.isdir(chunks) else 0
        if n > 0:
            return n
        if not agent.running():
            raise AssertionError("agent died before the upload began:\n" + agent.log_tail())
        time.sleep(0.005)
    raise AssertionError("no chunk in %s within %ds:\n%s" % (chunks, timeout, agent.log_tail()))


class Restart(AgentTest):
    @classmethod
    def setUpClass(cls):
        cls.agent = Agent("restart", node_id="node-restart", upload_workers=1).start()

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()

    def test_leftover_restore_temps(self):
        """A CreateVolume restore from a repository writes VOLUME.img.ferry-restore
        beside the volume's image; killed meanwhile, the next start removes
        it (and the .tmp files of clones), and nothing else."""
        a = self.agent
        vols = os.path.join(a.state, "volumes")
        a.kill()
        planted = {name: os.path.join(vols, name) for name in
                   ("pvc-gone.img.ferry-restore", ".tmp-clone-x", "other.ferry-restore.keep")}
        for path in planted.values():
            with open(path, "wb") as f:
                f.write(b"x" * 4096)
        a.start()
        for name in ("pvc-gone.img.ferry-restore", ".tmp-clone-x"):
            self.assertFalse(os.path.exists(planted[name]), "%s left after a restart" % name)
            self.assertTrue(a.log_grep("removed the leftover %s" % planted[name]), a.log_tail())
        self.assertTrue(os.path.exists(planted["other.ferry-restore.keep"]), "a file that is no leftover was removed")
        os.unlink(planted["other.ferry-restore.keep"])

    def test_restarts(self):
        a = self.agent
        secrets = {"password": PASSWORD}

        # A small volume, published, with a node-local snapshot.
        small = a.create_volume("pvc-restart-small", 16 * MiB)
        t_small = a.publish(small.volume_id, a.block_target("pvc-restart-small"))
        small_data = prand(16 * MiB, "small")
        pwrite_sync(t_small, 0, small_data)
        local = a.create_snapshot(small.volume_id, "snapshot-restart-local")
        self.assertTrue(local.ready_to_use, "a node-local snapshot is ready at once")

        # The big volume: 1 GiB of random data written through the device.
        big = a.create_volume("pvc-restart-big", BIG)
        t_big = a.publish(big.volume_id, a.block_target("pvc-restart-big"))
        h = hashlib.sha256()
        t0 = time.monotonic()
        fd = os.open(t_big, os.O_WRONLY)
        try:
            off = 0
            for chunk in prand_stream(BIG, "restart-big"):
                os.pwrite(fd, chunk, off)
                h.update(chunk)
                off += len(chunk)
            os.fsync(fd)
        finally:
            os.close(fd)
        big_sha = h.hexdigest()
        log("wrote 1 GiB in %.1fs" % (time.monotonic() - t0))

        # --- SIGKILL in the middle of the upload.
        url, path = new_repo("restart-1")
        t0 = time.monotonic()
        s = a.create_snapshot(big.volume_id, "snapshot-restart-big", {P_REPO: url}, secrets)
        self.assertFalse(s.ready_to_use)
        n = wait_for_chunks(a, path)
        a.kill()
        log("SIGKILL with %d chunk objects in the repository, %.2fs after CreateSnapshot"
            % (n, time.monotonic() - t0))
        self.assertEqual(count_files(os.path.join(path, "snapshots")), 0,
                         "the upload had finished before SIGKILL: the test could not interrupt it")

        a.start()
        # The catalog survived: both snapshots, as they were.
        listed = {x.snapshot_id: x for x in a.list_snapshots()}
        self.assertEqual(sorted(listed), sorted([local.snapshot_id, s.snapshot_id]),
                         "ListSnapshots after SIGKILL and restart")
        self.assertTrue(listed[local.snapshot_id].ready_to_use)
        self.assertEqual(listed[local.snapshot_id].source_volume_id, small.volume_id)
        self.assertEqual(listed[local.snapshot_id].creation_time, local.creation_time)
        self.assertEqual(listed[s.snapshot_id].source_volume_id, big.volume_id)
        self.assertEqual(listed[s.snapshot_id].creation_time, s.creation_time)
        # The upload resumes by itself (no CreateSnapshot call brings the
        # secrets again); meanwhile Probe and ListSnapshots answer promptly.
        worst = 0.0
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            t1 = time.monotonic()
            a.identity.Probe(pb.ProbeRequest(), timeout=30)
            got = a.get_snapshot(s.snapshot_id)
            worst = max(worst, time.monotonic() - t1)
            if got.ready_to_use:
                break
            time.sleep(0.05)
        log("upload resumed and finished %.1fs after the restart began; slowest Probe+ListSnapshots %.3fs"
            % (time.monotonic() - a.t_start, worst))
        a.wait_ready(s.snapshot_id, timeout=1)
        self.assertLess(worst, 1.0, "Probe+ListSnapshots took %.2fs during an upload" % worst)
        rs = repo_snapshot_of(url, s.snapshot_id)
        self.assertEqual(len(repo_snapshots(url)), 1, "more than one repository snapshot for one CSI snapshot")
        log("resumed upload's stats: %s" % rs.get("stats"))
        out = os.path.join(WORK, "restart-restore.img")
        ferry("restore", "--repo", url, rs["id"], out)
        self.assertEqual(os.path.getsize(out), BIG)
        self.assertEqual(sha256_of(out), big_sha, "the resumed upload's snapshot differs from the volume")
        os.unlink(out)
        ferry("check", "--repo", url, "--read-data")

        # Publications survived the SIGKILL: still mounted, still refusing
        # DeleteVolume; kubelet publishing them again is a no-op.
        self.assertTrue(mounts_at(t_small) and mounts_at(t_big), "publish mounts lost")
        a.publish(small.volume_id, t_small)
        self.assertEqual(len(mounts_at(t_small)), 1, "publish after restart mounted again")
        self.assertCode(Code.FAILED_PRECONDITION, a.controller.DeleteVolume,
                        pb.DeleteVolumeRequest(volume_id=small.volume_id),
                        "DeleteVolume of a volume published before the restart")

        # --- SIGTERM in the middle of an upload: a clone of the big volume
        # (CLONE_VOLUME, a reflink: no second GiB to write) to a fresh
        # repository, a full upload again.
        r = pb.CreateVolumeRequest(name="pvc-restart-big-clone", capacity_range=pb.CapacityRange(required_bytes=BIG),
                                   volume_capabilities=[block_cap()])
        r.volume_content_source.volume.volume_id = big.volume_id
        big2 = a.controller.CreateVolume(r, timeout=120).volume
        url2, path2 = new_repo("restart-2")
        s2 = a.create_snapshot(big2.volume_id, "snapshot-restart-big-2", {P_REPO: url2}, secrets)
        wait_for_chunks(a, path2)
        rc, took = a.stop(signal.SIGTERM)
        log("SIGTERM during an upload: exit %s after %.2fs; repository manifest written: %s"
            % (rc, took, count_files(os.path.join(path2, "snapshots")) > 0))
        self.assertEqual(rc, 0, "exit status after SIGTERM during an upload")
        self.assertLess(took, 10.0, "SIGTERM took %.1fs during an upload" % took)
        self.assertAgentClean(a)
        a.start()
        a.wait_ready(s2.snapshot_id, timeout=150)
        rs2 = repo_snapshot_of(url2, s2.snapshot_id)
        out = os.path.join(WORK, "restart-restore-2.img")
        ferry("restore", "--repo", url2, rs2["id"], out)
        self.assertEqual(sha256_of(out), big_sha, "the upload resumed after SIGTERM differs from the volume")
        os.unlink(out)
        self.assertTrue(a.get_snapshot(s.snapshot_id).ready_to_use)

        # Volumes made before the restarts: found by name (idempotent CreateVolume),
        # validated, their data intact, unpublished and deleted.
        again = a.create_volume("pvc-restart-small", 16 * MiB)
        self.assertEqual(again.volume_id, small.volume_id, "CreateVolume by name after restart: another volume")
        vv = a.controller.ValidateVolumeCapabilities(
            pb.ValidateVolumeCapabilitiesRequest(volume_id=small.volume_id, volume_capabilities=[block_cap()]),
            timeout=10)
        self.assertTrue(vv.HasField("confirmed"))
        self.assertIsNone(first_difference(t_small, small_data), "small volume's data after restarts")
        # A volume from the node-local snapshot made before the restarts.
        c = a.create_volume("pvc-restart-from-local", 16 * MiB, snapshot=local.snapshot_id)
        tc = a.publish(c.volume_id, a.block_target("pvc-restart-from-local"))
        self.assertIsNone(first_difference(tc, small_data), "volume from the pre-restart snapshot")
        for v, t in ((small.volume_id, t_small), (big.volume_id, t_big), (c.volume_id, tc)):
            a.unpublish(v, t)
            self.assertFalse(mounts_at(t))
        for x in (local, s, s2):
            a.delete_snapshot(x.snapshot_id)
        for v in (small.volume_id, big.volume_id, big2.volume_id, c.volume_id):
            img = a.vol_img(v)
            a.delete_volume(v)
            self.assertFalse(os.path.exists(img))
            self.assertEqual(loops_backed_by(img), [], "loop device of %s left attached" % v)
        self.assertCode(Code.NOT_FOUND, a.controller.ValidateVolumeCapabilities,
                        pb.ValidateVolumeCapabilitiesRequest(volume_id=small.volume_id,
                                                             volume_capabilities=[block_cap()]),
                        "ValidateVolumeCapabilities of a deleted volume")

        # --- an idle agent: SIGTERM, exit 0 at once; and the deletions survive a restart.
        rc, took = a.stop(signal.SIGTERM)
        self.assertEqual(rc, 0)
        self.assertLess(took, 5.0, "SIGTERM took %.1fs on an idle agent" % took)
        self.assertAgentClean(a)
        a.start()
        self.assertEqual(a.list_snapshots(), [], "deleted snapshots back after a restart")
        rc, _ = a.stop(signal.SIGTERM)
        self.assertEqual(rc, 0)
        self.assertAgentClean(a)


if __name__ == "__main__":
    main()
