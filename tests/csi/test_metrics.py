#!/usr/bin/python3
"""CSI: the agent's Prometheus metrics and JSON log, with real parts.

One agent with --metrics-address 127.0.0.1:0 (a free port it logs) and
--log-format json is driven over its socket: volumes created and published,
data written, snapshots uploaded to a file:// repository and its copy
(whose path holds a double quote and a backslash: label escaping, live),
an upload that fails (a repository that does not exist), a bad call, a
delete.  Its /metrics is scraped over HTTP:

- `promtool check metrics` passes on every live scrape;
- the counters moved by exactly the calls made (before/after deltas), the
  upload, cut and queue metrics say what happened, the RPO gauge of each
  volume and target is now minus the snapshot's creation time, grows
  between two scrapes and falls when a newer snapshot lands; the series
  survive a restart (seeded from the catalog) and go with the volume;
- a real Prometheus server (Debian's, started here on 127.0.0.1 with a
  1 s scrape interval and the alert rules of deploy/monitoring) scrapes
  the agent, and PromQL through its HTTP API returns the same values;
  every rule loads and is healthy;
- every line of the agent's log parses as JSON, with time, level, msg and
  the volume, snapshot, target and error fields of an upload and of a
  failed upload; no secret in it;
- bad --metrics-address values: one line, exit 2, nothing touched; an
  address in use: one line, exit 1.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

from csilib import (FERRY, P_COPY, P_REPO, PASSWORD, SRC_DIR, WORK, MiB, Agent, AgentTest, Code,
                    ferry, log, main, new_repo, pb, prand, pwrite_sync)

SIZE = 16 * MiB
SECRETS = {"password": PASSWORD}
PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
RULES = os.path.join(SRC_DIR, "deploy", "monitoring", "ferry-alerts.yaml")


def parse(text):
    """{(name, frozenset(labels.items())): value} of an exposition text
    (the escapes of label values undone)."""
    out = {}
    line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
    label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for ln in text.splitlines():
        if not ln or ln.startswith("#"):
            continue
        m = line_re.match(ln)
        assert m, "not a sample line: %r" % ln
        labels = {}
        for k, v in label_re.findall(m.group(3) or ""):
            labels[k] = re.sub(r'\\(.)', lambda x: "\n" if x.group(1) == "n" else x.group(1), v)
        out[(m.group(1), frozenset(labels.items()))] = float(m.group(4))
    return out


def get(samples, metric, **labels):
    """The value of one series, or None."""
    return samples.get((metric, frozenset(labels.items())))


def total(samples, metric, **labels):
    """The sum over every series of metric whose labels include these."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == metric and want <= set(ls))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Metrics(AgentTest):
    @classmethod
    def setUpClass(cls):
        cls.agent = Agent("metrics", node_id="node-metrics", log_format="json", metrics=True).start()
        cls.url, cls.path = new_repo("metrics-primary")
        # A copy whose path needs escaping in a label: a double quote and a backslash.
        cls.copy_path = os.path.join(WORK, "repos", 'metrics-copy"q\\b')
        cls.copy_url = "file://" + cls.copy_path
        ferry("init", "--repo", cls.copy_url, "--copy-of", cls.url)
        cls.missing_url = "file://" + os.path.join(WORK, "repos", "metrics-does-not-exist")

    def scrape(self):
        """A live scrape, checked by promtool; parsed."""
        text = self.agent.scrape()
        if PROMTOOL:
            p = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=60)
            self.assertEqual(p.returncode, 0, "promtool check metrics on a live scrape:\n%s\n---\n%s"
                             % (p.stdout.decode(errors="replace"), text[:3000]))
        return parse(text)

    def wait_scrape(self, what, cond, timeout=120):
        """Scrape until cond(samples) is true; fails at the deadline."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.scrape()
            if cond(last):
                return last
            self.assertTrue(self.agent.running(), "agent died:\n" + self.agent.log_tail())
            time.sleep(0.1)
        self.fail("%s: not within %ds" % (what, timeout))

    def test_0_promtool_present(self):
        self.assertIsNotNone(PROMTOOL, "promtool is missing (scripts/install-deps.sh installs prometheus)")

    def test_1_calls_uploads_rpo(self):
        a = self.agent
        before = self.scrape()
        with open(os.path.join(SRC_DIR, "CMakeLists.txt")) as f:
            version = re.search(r'project\(ferry VERSION ([0-9.]+)', f.read()).group(1)
        self.assertEqual(get(before, "ferry_build_info", version=version), 1)

        vol = a.create_volume("pvc-metrics", SIZE)
        vid = vol.volume_id
        target = a.publish(vid, a.block_target("pvc-metrics"))
        self.__class__.vid, self.__class__.target = vid, target
        pwrite_sync(target, 0, prand(4 * MiB, "metrics-1"))
        params = {P_REPO: self.url, P_COPY: self.copy_url}
        t_cut = time.time()
        s1 = a.create_snapshot(vid, "snapshot-metrics-1", params, SECRETS)
        s1 = a.wait_ready(s1.snapshot_id)
        created1 = s1.creation_time.seconds + s1.creation_time.nanos / 1e9
        # A failing upload: its repository does not exist (and is not to be made).
        bad = a.create_snapshot(vid, "snapshot-metrics-bad", {P_REPO: self.missing_url}, SECRETS)
        # A bad call.
        self.assertCode(Code.INVALID_ARGUMENT, a.controller.DeleteVolume, pb.DeleteVolumeRequest(volume_id="../x"),
                        "DeleteVolume of a bad id")

        s = self.wait_scrape("the failed upload counted",
                             lambda s: get(s, "ferry_uploads_total", volume=vid, result="failure"))
        # The failed one waits for its retry (unless a retry runs right now): queued.
        s = self.wait_scrape("the failed upload queued for its retry", lambda s: get(s, "ferry_uploads_queued") == 1)

        def delta(name, **labels):
            return total(s, name, **labels) - total(before, name, **labels)

        C = "csi.v1.Controller"
        self.assertEqual(delta("ferry_csi_requests_total", service=C, method="CreateVolume", code="OK"), 1)
        self.assertEqual(delta("ferry_csi_requests_total", service="csi.v1.Node", method="NodePublishVolume",
                               code="OK"), 1)
        self.assertEqual(delta("ferry_csi_requests_total", service=C, method="CreateSnapshot", code="OK"), 2)
        self.assertEqual(delta("ferry_csi_requests_total", service=C, method="DeleteVolume",
                               code="INVALID_ARGUMENT"), 1)
        self.assertGreaterEqual(delta("ferry_csi_requests_total", service=C, method="ListSnapshots", code="OK"), 1)
        # Every call counted is in the latency histogram too.
        for m in ("CreateVolume", "CreateSnapshot", "NodePublishVolume", "DeleteVolume"):
            svc = "csi.v1.Node" if m.startswith("Node") else C
            self.assertEqual(get(s, "ferry_csi_request_duration_seconds_count", service=svc, method=m),
                             total(s, "ferry_csi_requests_total", service=svc, method=m))
            self.assertEqual(get(s, "ferry_csi_request_duration_seconds_bucket", service=svc, method=m, le="+Inf"),
                             get(s, "ferry_csi_request_duration_seconds_count", service=svc, method=m))
        self.assertEqual(delta("ferry_snapshot_cut_seconds_count"), 2)
        self.assertEqual(get(s, "ferry_uploads_total", volume=vid, result="success"), 1)
        self.assertGreaterEqual(get(s, "ferry_upload_read_bytes_total", volume=vid), 4 * MiB)
        self.assertGreater(get(s, "ferry_upload_stored_bytes_total", volume=vid), 0)
        self.assertIsNotNone(get(s, "ferry_upload_deduplicated_bytes_total", volume=vid))
        self.assertEqual(get(s, "ferry_upload_store_retries_total", volume=vid), 0)  # file://: no retries
        self.assertEqual(delta("ferry_upload_duration_seconds_count"), 1)
        self.assertEqual(get(s, "ferry_volume_info", volume=vid, name="pvc-metrics"), 1)
        self.assertEqual(get(s, "ferry_volume_size_bytes", volume=vid), SIZE)

        # RPO per volume and target: the primary and the copy, labels as shown
        # paths (the copy's with its quote and backslash, unescaped by parse()).
        for t in (self.url, self.copy_url):
            newest = get(s, "ferry_newest_snapshot_timestamp_seconds", volume=vid, target=t)
            self.assertIsNotNone(newest, "no RPO series for %s: %s" % (t, sorted(k for k in s if "rpo" in k[0])))
            self.assertAlmostEqual(newest, created1, delta=0.01)
            rpo = get(s, "ferry_rpo_seconds", volume=vid, target=t)
            self.assertGreaterEqual(rpo, 0)
            self.assertLess(abs(rpo - (time.time() - created1)), 60)
            self.assertGreaterEqual(get(s, "ferry_last_upload_success_timestamp_seconds", volume=vid, target=t),
                                    t_cut - 1)
        self.assertIsNone(get(s, "ferry_rpo_seconds", volume=vid, target=self.missing_url))
        # It grows with time: a later scrape says more.
        rpo1 = get(s, "ferry_rpo_seconds", volume=vid, target=self.url)
        s2 = self.wait_scrape("RPO growing", lambda x: get(x, "ferry_rpo_seconds", volume=vid, target=self.url) > rpo1 + 1)
        rpo2 = get(s2, "ferry_rpo_seconds", volume=vid, target=self.url)
        # ... and falls when a newer snapshot lands.
        pwrite_sync(target, 4 * MiB, prand(MiB, "metrics-2"))
        s3 = a.create_snapshot(vid, "snapshot-metrics-2", params, SECRETS)
        s3 = a.wait_ready(s3.snapshot_id)
        created3 = s3.creation_time.seconds + s3.creation_time.nanos / 1e9
        s = self.scrape()
        self.assertAlmostEqual(get(s, "ferry_newest_snapshot_timestamp_seconds", volume=vid, target=self.copy_url),
                               created3, delta=0.01)
        self.assertLess(get(s, "ferry_rpo_seconds", volume=vid, target=self.url), rpo2)
        self.assertEqual(get(s, "ferry_uploads_total", volume=vid, result="success"), 2)
        log("RPO %.1f s -> %.1f s, then %.1f s after the second snapshot landed"
            % (rpo1, rpo2, get(s, "ferry_rpo_seconds", volume=vid, target=self.url)))

        # Deleting the failing snapshot empties the queue.
        before = s
        a.delete_snapshot(bad.snapshot_id)
        s = self.wait_scrape("the queue empty", lambda x: get(x, "ferry_uploads_queued") == 0)
        self.assertEqual(total(s, "ferry_csi_requests_total", method="DeleteSnapshot", code="OK")
                         - total(before, "ferry_csi_requests_total", method="DeleteSnapshot", code="OK"), 1)
        self.__class__.created3 = created3

    def test_2_prometheus(self):
        """A real Prometheus scrapes the agent every second; PromQL through
        its HTTP API returns the calls by method and the RPO gauge, and the
        alert rules load."""
        self.assertIsNotNone(PROMETHEUS, "prometheus is missing (scripts/install-deps.sh installs it)")
        vid = self.vid
        hostport = urllib.parse.urlparse(self.agent.metrics_url).netloc
        d = tempfile.mkdtemp(prefix="prometheus.", dir=WORK)
        cfg = os.path.join(d, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "rule_files:\n  - %s\n"
                    "scrape_configs:\n  - job_name: ferry\n    static_configs:\n      - targets: ['%s']\n"
                    % (json.dumps(RULES), hostport))
        proc, api = None, None
        for attempt in range(5):     # another process may take the free port first: try another
            port = free_port()
            logf = open(os.path.join(d, "prometheus.log"), "ab")
            proc = subprocess.Popen([PROMETHEUS, "--config.file=" + cfg, "--storage.tsdb.path=" + os.path.join(d, "data"),
                                     "--web.listen-address=127.0.0.1:%d" % port], stdout=logf, stderr=subprocess.STDOUT)
            logf.close()
            api = "http://127.0.0.1:%d" % port
            deadline = time.monotonic() + 120
            ready = False
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    with urllib.request.urlopen(api + "/-/ready", timeout=5) as r:
                        ready = r.status == 200
                except OSError:
                    pass
                if ready:
                    break
                time.sleep(0.2)
            if ready:
                break
            plog = open(os.path.join(d, "prometheus.log"), errors="replace").read()
            proc.kill()
            proc.wait()
            proc = None
            self.assertIn("address already in use", plog, "prometheus did not start:\n" + plog[-3000:])
        self.assertIsNotNone(proc, "prometheus did not start on any port")
        try:
            def query(q):
                with urllib.request.urlopen(api + "/api/v1/query?" + urllib.parse.urlencode({"query": q}),
                                            timeout=30) as r:
                    body = json.loads(r.read().decode())
                self.assertEqual(body["status"], "success", body)
                return body["data"]["result"]

            def wait_query(q, cond, timeout=180):
                deadline = time.monotonic() + timeout
                res = None
                while time.monotonic() < deadline:
                    res = query(q)
                    if cond(res):
                        return res
                    self.assertIsNone(proc.poll(), "prometheus exited")
                    time.sleep(0.5)
                self.fail("PromQL %s: not as expected within %ds; last: %s" % (q, timeout, res))

            s = parse(self.agent.scrape())
            want = {}
            for (n, ls), v in s.items():
                if n == "ferry_csi_requests_total":
                    m = dict(ls)["method"]
                    want[m] = want.get(m, 0) + v
            # The calls by method, as the agent counts them (the Probe of a
            # readiness check may add calls meanwhile: at least as many).
            res = wait_query("sum by (method) (ferry_csi_requests_total)",
                             lambda r: {x["metric"]["method"] for x in r} >= set(want))
            got = {x["metric"]["method"]: float(x["value"][1]) for x in res}
            for m in ("CreateVolume", "CreateSnapshot", "NodePublishVolume", "DeleteSnapshot", "DeleteVolume"):
                self.assertEqual(got[m], want[m], "PromQL count of %s" % m)
            # The RPO gauge of both targets, now minus the newest snapshot's time.
            res = wait_query('ferry_rpo_seconds{volume="%s"}' % vid, lambda r: len(r) == 2)
            targets = {x["metric"]["target"] for x in res}
            self.assertEqual(targets, {self.url, self.copy_url})
            for x in res:
                t_sample, v = x["value"][0], float(x["value"][1])
                self.assertLess(abs(v - (t_sample - self.created3)), 30, x)
            res = wait_query('ferry_uploads_total{volume="%s",result="success"}' % vid, lambda r: len(r) == 1)
            self.assertEqual(float(res[0]["value"][1]), 2)
            self.assertEqual(query("up{job='ferry'}")[0]["value"][1], "1")
            # The alert rules: loaded, evaluated, healthy.
            with urllib.request.urlopen(api + "/api/v1/rules", timeout=30) as r:
                rules = json.loads(r.read().decode())["data"]["groups"]
            names = {rule["name"]: rule for g in rules for rule in g["rules"]}
            for n in ("FerryRPOBreached", "FerryDrillFailed", "FerryDrillStale", "FerryUploadsFailing",
                      "FerryPolicyErrors"):
                self.assertIn(n, names, "rule %s not loaded" % n)
            deadline = time.monotonic() + 60
            while any(r.get("health") != "ok" for r in names.values()) and time.monotonic() < deadline:
                time.sleep(0.5)
                with urllib.request.urlopen(api + "/api/v1/rules", timeout=30) as r:
                    rules = json.loads(r.read().decode())["data"]["groups"]
                names = {rule["name"]: rule for g in rules for rule in g["rules"]}
            self.assertEqual({n: r.get("health") for n, r in names.items() if r.get("health") != "ok"}, {})
            log("Prometheus: %s" % ", ".join("%s=%g" % kv for kv in sorted(got.items())))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            shutil.rmtree(d, ignore_errors=True)

    def test_3_json_log(self):
        a = self.agent
        objs = a.json_log()
        self.assertGreater(len(objs), 10)
        ts = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        for o in objs:
            self.assertTrue(ts.match(o.get("time", "")), o)
            self.assertIn(o.get("level"), ("error", "warn", "info", "debug"), o)
            self.assertIsInstance(o.get("msg"), str, o)
            self.assertLessEqual(set(o), {"time", "level", "msg", "volume", "snapshot", "target", "policy", "error"}, o)
        up = [o for o in objs if " uploaded to " in o["msg"]]
        self.assertGreaterEqual(len(up), 2, "no upload line")
        self.assertEqual(up[0]["level"], "info")
        self.assertEqual(up[0]["volume"], self.vid)
        self.assertTrue(up[0]["snapshot"].startswith("snap-"))
        self.assertEqual(up[0]["target"], self.url)
        failed = [o for o in objs if "upload failed" in o["msg"]]
        self.assertTrue(failed, "no failed upload line")
        self.assertEqual(failed[0]["level"], "error")
        self.assertEqual(failed[0]["volume"], self.vid)
        self.assertIn("snapshot", failed[0])
        self.assertTrue(failed[0]["error"], failed[0])
        self.assertIn(failed[0]["error"], failed[0]["msg"])
        self.assertEqual(failed[0]["target"], self.missing_url)
        cut = [o for o in objs if " cut in " in o["msg"]]
        self.assertTrue(cut and cut[0].get("volume") == self.vid and cut[0].get("snapshot"), cut[:1])
        # --debug: gRPC's own messages are JSON lines too (if it said anything).
        for o in objs:
            self.assertNotIn(PASSWORD, json.dumps(o))

    def test_4_restart_seeds_rpo(self):
        """After a restart the RPO series are there at once, from the catalog."""
        a = self.agent
        a.restart()
        s = self.scrape()
        for t in (self.url, self.copy_url):
            newest = get(s, "ferry_newest_snapshot_timestamp_seconds", volume=self.vid, target=t)
            self.assertIsNotNone(newest, "no series of %s on %s right after the restart" % (self.vid, t))
            self.assertAlmostEqual(newest, self.created3, delta=0.01)
            self.assertIsNotNone(get(s, "ferry_rpo_seconds", volume=self.vid, target=t))
        self.assertEqual(get(s, "ferry_volume_size_bytes", volume=self.vid), SIZE)
        self.assertEqual(total(s, "ferry_uploads_total"), 0, "counters start from zero")
        # A deleted volume's series go.
        a.unpublish(self.vid, self.target)
        a.delete_volume(self.vid)
        s = self.scrape()
        self.assertEqual([k for k in s if dict(k[1]).get("volume") == self.vid], [])

    def test_5_bad_addresses(self):
        """Bad values: one line, exit 2, nothing made; in use: one line, exit 1."""
        root = tempfile.mkdtemp(prefix="bad-metrics.", dir=WORK)
        state = os.path.join(root, "state")
        sock = os.path.join(root, "csi.sock")
        base = [FERRY, "agent", "--endpoint", "unix://" + sock, "--state-dir", state, "--kubelet-dir", root]
        for bad in ("9808", "localhost:9808", "127.0.0.1:70000", "127.0.0.1:", "::1:9808", "[::1]9808", "1.2.3:x"):
            for how in ("flag", "config"):
                if how == "flag":
                    args = base + ["--metrics-address", bad]
                else:
                    conf = os.path.join(root, "agent.conf")
                    with open(conf, "w") as f:
                        f.write("metrics-address = %s\n" % bad)
                    args = base + ["--config", conf]
                p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
                err = p.stderr.decode(errors="replace")
                self.assertEqual(p.returncode, 2, "%s %r: exit %d: %s" % (how, bad, p.returncode, err))
                self.assertEqual(len(err.splitlines()), 1, "%s %r: %r" % (how, bad, err))
                self.assertIn(bad, err)
                self.assertEqual(p.stdout, b"")
                self.assertFalse(os.path.exists(state), "the state dir was made")
                self.assertFalse(os.path.exists(sock), "the socket was made")
        p = subprocess.run(base + ["--log-format", "yaml"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(p.returncode, 2)
        self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)
        self.assertIn(b"yaml", p.stderr)
        # The running agent's address is in use.
        inuse = urllib.parse.urlparse(self.agent.metrics_url).netloc
        for fmt in ("text", "json"):
            p = subprocess.run(base + ["--metrics-address", inuse, "--log-format", fmt], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=60)
            err = p.stderr.decode(errors="replace")
            self.assertEqual(p.returncode, 1, "in use (%s): exit %d: %s" % (fmt, p.returncode, err))
            self.assertEqual(len(err.splitlines()), 1, err)
            self.assertIn(inuse, err)
            self.assertIn("in use", err)
            if fmt == "json":
                self.assertEqual(json.loads(err)["level"], "error")
            self.assertFalse(os.path.exists(state), "the state dir was made")
            self.assertFalse(os.path.exists(sock), "the socket was left")
        # The agent still serves.
        self.scrape()
        shutil.rmtree(root, ignore_errors=True)

    def test_zz_stop_clean(self):
        a = self.agent
        rc, _ = a.stop()
        self.assertEqual(rc, 0, "exit status after SIGTERM")
        self.assertAgentClean(a)
        a.json_log()     # still every line JSON, to the last


if __name__ == "__main__":
    main()
