#!/usr/bin/python3
"""CSI + S3: a backup policy whose targets are a Ceph RGW bucket and a copy
in another account (each target's keys from its own secrets: a KEY=VALUE
file for the primary, a Secret-like directory for the copy), on the test
clock: three runs upload to both, retention keeps one on the primary and two
on the copy, the weekly drill restores from the copy (the far one) and is
recorded there, and the copy's newest snapshot restores byte-identical."""
import os
import time

from csilib import PASSWORD, WORK, MiB, Agent, AgentTest, StopsClean, ferry, first_difference, main, prand, pwrite_sync
from test_policy import (HOUR, T0, PolicyAgent, indent, log_pos, log_wait, policy_yaml, write_file)
from test_s3 import rgw_env

SIZE = 32 * MiB
L_SNAPSHOT_ID = "ferry.csi.dev/snapshot-id"


class S3Policy(PolicyAgent, StopsClean, AgentTest):
    @classmethod
    def setUpClass(cls):
        r = cls.rgw = rgw_env()
        run = "policy.%d.%d" % (os.getpid(), int(time.time()))
        q = "?endpoint=%s&region=%s&style=path" % (r["RGW_HTTP"], r.get("RGW_REGION", "us-east-1"))
        cls.primary = "s3://ferry-primary/%s%s" % (run, q)
        cls.copy = "s3://ferry-replica/%s%s" % (run, q)
        # The primary's secrets: a file; the copy's: a directory, as a Secret mounts.
        cls.pfile = os.path.join(WORK, "s3-primary.env")
        with open(cls.pfile, "w") as f:
            f.write("# primary account\npassword=%s\nAWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n"
                    % (PASSWORD, r["RGW_PRIMARY_AK"], r["RGW_PRIMARY_SK"]))
        cls.cdir = os.path.join(WORK, "s3-copy-secret")
        os.makedirs(cls.cdir, exist_ok=True)
        for k, v in (("password", PASSWORD), ("AWS_ACCESS_KEY_ID", r["RGW_REPLICA_AK"]),
                     ("AWS_SECRET_ACCESS_KEY", r["RGW_REPLICA_SK"])):
            with open(os.path.join(cls.cdir, k), "w") as f:
                f.write(v + "\n")
        cls.pdir_keys = os.path.join(WORK, "s3-primary-keys")
        os.makedirs(cls.pdir_keys, exist_ok=True)
        for k, v in (("AWS_ACCESS_KEY_ID", r["RGW_PRIMARY_AK"]), ("AWS_SECRET_ACCESS_KEY", r["RGW_PRIMARY_SK"])):
            with open(os.path.join(cls.pdir_keys, k), "w") as f:
                f.write(v)
        ferry("init", "--repo", cls.primary + "&secret-dir=" + cls.pdir_keys)
        ferry("init", "--repo", cls.copy + "&secret-dir=" + cls.cdir, "--copy-of",
              cls.primary + "&secret-dir=" + cls.pdir_keys)
        cls.agent = PolicyAgent.make_agent(cls, "s3policy", T0).start()

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()

    def snaps(self, url, keys):
        out = ferry("snapshots", "--repo", url + "&secret-dir=" + keys, "--json").stdout.decode()
        import json
        return sorted(s["labels"][L_SNAPSHOT_ID] for s in json.loads(out)
                      if s["labels"].get("ferry.csi.dev/policy") == "s3")

    def test_policy_on_rgw(self):
        a = self.agent
        v = a.create_volume("pvc-s3-policy", SIZE)
        t = a.publish(v.volume_id, a.block_target("pvc-s3-policy"))
        data = bytearray(SIZE)
        pos = log_pos(a)
        write_file(os.path.join(self.pdir, "s3.yaml"), policy_yaml("s3", """
selector: {volumeIds: [%s]}
schedule: "0 */6 * * *"
targets:
  - url: "%s"
    secrets: {file: %s}
    retention: {keepLast: 1}
  - url: "%s"
    secrets: {dir: %s}
    retention: {keepLast: 2}
drill: {schedule: "30 20 * * *"}
""" % (v.volume_id, self.primary, self.pfile, self.copy, self.cdir)))
        log_wait(a, "policy s3 (", pos)
        known, order = set(), []
        for k in range(3):
            d = prand(MiB, "s3pol-%d" % k)
            pwrite_sync(t, k * 4 * MiB, d)
            data[k * 4 * MiB:k * 4 * MiB + MiB] = d
            pos = log_pos(a)
            self.clock.set(T0 + (k + 1) * 6 * HOUR)
            deadline = time.monotonic() + 120
            while True:
                new = [s for s in a.list_snapshots(source_volume_id=v.volume_id) if s.snapshot_id not in known]
                if new or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            self.assertTrue(new, "no snapshot at run %d" % k)
            known.add(new[0].snapshot_id)
            order.append(new[0].snapshot_id)
            a.wait_ready(new[0].snapshot_id)
            log_wait(a, "policy s3: volume %s: retention on s3://ferry-replica/" % v.volume_id, pos)
        self.assertEqual(self.snaps(self.primary, self.pdir_keys), sorted(order[-1:]), "primary: keepLast 1")
        self.assertEqual(self.snaps(self.copy, self.cdir), sorted(order[-2:]), "copy: keepLast 2")
        # The drill, from the far copy, recorded there.
        pos = log_pos(a)
        self.clock.set(T0 + 20 * HOUR + 30 * 60)
        line = log_wait(a, "policy s3: volume %s: drill of snapshot" % v.volume_id, pos, count=2)[1]
        self.assertIn("from s3://ferry-replica/", line)
        self.assertIn("passed", line)
        self.assertIn("recorded", line)
        out = os.path.join(WORK, "s3-policy.img")
        import json
        rs = [s for s in json.loads(ferry("snapshots", "--repo", self.copy + "&secret-dir=" + self.cdir,
                                          "--json").stdout.decode())
              if s["labels"][L_SNAPSHOT_ID] == order[-1]][0]
        ferry("restore", "--repo", self.copy + "&secret-dir=" + self.cdir, rs["id"], out)
        self.assertIsNone(first_difference(out, bytes(data)), "the copy's newest scheduled snapshot differs")
        os.unlink(out)
        # No secret in the agent's log.
        text = a.log_text()
        for sec in (PASSWORD, self.rgw["RGW_PRIMARY_SK"], self.rgw["RGW_REPLICA_SK"]):
            self.assertNotIn(sec, text, "a secret in the agent's log")


if __name__ == "__main__":
    main()
