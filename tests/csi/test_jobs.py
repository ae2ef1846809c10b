#!/usr/bin/python3
"""CSI: upload jobs.

DeleteSnapshot while that snapshot uploads (to a file:// repository), 20
times in a row, at different points of the upload: right after
CreateSnapshot returns, after the first chunk object appears in the
repository, after a quarter and after half of them.  Each DeleteSnapshot
answers OK promptly (and again OK for the same id), the snapshot is gone
from ListSnapshots, no manifest was committed, the upload is never started
again (the agent's log), and the agent is idle afterwards (its CPU time).
Later snapshots of the volume upload -- one queued behind a snapshot deleted
in mid-upload, one into a repository full of chunks of abandoned uploads,
one incremental -- and restore byte-identical (`cmp`).

A job's repository is opened once (one key derivation) over several failing
attempts (a repository on a full tmpfs: ENOSPC), opened again when a later
CreateSnapshot brings other secrets, and closed when the job ends; the
upload then succeeds once there is room, and restores byte-identical."""
import os
import subprocess
import time

import grpc

from csilib import (P_REPO, PASSWORD, WORK, MiB, Agent, AgentTest, Code, count_files, ferry, log, main,
                    new_repo, pb, prand, fill_prand, pwrite_sync, repo_snapshot_of)

SIZE = 256 * MiB            # 64 chunks of 4 MiB: at half of them stored, the reader (bounded
                            # to ~20 chunks ahead) is still reading, so a cancel stops it
CHUNKS = SIZE // (4 * MiB)
SECRETS = {"password": PASSWORD}
DELETE_BOUND = 15.0         # seconds a DeleteSnapshot may take on a loaded machine (it waits 5 s at most)


def wait_for(what, cond, agent, timeout=120, poll=0.005):
    """Poll cond() until it returns something true; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        if not agent.running():
            raise AssertionError("agent died while waiting for %s:\n%s" % (what, agent.log_tail()))
        time.sleep(poll)
    raise AssertionError("%s: not within %ds; log tail:\n%s" % (what, timeout, agent.log_tail()))


def chunks_in(repo_path):
    d = os.path.join(repo_path, "chunks")
    return count_files(d) if os.path.isdir(d) else 0


def manifests_in(repo_path):
    d = os.path.join(repo_path, "snapshots")
    return count_files(d) if os.path.isdir(d) else 0


def cpu_seconds(pid):
    """User + system CPU time of a process so far."""
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def save_device(dev, out):
    """The device's bytes now, into a file (what a snapshot cut now holds)."""
    subprocess.run(["dd", "if=" + dev, "of=" + out, "bs=4M", "status=none"], check=True)
    return out


def cmp(a, b):
    p = subprocess.run(["cmp", a, b], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return p.returncode, p.stdout.decode(errors="replace").strip()


class DeleteDuringUpload(AgentTest):
    @classmethod
    def setUpClass(cls):
        cls.agent = Agent("jobs-del", node_id="node-jobs", upload_workers=2).start()

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()

    def restore_cmp(self, url, snap_id, expected, what):
        rs = repo_snapshot_of(url, snap_id)
        out = os.path.join(WORK, "jobs-restored.img")
        ferry("restore", "--repo", url, rs["id"], out)
        rc, diff = cmp(out, expected)
        os.unlink(out)
        self.assertEqual(rc, 0, "%s: the restored snapshot differs from the volume: %s" % (what, diff))

    def delete(self, snap_id, what):
        a = self.agent
        t0 = time.monotonic()
        try:
            a.delete_snapshot(snap_id, timeout=30)
        except grpc.RpcError as e:
            self.fail("%s: DeleteSnapshot %s: %s (%s) after %.1fs; log tail:\n%s"
                      % (what, snap_id, e.code().name, e.details(), time.monotonic() - t0, a.log_tail()))
        took = time.monotonic() - t0
        self.assertLess(took, DELETE_BOUND, "%s: DeleteSnapshot took %.1fs" % (what, took))
        # The spec's idempotency: the same id again is OK.
        a.delete_snapshot(snap_id, timeout=30)
        self.assertIsNone(a.get_snapshot(snap_id), "%s: ListSnapshots still shows %s" % (what, snap_id))
        self.assertFalse(os.path.exists(a.snap_img(snap_id)), "%s: the clone of %s is left" % (what, snap_id))
        return took

    def test_delete_during_upload(self):
        a = self.agent
        v = a.create_volume("pvc-jobs-del", SIZE)
        dev = a.publish(v.volume_id, a.block_target("pvc-jobs-del"))
        fill_prand(dev, SIZE, "jobs-del")

        # --- 20 deletions in mid-upload, each into a fresh repository (so
        # that its chunk objects show how far the upload got).
        timings = [("right after CreateSnapshot", 0), ("after the first chunk", 1),
                   ("after a quarter of the chunks", CHUNKS // 4), ("after half of the chunks", CHUNKS // 2)]
        deleted, last_url, last_path = [], None, None
        for i in range(20):
            label, k = timings[i % len(timings)]
            url, path = new_repo("jobs-del-%02d" % i)
            s = a.create_snapshot(v.volume_id, "snapshot-jobs-del-%02d" % i, {P_REPO: url}, SECRETS)
            self.assertFalse(s.ready_to_use)
            if k:
                def far_enough():
                    if manifests_in(path):
                        raise AssertionError("iteration %d (%s): the upload finished before the test could "
                                             "delete it" % (i, label))
                    return chunks_in(path) >= k
                wait_for("%d chunk objects in %s" % (k, path), far_enough, a)
            n = chunks_in(path)
            took = self.delete(s.snapshot_id, "iteration %d (%s)" % (i, label))
            self.assertEqual(manifests_in(path), 0, "iteration %d: a manifest was committed for a snapshot "
                             "deleted in mid-upload" % i)
            log("%2d: deleted %s with %d/%d chunks stored: DeleteSnapshot took %.3fs"
                % (i, label, n, CHUNKS, took))
            deleted.append(s.snapshot_id)
            last_url, last_path = url, path

        # What the agent said about them: a run of each ended, and none started again.
        for sid in deleted:
            said = a.log_grep("DeleteSnapshot %s " % sid)
            self.assertEqual(len(said), 1, "DeleteSnapshot of %s logged %d times" % (sid, len(said)))
            self.assertIn("ferry prune", said[0], "DeleteSnapshot does not say what became of the partial upload")
            starts = a.log_grep("snapshot %s: upload starts" % sid)
            self.assertLessEqual(len(starts), 1, "the upload of deleted %s started %d times:\n%s"
                                 % (sid, len(starts), "\n".join(starts[:5])))
        # Idle: no upload starts any more, and the process does not spin.
        starts_before = len(a.log_grep(": upload starts"))
        c0, t0 = cpu_seconds(a.proc.pid), time.monotonic()
        while time.monotonic() - t0 < 3.0:    # a window to measure CPU time over
            a.identity.Probe(pb.ProbeRequest(), timeout=10)
            time.sleep(0.25)
        used = cpu_seconds(a.proc.pid) - c0
        log("idle agent: %.2f CPU seconds over %.1fs" % (used, time.monotonic() - t0))
        self.assertLess(used, 0.6, "the agent used %.2f CPU seconds in 3 s with nothing to do" % used)
        self.assertEqual(len(a.log_grep(": upload starts")), starts_before, "uploads started on an idle agent")

        # --- Later snapshots of the volume.  A queued behind B, B deleted
        # in mid-upload: A goes ahead alone and restores byte-identical.
        # (The volume does not change from A's cut until A is saved below.)
        url, path = new_repo("jobs-later")
        pwrite_sync(dev, 10 * MiB, prand(8 * MiB, "later-1"))
        b = a.create_snapshot(v.volume_id, "snapshot-jobs-later-b", {P_REPO: url}, SECRETS)
        a2 = a.create_snapshot(v.volume_id, "snapshot-jobs-later-a", {P_REPO: url}, SECRETS)
        wait_for("the first chunk of B", lambda: chunks_in(path) >= 1, a)
        self.assertEqual(manifests_in(path), 0, "B was uploaded before the test could delete it")
        self.delete(b.snapshot_id, "B, with A queued behind it")
        exp_a = save_device(dev, os.path.join(WORK, "jobs-expect-a.img"))
        a.wait_ready(a2.snapshot_id)
        self.restore_cmp(url, a2.snapshot_id, exp_a, "A, queued behind the deleted B")
        self.assertLessEqual(len(a.log_grep("snapshot %s: upload starts" % b.snapshot_id)), 1)

        # C into the repository of the last deletion, full of chunks of
        # abandoned uploads: uploaded, restored byte-identical, check passes.
        pwrite_sync(dev, 100 * MiB, prand(5 * MiB, "later-3"))
        exp_c = save_device(dev, os.path.join(WORK, "jobs-expect-c.img"))
        c = a.create_snapshot(v.volume_id, "snapshot-jobs-later-c", {P_REPO: last_url}, SECRETS)
        a.wait_ready(c.snapshot_id)
        self.restore_cmp(last_url, c.snapshot_id, exp_c, "C, beside abandoned chunks")
        ferry("check", "--repo", last_url, "--read-data")
        self.assertGreaterEqual(chunks_in(last_path), CHUNKS)

        # D, incremental against A (its parent, in the same repository).
        pwrite_sync(dev, 64 * MiB, prand(MiB, "later-4"))
        exp_d = save_device(dev, os.path.join(WORK, "jobs-expect-d.img"))
        d = a.create_snapshot(v.volume_id, "snapshot-jobs-later-d", {P_REPO: url}, SECRETS)
        a.wait_ready(d.snapshot_id)
        self.restore_cmp(url, d.snapshot_id, exp_d, "D, incremental after A")
        ferry("check", "--repo", url, "--read-data")
        for f in (exp_a, exp_c, exp_d):
            os.unlink(f)

        a.unpublish(v.volume_id, dev)
        rc, took = a.stop()
        self.assertEqual(rc, 0, "exit status after SIGTERM")
        self.assertAgentClean(a)


class KeyDerivation(AgentTest):
    """One key derivation per job, not per attempt."""

    def setUp(self):
        self.agent = Agent("jobs-kdf", node_id="node-jobs-kdf", upload_workers=1).start()

    def tearDown(self):
        if self.agent.running():
            self.agent.stop()

    def test_open_once_per_job(self):
        a = self.agent
        # A repository on a 2 MiB tmpfs: it opens, but no 4 MiB chunk fits
        # (ENOSPC), so every attempt fails after the open.
        path = os.path.join(WORK, "repos", "jobs-kdf")
        os.makedirs(path)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", path], check=True)
        try:
            self.run_attempts(a, path)
        finally:
            subprocess.run(["umount", path])

    def run_attempts(self, a, path):
        url = "file://" + path
        ferry("init", "--repo", url)
        v = a.create_volume("pvc-jobs-kdf", 16 * MiB)
        dev = a.publish(v.volume_id, a.block_target("pvc-jobs-kdf"))
        pwrite_sync(dev, 0, prand(12 * MiB, "kdf"))
        exp = save_device(dev, os.path.join(WORK, "jobs-kdf-expect.img"))
        name, params = "snapshot-jobs-kdf", {P_REPO: url}
        s = a.create_snapshot(v.volume_id, name, params, SECRETS)
        sid = s.snapshot_id

        def opens():
            return len(a.log_grep("repository %s: opening" % url))

        def failures():
            return a.log_grep("snapshot %s: upload failed" % sid)

        def attempt(secrets, what):
            """The next attempt, as the snapshotter's next CreateSnapshot call
            brings it: UNAVAILABLE (the last one failed), then its failure."""
            n = len(failures())
            try:
                a.create_snapshot(v.volume_id, name, params, secrets)
                self.fail("%s: CreateSnapshot after a failed upload succeeded" % what)
            except grpc.RpcError as e:
                self.assertEqual(e.code(), Code.UNAVAILABLE, "%s: %s" % (what, e.details()))
            return wait_for("%s: the attempt's failure" % what, lambda: len(failures()) > n and failures()[-1], a)

        first = wait_for("the first failure", lambda: failures() and failures()[-1], a)
        self.assertIn("No space left", first)
        for k in range(4):
            last = attempt(SECRETS, "attempt %d" % (k + 2))
            self.assertIn("No space left", last)
        tries = len(a.log_grep("snapshot %s: upload starts" % sid))
        log("%d attempts, %d opens of the repository" % (tries, opens()))
        self.assertGreaterEqual(tries, 5)
        self.assertEqual(opens(), 1, "the repository was opened (a key derivation each) %d times over %d "
                         "attempts of one job" % (opens(), tries))
        # Other secrets (a wrong password): opened again, and that fails.
        last = attempt({"password": "not-the-password-kdf"}, "a wrong password")
        self.assertEqual(opens(), 2, "other secrets did not lead to a new open")
        self.assertNotIn("No space left", last)
        # The right one again: opened again; then the same: not again.
        attempt(SECRETS, "the right password again")
        self.assertEqual(opens(), 3)
        attempt(SECRETS, "the same secrets")
        self.assertEqual(opens(), 3, "the same secrets led to a new open")
        # Room in the repository: the next attempt (same secrets) succeeds
        # with the open repository, and the job closes it.
        subprocess.run(["mount", "-o", "remount,size=256m", path], check=True)
        deadline = time.monotonic() + 120
        while True:
            try:
                if a.create_snapshot(v.volume_id, name, params, SECRETS).ready_to_use:
                    break
            except grpc.RpcError as e:
                self.assertEqual(e.code(), Code.UNAVAILABLE, e.details())
            self.assertLess(time.monotonic(), deadline, "not ready within 120 s:\n" + a.log_tail())
            time.sleep(0.1)
        # (The job marks the snapshot ready, then closes its repository:
        # the line may come a moment after ready_to_use.)
        wait_for("the job's repository closed when the job ended",
                 lambda: a.log_grep("snapshot %s: its repositories closed (the job is done)" % sid), a)
        self.assertEqual(opens(), 3, "the successful attempt opened the repository again")
        rs = repo_snapshot_of(url, sid)
        out = os.path.join(WORK, "jobs-kdf-restored.img")
        ferry("restore", "--repo", url, rs["id"], out)
        rc, diff = cmp(out, exp)
        self.assertEqual(rc, 0, "restored snapshot differs: " + diff)
        os.unlink(out)
        os.unlink(exp)
        a.unpublish(v.volume_id, dev)
        rc, _ = a.stop()
        self.assertEqual(rc, 0)
        self.assertAgentClean(a)


if __name__ == "__main__":
    main()
