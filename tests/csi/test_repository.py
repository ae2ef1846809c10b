#!/usr/bin/python3
"""CSI: the repositories the agent opens and creates.

- Two uploads to one repository that does not exist yet, with
  create-repository "true", start together (two upload workers): exactly one
  creates it ("created the repository" logged once, one key object), the other
  opens what it made, and both snapshots end up in it.
- ferry.csi.dev/insecure-no-encryption: an unencrypted repository is refused
  without it, and with it whenever a password is in the secrets (a config
  replaced by an unencrypted one must not get plaintext backups); with it and
  no password, uploads go through.  A value other than true/false is
  INVALID_ARGUMENT."""
import os
import threading
import time

import grpc

import csilib
from csilib import (StopsClean, P_CREATE, P_REPO, PASSWORD, WORK, MiB, Agent, AgentTest, Code, ferry, log, main,
                    prand, pwrite_sync, repo_snapshot_of)

P_INSECURE = "ferry.csi.dev/insecure-no-encryption"


class Repository(StopsClean, AgentTest):
    @classmethod
    def setUpClass(cls):
        # A costlier key derivation for the agent (2^15, the default) than
        # csilib's 2^12: it stretches the time between "no config here" and
        # the writes of init, so that the two creators below overlap in it.
        cheap, csilib.SCRYPT_LOG2N = csilib.SCRYPT_LOG2N, "15"
        try:
            cls.agent = Agent("repository", node_id="node-repo", upload_workers=2).start()
        finally:
            csilib.SCRYPT_LOG2N = cheap
        a = cls.agent
        cls.vols = []
        for i in range(2):
            v = a.create_volume("pvc-repo-%d" % i, 4 * MiB)
            t = a.publish(v.volume_id, a.block_target("pvc-repo-%d" % i))
            pwrite_sync(t, 0, prand(2 * MiB, "repo-%d" % i))
            a.unpublish(v.volume_id, t)
            cls.vols.append(v.volume_id)

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()

    def test_two_uploads_create_one_repository(self):
        a = self.agent
        path = os.path.join(WORK, "repos", "created-twice-at-once")
        url = "file://" + path
        params = {P_REPO: url, P_CREATE: "true"}
        secrets = {"password": PASSWORD}
        before = a.log_text().count("created the repository")
        gate = threading.Barrier(2)
        out = [None, None]

        def create(i):
            gate.wait()
            out[i] = a.create_snapshot(self.vols[i], "snapshot-repo-race-%d" % i, params, secrets)

        ts = [threading.Thread(target=create, args=(i,)) for i in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(timeout=300)
        self.assertTrue(all(out), "CreateSnapshot did not answer: %s" % out)
        for s in out:
            a.wait_ready(s.snapshot_id, timeout=300)
        created = a.log_text().count("created the repository") - before
        self.assertEqual(created, 1, "'created the repository' logged %d times; log tail:\n%s"
                         % (created, a.log_tail(40)))
        keys = os.listdir(os.path.join(path, "keys"))
        self.assertEqual(len(keys), 1, "key objects: %s" % keys)
        for s in out:
            repo_snapshot_of(url, s.snapshot_id)
        ferry("check", "--repo", url, "--read-data")
        log("one creator, %d key object, both snapshots in %s" % (len(keys), url))

    def until_upload_error(self, vid, name, params, secrets, timeout=120):
        """CreateSnapshot again and again (as the snapshotter does) until the
        upload's failure is reported; returns its details and the snapshot's id."""
        deadline = time.monotonic() + timeout
        sid = None
        while time.monotonic() < deadline:
            try:
                r = self.agent.create_snapshot(vid, name, params, secrets)
                self.assertFalse(r.ready_to_use, "%s: became ready" % name)
                sid = r.snapshot_id
            except grpc.RpcError as e:
                self.assertEqual(e.code(), Code.UNAVAILABLE, e.details())
                self.assertIsNotNone(sid, "%s: the first call failed: %s" % (name, e.details()))
                return e.details(), sid
            time.sleep(0.1)
        self.fail("%s: no upload error within %ds" % (name, timeout))

    def test_insecure_no_encryption(self):
        a, vid = self.agent, self.vols[0]
        path = os.path.join(WORK, "repos", "unencrypted")
        url = "file://" + path
        ferry("init", "--repo", url, "--insecure-no-encryption")

        why, sid = self.until_upload_error(vid, "snapshot-plain-noflag", {P_REPO: url}, {})
        self.assertIn("is not encrypted: opening it needs --insecure-no-encryption", why)
        a.delete_snapshot(sid)

        why, sid = self.until_upload_error(vid, "snapshot-plain-pw", {P_REPO: url, P_INSECURE: "true"},
                                           {"password": PASSWORD})
        self.assertIn("is not encrypted, yet a password or key was given", why)
        a.delete_snapshot(sid)
        self.assertEqual(os.listdir(os.path.join(path, "snapshots")), [], "a refused upload wrote a snapshot")

        s = a.create_snapshot(vid, "snapshot-plain-ok", {P_REPO: url, P_INSECURE: "true"}, {})
        a.wait_ready(s.snapshot_id, timeout=300)
        snaps = ferry("snapshots", "--repo", url, "--json", "--insecure-no-encryption").stdout
        self.assertIn(s.snapshot_id.encode(), snaps)

        try:
            a.create_snapshot(vid, "snapshot-plain-bad", {P_REPO: url, P_INSECURE: "yes"}, {})
            self.fail("insecure-no-encryption=yes accepted")
        except grpc.RpcError as e:
            self.assertEqual(e.code(), Code.INVALID_ARGUMENT, e.details())
            self.assertIn(P_INSECURE, e.details())


if __name__ == "__main__":
    main()
