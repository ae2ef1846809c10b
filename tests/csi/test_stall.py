#!/usr/bin/python3
"""CSI + S3: an upload blocked in a store request that does not answer.

The agent uploads to a Ceph RGW bucket through tests/s3/faultproxy.py, which
holds requests unanswered while a hold file exists (a server gone silent;
the URL's timeout=600 keeps curl from giving up during the test).  With an
upload blocked that way:

- DeleteSnapshot of that snapshot answers OK within its bound (it waits 5 s
  for the upload to stop), says what became of the upload, answers OK again
  for the same id, and the snapshot is gone; when the server answers again,
  the upload comes back, its result is discarded, and it never resumes;
- SIGTERM stops the agent with status 0 within its grace period (5 s) plus
  a margin, leaving the blocked upload behind; the next start resumes it,
  and the snapshot restores byte-identical (`cmp`) from the bucket;
- likewise with a call blocked in a handler (CreateVolume from a snapshot
  whose clone was evicted: a restore from the bucket): SIGTERM exits 0 in
  time, and the call made again after the restart restores the volume."""
import json
import os
import signal
import subprocess
import sys
import time

import grpc

from csilib import (P_CREATE, P_REPO, PASSWORD, PIDFILE, WORK, MiB, Agent, AgentTest, block_cap, ferry, log,
                    main, pb, prand, fill_prand, pwrite_sync, repo_snapshot_of)

SIZE = 128 * MiB
GRACE = 5.0                 # the agent's grace period at a stop
MARGIN = 4.0                # a loaded machine's margin on top of grace + 1 s
DELETE_BOUND = 15.0         # DeleteSnapshot waits 5 s for an upload to stop, at most


def rgw_env():
    env = {}
    with open(os.path.join(os.environ["RGW_DIR"], "env")) as f:
        for line in f:
            line = line.strip()
            if "=" in line and not line.startswith("#"):
                k, v = line.split("=", 1)
                env[k.replace("export ", "")] = v.strip("'\"")
    return env


def wait_for(what, cond, timeout=120, poll=0.01, agent=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        if agent is not None and not agent.running():
            raise AssertionError("agent died while waiting for %s:\n%s" % (what, agent.log_tail()))
        time.sleep(poll)
    raise AssertionError("%s: not within %ds%s" % (what, timeout,
                                                  "; log tail:\n" + agent.log_tail() if agent else ""))


class Stall(AgentTest):
    @classmethod
    def setUpClass(cls):
        cls.rgw = r = rgw_env()
        src = os.path.dirname(os.path.abspath(__file__))
        cls.hold = os.path.join(WORK, "stall.hold")
        cls.stats_path = os.path.join(WORK, "stall.stats")
        port_file = os.path.join(WORK, "stall.port")
        cls.proxy = subprocess.Popen(
            [sys.executable, os.path.join(src, "..", "s3", "faultproxy.py"), "--listen", "127.0.0.1:0",
             "--upstream", r["RGW_HTTP"][len("http://"):], "--port-file", port_file,
             "--stats-file", cls.stats_path, "--fail-rate", "0", "--reset-rate", "0", "--delay-rate", "0",
             "--hold-file", cls.hold], stdin=subprocess.DEVNULL)
        with open(PIDFILE, "a") as f:   # run.sh kills it if the test dies
            f.write("%d %s\n" % (cls.proxy.pid, port_file))
        wait_for("the fault proxy's port", lambda: os.path.exists(port_file) and open(port_file).read().strip())
        with open(port_file) as f:
            port = int(f.read())
        run = "stall.%d.%d" % (os.getpid(), int(time.time()))
        q = "region=%s&style=path" % r.get("RGW_REGION", "us-east-1")
        cls.url = "s3://ferry-primary/%s?endpoint=http://127.0.0.1:%d&%s&timeout=600" % (run, port, q)
        cls.direct = "s3://ferry-primary/%s?endpoint=%s&%s" % (run, r["RGW_HTTP"], q)
        cls.agent = Agent("stall", node_id="node-stall", local_snapshots=1).start()

    @classmethod
    def tearDownClass(cls):
        if os.path.exists(cls.hold):
            os.unlink(cls.hold)
        cls.agent.stop()
        cls.proxy.terminate()
        cls.proxy.wait(timeout=30)

    def stats(self):
        with open(self.stats_path) as f:
            return json.load(f)

    def secrets(self):
        return {"password": PASSWORD, "AWS_ACCESS_KEY_ID": self.rgw["RGW_PRIMARY_AK"],
                "AWS_SECRET_ACCESS_KEY": self.rgw["RGW_PRIMARY_SK"]}

    def cli(self, *args):
        os.environ["AWS_ACCESS_KEY_ID"] = self.rgw["RGW_PRIMARY_AK"]
        os.environ["AWS_SECRET_ACCESS_KEY"] = self.rgw["RGW_PRIMARY_SK"]
        try:
            return args[0](*args[1:])
        finally:
            del os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]

    def block_upload(self, snap_id, requests):
        """Once the upload has sent that many more requests (it is under
        way), the server goes silent: wait until one of its requests is held."""
        a = self.agent
        f0 = self.stats().get("forwarded", 0)
        wait_for("%d requests of the upload" % requests,
                 lambda: self.stats().get("forwarded", 0) >= f0 + requests, agent=a)
        with open(self.hold, "w") as f:
            f.write("held by test_stall\n")
        wait_for("a request held", lambda: self.stats().get("holding", 0) >= 1, agent=a)
        self.assertFalse(a.log_grep("snapshot %s uploaded" % snap_id),
                         "the upload finished before the test could block it")
        log("upload of %s blocked: %s" % (snap_id, self.stats()))

    def release(self):
        os.unlink(self.hold)
        wait_for("held requests released", lambda: self.stats().get("holding", 0) == 0)

    def sigterm(self, what):
        a = self.agent
        rc, took = a.stop(signal.SIGTERM, timeout=60)
        log("SIGTERM with %s: exit %s after %.2fs" % (what, rc, took))
        self.assertEqual(rc, 0, "exit status after SIGTERM with %s" % what)
        self.assertLess(took, GRACE + 1 + MARGIN, "SIGTERM took %.1fs with %s" % (took, what))
        self.assertTrue(a.log_grep("left behind"), "the log does not say what was left behind")
        self.assertAgentClean(a)

    def test_stalled_upload(self):
        a = self.agent
        v = a.create_volume("pvc-stall", SIZE)
        dev = a.publish(v.volume_id, a.block_target("pvc-stall"))
        fill_prand(dev, SIZE, "stall")
        params = {P_REPO: self.url, P_CREATE: "true"}

        # --- DeleteSnapshot while its upload is blocked in a store request.
        s1 = a.create_snapshot(v.volume_id, "snapshot-stall-1", params, self.secrets())
        self.block_upload(s1.snapshot_id, 12)
        t0 = time.monotonic()
        try:
            a.delete_snapshot(s1.snapshot_id, timeout=60)
        except grpc.RpcError as e:
            self.fail("DeleteSnapshot of a snapshot whose upload is blocked: %s (%s) after %.1fs"
                      % (e.code().name, e.details(), time.monotonic() - t0))
        took = time.monotonic() - t0
        log("DeleteSnapshot with the upload blocked: OK after %.2fs" % took)
        self.assertLess(took, DELETE_BOUND)
        said = a.log_grep("DeleteSnapshot %s " % s1.snapshot_id)
        self.assertEqual(len(said), 1, said)
        self.assertIn("did not stop in time", said[0])
        self.assertIn("ferry prune", said[0])
        t0 = time.monotonic()
        a.delete_snapshot(s1.snapshot_id, timeout=30)
        self.assertLess(time.monotonic() - t0, 5.0, "the second DeleteSnapshot of the same id was slow")
        self.assertIsNone(a.get_snapshot(s1.snapshot_id))
        a.identity.Probe(pb.ProbeRequest(), timeout=10)
        self.assertTrue(self.stats().get("holding", 0) >= 1, "the request was not held all along")
        # The server answers again: the blocked upload comes back, its result
        # is discarded, and it never starts again.
        self.release()
        wait_for("the blocked upload's return",
                 lambda: a.log_grep("snapshot %s (deleted while its upload was blocked" % s1.snapshot_id), agent=a)
        self.assertEqual(len(a.log_grep("snapshot %s: upload starts" % s1.snapshot_id)), 1)
        self.assertIsNone(a.get_snapshot(s1.snapshot_id))

        # --- SIGTERM while an upload is blocked: exit 0 within the grace
        # period plus a margin; the next start resumes it.
        pwrite_sync(dev, 20 * MiB, prand(4 * MiB, "stall-2"))
        exp = os.path.join(WORK, "stall-expect.img")
        subprocess.run(["dd", "if=" + dev, "of=" + exp, "bs=4M", "status=none"], check=True)
        s2 = a.create_snapshot(v.volume_id, "snapshot-stall-2", params, self.secrets())
        self.block_upload(s2.snapshot_id, 8)
        self.sigterm("an upload blocked")
        self.release()
        a.start()
        a.wait_ready(s2.snapshot_id, timeout=300)
        self.assertIsNone(a.get_snapshot(s1.snapshot_id), "the deleted snapshot is back after a restart")
        rs = self.cli(repo_snapshot_of, self.direct, s2.snapshot_id)
        out = os.path.join(WORK, "stall-restored.img")
        self.cli(ferry, "restore", "--repo", self.direct, rs["id"], out)
        p = subprocess.run(["cmp", out, exp], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.assertEqual(p.returncode, 0, "the resumed upload differs from the volume: %s" % p.stdout.decode())
        os.unlink(out)
        self.cli(ferry, "check", "--repo", self.direct)

        # --- SIGTERM while a call is blocked in its handler: CreateVolume
        # from s2 once its clone is evicted (--local-snapshots 1: a newer
        # snapshot is uploaded) restores from the bucket, and the server is
        # silent.
        pwrite_sync(dev, 60 * MiB, prand(MiB, "stall-3"))
        s3 = a.create_snapshot(v.volume_id, "snapshot-stall-3", params, self.secrets())
        a.wait_ready(s3.snapshot_id, timeout=300)
        wait_for("s2's clone evicted", lambda: not os.path.exists(a.snap_img(s2.snapshot_id)), agent=a)
        with open(self.hold, "w") as f:
            f.write("held by test_stall\n")
        req = pb.CreateVolumeRequest(name="pvc-stall-from-2", capacity_range=pb.CapacityRange(required_bytes=SIZE),
                                     volume_capabilities=[block_cap()], secrets=self.secrets())
        req.volume_content_source.snapshot.snapshot_id = s2.snapshot_id
        call = a.controller.CreateVolume.future(req, timeout=120)
        wait_for("a request of the restore held", lambda: self.stats().get("holding", 0) >= 1, agent=a)
        self.assertFalse(call.done(), "CreateVolume ended while the server was silent")
        self.sigterm("a CreateVolume blocked in a store request")
        self.assertTrue([ln for ln in a.log_grep("left behind") if "/csi.v1.Controller/CreateVolume" in ln],
                        "the log does not name the call left behind")
        try:
            call.result(timeout=60)
            self.fail("the CreateVolume left behind at the stop succeeded")
        except grpc.RpcError as e:
            log("the CreateVolume left behind: %s (%s)" % (e.code().name, e.details()))
        self.release()
        a.start()
        nv = a.controller.CreateVolume(req, timeout=300).volume
        t2 = a.publish(nv.volume_id, a.block_target("pvc-stall-from-2"))
        p = subprocess.run(["cmp", t2, exp], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.assertEqual(p.returncode, 0, "the volume restored from s2 differs: %s" % p.stdout.decode())
        a.unpublish(nv.volume_id, t2)
        os.unlink(exp)
        a.unpublish(v.volume_id, dev)
        rc, _ = a.stop()
        self.assertEqual(rc, 0)
        self.assertAgentClean(a)


if __name__ == "__main__":
    main()
