#!/usr/bin/python3
"""CSI + S3: snapshots uploaded by the agent to a Ceph RGW bucket and, in the
same pass, to a copy in another account (the replica user's bucket), with
each target's keys from the CSI secrets ("copy-1." for the copy).  Both
targets pass `ferry check --read-data`, a restore from the copy equals the
volume, a wrong secret key fails the upload with the server's reason on the
next CreateSnapshot and a retry with the right keys succeeds, and no secret
reaches the log or stays in the state directory.  Another node that never
saw a snapshot finds it in the bucket (lookup-repositories): its metadata,
a wrong key refused, a CreateVolume restoring it byte-identical."""
import os
import subprocess
import time

import grpc

from csilib import (P_COPY, P_CREATE, P_REPO, PASSWORD, WORK, MiB, Agent, AgentTest, block_cap, blocks, ferry,
                    log, main, prand, pwrite_sync, repo_snapshot_of, tuples)

SIZE = 64 * MiB


def rgw_env():
    env = {}
    with open(os.path.join(os.environ["RGW_DIR"], "env")) as f:
        for line in f:
            line = line.strip()
            if "=" in line and not line.startswith("#"):
                k, v = line.split("=", 1)
                env[k.replace("export ", "")] = v.strip("'\"")
    return env


class S3Targets(AgentTest):
    @classmethod
    def setUpClass(cls):
        cls.rgw = rgw_env()
        run = "csi.%d.%d" % (os.getpid(), int(time.time()))
        q = "?endpoint=%s&region=%s&style=path" % (cls.rgw["RGW_HTTP"], cls.rgw.get("RGW_REGION", "us-east-1"))
        cls.primary = "s3://ferry-primary/%s%s" % (run, q)
        cls.copy = "s3://ferry-replica/%s%s" % (run, q)
        cls.agent = Agent("s3", node_id="node-s3").start()

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()

    def secrets(self, primary_sk=None):
        r = self.rgw
        return {"password": PASSWORD,
                "AWS_ACCESS_KEY_ID": r["RGW_PRIMARY_AK"], "AWS_SECRET_ACCESS_KEY": primary_sk or r["RGW_PRIMARY_SK"],
                "copy-1.AWS_ACCESS_KEY_ID": r["RGW_REPLICA_AK"], "copy-1.AWS_SECRET_ACCESS_KEY": r["RGW_REPLICA_SK"]}

    def cli(self, url, ak, sk, *args):
        os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = ak, sk
        try:
            return ferry(*args)
        finally:
            del os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]

    def test_upload_to_two_accounts(self):
        a, r = self.agent, self.rgw
        v = a.create_volume("pvc-s3", SIZE)
        t = a.publish(v.volume_id, a.block_target("pvc-s3"))
        expected = bytearray(SIZE)
        for i, off in enumerate((0, 5 * MiB + 4096, 33 * MiB, SIZE - MiB)):
            d = prand(MiB, "s3-a-%d" % i)
            pwrite_sync(t, off, d)
            expected[off:off + len(d)] = d
        params = {P_REPO: self.primary, P_COPY: self.copy, P_CREATE: "true"}
        s1 = a.create_snapshot(v.volume_id, "snapshot-s3-1", params, self.secrets())
        a.wait_ready(s1.snapshot_id)

        d = prand(2 * MiB, "s3-b")
        pwrite_sync(t, 20 * MiB, d)
        expected[20 * MiB:22 * MiB] = d
        # A wrong secret key for the primary: the upload fails, the next call says why.
        bad = self.secrets(primary_sk="not-the-secret-key-0c7e1b")
        s2 = a.create_snapshot(v.volume_id, "snapshot-s3-2", params, bad)
        deadline = time.monotonic() + 120
        err = None
        while time.monotonic() < deadline:
            try:
                a.create_snapshot(v.volume_id, "snapshot-s3-2", params, bad)
            except grpc.RpcError as e:
                err = e
                break
            time.sleep(0.2)
        self.assertIsNotNone(err, "an upload with a wrong secret key never failed")
        self.assertEqual(err.code(), grpc.StatusCode.UNAVAILABLE, err.details())
        self.assertIn("SignatureDoesNotMatch", err.details())
        # The same name with the right keys: retried and done.
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                got = a.create_snapshot(v.volume_id, "snapshot-s3-2", params, self.secrets())
            except grpc.RpcError as e:
                self.assertEqual(e.code(), grpc.StatusCode.UNAVAILABLE, e.details())
                time.sleep(0.2)
                continue
            self.assertEqual(got.snapshot_id, s2.snapshot_id)
            if got.ready_to_use:
                break
            time.sleep(0.2)
        a.wait_ready(s2.snapshot_id)

        # Both targets are whole, and the copy restores the volume.
        for url, ak, sk in ((self.primary, r["RGW_PRIMARY_AK"], r["RGW_PRIMARY_SK"]),
                            (self.copy, r["RGW_REPLICA_AK"], r["RGW_REPLICA_SK"])):
            self.cli(url, ak, sk, "check", "--repo", url, "--read-data")
        os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = r["RGW_REPLICA_AK"], r["RGW_REPLICA_SK"]
        try:
            rs = repo_snapshot_of(self.copy, s2.snapshot_id)
            out = os.path.join(WORK, "s3-restored.img")
            ferry("restore", "--repo", self.copy, rs["id"], out)
        finally:
            del os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
        with open(out, "rb") as f:
            self.assertTrue(f.read() == bytes(expected), "the copy's restore differs from the volume")
        os.unlink(out)

        # No secret in the log, none left in the state directory.
        text = a.log_text()
        for k, val in self.secrets().items():
            if k != "password" and "SECRET" not in k:
                continue
            self.assertNotIn(val, text, "the secret %s is in the agent's log" % k)
        self.assertNotIn("not-the-secret-key-0c7e1b", text)
        for root, _, files in os.walk(a.state):
            for fn in files:
                p = os.path.join(root, fn)
                if fn.endswith(".img") or fn.startswith("state.db"):
                    continue
                with open(p, "rb") as f:
                    body = f.read()
                self.assertNotIn(r["RGW_PRIMARY_SK"].encode(), body, "a secret is left in " + p)
        a.unpublish(v.volume_id, t)
        log("two targets in two accounts, a wrong key reported and retried, copies verified")

    def test_lookup_on_another_node(self):
        """A node that never saw the snapshot (lookup-repositories = the
        bucket) answers GetMetadataAllocated from its manifest and restores
        it with CreateVolume, with the S3 keys of the request's secrets."""
        a, r = self.agent, self.rgw
        run = "csi-lookup.%d.%d" % (os.getpid(), int(time.time()))
        url = "s3://ferry-primary/%s?endpoint=%s&region=%s&style=path" % (
            run, r["RGW_HTTP"], r.get("RGW_REGION", "us-east-1"))
        size = 16 * MiB
        v = a.create_volume("pvc-s3-lookup", size)
        t = a.publish(v.volume_id, a.block_target("pvc-s3-lookup"))
        expected = bytearray(size)
        writes = [(0, MiB), (9 * MiB + 4096, 4096), (size - MiB, MiB)]
        for i, (off, ln) in enumerate(writes):
            d = prand(ln, "s3-lookup-%d" % i)
            pwrite_sync(t, off, d)
            expected[off:off + ln] = d
        s = a.create_snapshot(v.volume_id, "snapshot-s3-lookup", {P_REPO: url, P_CREATE: "true"}, self.secrets())
        a.wait_ready(s.snapshot_id)
        a.unpublish(v.volume_id, t)
        b = Agent("s3-lookup-b", node_id="node-s3-b", config="lookup-repositories = %s\n" % url).start()
        try:
            got = tuples(b.metadata("allocated", snapshot_id=s.snapshot_id, secrets=self.secrets()))
            chunk = 4 * MiB
            self.assertFalse(blocks(writes) - blocks(got), "B misses written blocks: %s" % got)
            self.assertTrue(blocks(got, chunk) <= blocks(writes, chunk), "B: %s beyond the chunks written" % got)
            bad = self.secrets(primary_sk="not-the-secret-key-0c7e1b")
            with self.assertRaises(grpc.RpcError) as cm:
                b.metadata("allocated", snapshot_id=s.snapshot_id, secrets=bad)
            e = cm.exception
            log("a wrong secret key: %s %s" % (e.code().name, e.details()))
            self.assertEqual(e.code(), grpc.StatusCode.PERMISSION_DENIED, e.details())
            self.assertNotIn("not-the-secret-key-0c7e1b", e.details())
            self.assertIn("SignatureDoesNotMatch", e.details(), "the server's reason is not in the message")
            c = b.create_volume("pvc-s3-lookup-b", size, snapshot=s.snapshot_id, secrets=self.secrets())
            img = b.vol_img(c.volume_id)
            ref = os.path.join(WORK, "s3-lookup.expected")
            with open(ref, "wb") as f:
                f.write(bytes(expected))
            p = subprocess.run(["cmp", img, ref], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            self.assertEqual(p.returncode, 0, "cmp: %s" % p.stdout.decode(errors="replace"))
            os.unlink(ref)
            b.delete_volume(c.volume_id)
            text = b.log_text()
            for k, val in self.secrets().items():
                if k == "password" or "SECRET" in k:
                    self.assertNotIn(val, text, "the secret %s is in B's log" % k)
            self.assertNotIn("not-the-secret-key-0c7e1b", text)
            rc, _ = b.stop()
            self.assertEqual(rc, 0)
            self.assertAgentClean(b)
        finally:
            b.stop()
        log("another node answered and restored from the bucket: %s" % got)


if __name__ == "__main__":
    main()
