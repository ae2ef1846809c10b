#!/usr/bin/python3
"""CSI agent: backup policies (--policy-dir; docs/operations.md, "Policies").

The scheduler runs on a clock the test drives: FERRY_TEST_CLOCK names a file
holding Unix seconds, which the agent watches (inotify) and reads as "now".
No sleep synchronises anything: the tests wait for what the agent does —
its debug line for each pass of the scheduler at a time ("policies: pass at
T"), snapshots in ListSnapshots and in the repositories, its log lines.

- Schedule: a scheduled snapshot is an ordinary snapshot: cut at its time
  (not before: a pass just before it cuts nothing), listed, uploaded to the
  primary and a copy with the policy's label, restored byte-identical by
  CreateVolume here and on another node (lookup by its label) and by
  `ferry restore`; retention after each upload removes exactly what each
  target's rules say (primary keepLast, copy keepDaily) and never a
  VolumeSnapshot's snapshot; a run missed while the agent was down happens
  once, at start; a policy changed through a ConfigMap-style "..data" swap
  takes effect; a bad file is rejected with one line and the old version
  stays in force.
- Maintenance: a prune on its schedule waits for the upload of that
  target that is running (the repository's filesystem frozen to hold the
  upload), then runs; a scheduled drill from the far copy passes (with
  fsck as its check), is recorded in the repository and kept by the agent
  (its state file, and no RTO breach after a restart); a damaged chunk and
  a failing check command fail it; an RPO objective's breach is logged when
  it begins and when it ends.
- Errors: two policies over one volume (the first by name backs it up, the
  other logs it once and skips it, still backing up its other volume); a
  missing secret skips that policy's run, not the others', and the next run
  succeeds once the secret is there; volumes selected by their PVC's
  namespace and name (recorded at CreateVolume).
"""
import json
import os
import re
import subprocess
import time

from csilib import (P_COPY, P_REPO, P_VS_NAME, PASSWORD, WORK, MiB, Agent, AgentTest, StopsClean, block_cap, ferry,
                    first_difference, log, main, mount_cap, new_repo, prand, pwrite_sync, repo_snapshots)

P_POLICY = "ferry.csi.dev/policy"
L_SNAPSHOT_ID = "ferry.csi.dev/snapshot-id"
T0 = 1893456000            # 2030-01-01 00:00:00 UTC, a Tuesday
HOUR = 3600
DAY = 86400
SIZE = 32 * MiB


def hms(t):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


class Clock:
    """The file FERRY_TEST_CLOCK names: replaced whole (rename) at each set."""

    def __init__(self, name, t):
        self.path = os.path.join(WORK, name + ".clock")
        self.set(t)

    def set(self, t):
        self.t = int(t)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % self.t)
        os.rename(tmp, self.path)

    def advance(self, s):
        self.set(self.t + s)


def secret_dir(name, password=PASSWORD):
    d = os.path.join(WORK, "secrets", name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "password"), "w") as f:
        f.write(password)
    return d


def write_file(path, text):
    """Replace path whole (a hidden temporary file, then rename), as an editor would."""
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def policy_yaml(name, spec):
    return ("apiVersion: ferry.csi.dev/v1alpha1\nkind: BackupPolicy\nmetadata:\n  name: %s\nspec:\n%s"
            % (name, "".join("  " + ln + "\n" for ln in spec.strip("\n").split("\n"))))


def target(url, secrets, extra=""):
    return "- url: %s\n  secrets: {dir: %s}\n%s" % (url, secrets, "".join("  " + ln + "\n" for ln in
                                                                         extra.strip("\n").split("\n") if ln))


def indent(text, n):
    return "".join(" " * n + ln + "\n" for ln in text.strip("\n").split("\n"))


def log_pos(agent):
    return os.path.getsize(agent.log_path)


def log_wait(agent, needle, start=0, timeout=120, count=1):
    """Lines of the agent's log after byte start that hold needle (a str or a
    compiled regex), once there are count of them; fails at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        with open(agent.log_path, "rb") as f:
            f.seek(start)
            text = f.read().decode("utf-8", "replace")
        hits = [ln for ln in text.splitlines()
                if (needle.search(ln) if hasattr(needle, "search") else needle in ln)]
        if len(hits) >= count:
            return hits
        if not agent.running():
            raise AssertionError("agent died waiting for %r; log tail:\n%s" % (needle, agent.log_tail()))
        if time.monotonic() > deadline:
            raise AssertionError("no %r in the agent's log within %ds (%d of %d); log tail:\n%s"
                                 % (needle, timeout, len(hits), count, agent.log_tail(60)))
        time.sleep(0.05)


def log_since(agent, start):
    with open(agent.log_path, "rb") as f:
        f.seek(start)
        return f.read().decode("utf-8", "replace").splitlines()


def set_and_pass(agent, clock, t):
    """Set the clock and wait until the scheduler has made its pass at t."""
    pos = log_pos(agent)
    clock.set(t)
    log_wait(agent, "policies: pass at %s" % hms(t), pos)


def policy_snapshots(repo_url, policy=None, volume=None):
    out = []
    for s in repo_snapshots(repo_url):
        if volume and s["volume"] != volume:
            continue
        if policy is not None and s.get("labels", {}).get(P_POLICY) != policy:
            continue
        out.append(s)
    return out


def ids(snaps):
    return sorted(s["labels"][L_SNAPSHOT_ID] for s in snaps)


class PolicyAgent:
    """An agent with a policy directory and a test clock."""

    def make_agent(self, name, t0, config=None, extra=()):
        self.pdir = os.path.join(WORK, name + "-policies")
        os.makedirs(self.pdir, exist_ok=True)
        self.clock = Clock(name, t0)
        return Agent(name, node_id="node-" + name, config=config,
                     extra_args=("--policy-dir", self.pdir) + tuple(extra),
                     env={"FERRY_TEST_CLOCK": self.clock.path, "TZ": "UTC"})

    def volume(self, a, name, size=SIZE, seed=None, cap=None, parameters=None):
        v = a.create_volume(name, size, cap=cap, parameters=parameters)
        data = None
        if cap is None:
            t = a.publish(v.volume_id, a.block_target(name))
            data = bytearray(size)
            for i, off in enumerate((0, 5 * MiB + 4096, size - MiB)):
                d = prand(MiB // 2, "%s-%s-%d" % (name, seed or "", i))
                pwrite_sync(t, off, d)
                data[off:off + len(d)] = d
            return v.volume_id, t, data
        return v.volume_id, None, None

    def rewrite(self, target, data, seed):
        d = prand(MiB // 4, seed)
        off = 9 * MiB
        pwrite_sync(target, off, d)
        data[off:off + len(d)] = d

    def wait_new_snapshots(self, a, vol, known, n=1, timeout=120):
        """Wait until ListSnapshots lists n snapshots of vol not in known; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            new = [s for s in a.list_snapshots(source_volume_id=vol) if s.snapshot_id not in known]
            if len(new) >= n:
                return new
            if time.monotonic() > deadline:
                raise AssertionError("%d new snapshots of %s within %ds, want %d; log tail:\n%s"
                                     % (len(new), vol, timeout, n, a.log_tail(40)))
            time.sleep(0.05)


class Schedule(PolicyAgent, StopsClean, AgentTest):
    @classmethod
    def setUpClass(cls):
        cls.primary, cls.primary_path = new_repo("sched-primary")
        cls.copy, _ = new_repo("sched-copy", init=False)
        ferry("init", "--repo", cls.copy, "--copy-of", cls.primary)
        cls.sec = secret_dir("sched")
        cls.agent = PolicyAgent.make_agent(cls, "sched", T0).start()

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()

    def policy(self, schedule="0 */6 * * *", primary_keep="keepLast: 3", copy_keep="keepDaily: 2"):
        return policy_yaml("six-hourly", """
selector:
  volumeIds: [%s]
schedule: "%s"
targets:
%s%s
drill: {enabled: false}
""" % (self.vol, schedule,
       indent(target(self.primary, self.sec, "retention: {%s}" % primary_keep), 2),
       indent(target(self.copy, self.sec, "retention: {%s}" % copy_keep), 2)))

    def test_a_schedule_fires(self):
        a = self.agent
        self.vol, self.target, self.data = self.volume(a, "pvc-sched", seed="a")
        Schedule.vol, Schedule.target_path, Schedule.data = self.vol, self.target, self.data
        pos = log_pos(a)
        write_file(os.path.join(self.pdir, "six-hourly.yaml"), self.policy())
        log_wait(a, "policy six-hourly (%s/six-hourly.yaml) in force" % self.pdir, pos)
        # Just before its time: nothing.  At its time: one snapshot, cut then.
        set_and_pass(a, self.clock, T0 + 6 * HOUR - 1)
        self.assertEqual(a.list_snapshots(source_volume_id=self.vol), [], "a snapshot before the schedule's time")
        self.clock.set(T0 + 6 * HOUR)
        s1 = self.wait_new_snapshots(a, self.vol, set())[0]
        self.assertEqual(s1.creation_time.seconds, T0 + 6 * HOUR, "the snapshot's time is not the cut's")
        s1 = a.wait_ready(s1.snapshot_id)
        data1 = bytes(self.data)
        # In both repositories, labelled with its policy and its CSI id.
        for url in (self.primary, self.copy):
            snaps = policy_snapshots(url, "six-hourly", self.vol)
            self.assertEqual(ids(snaps), [s1.snapshot_id], "%s: %s" % (url, snaps))
        # Restored: CreateVolume (the local clone), `ferry restore` of the copy.
        v2 = a.create_volume("pvc-sched-restored", SIZE, snapshot=s1.snapshot_id)
        t2 = a.publish(v2.volume_id, a.block_target("pvc-sched-restored"))
        self.assertIsNone(first_difference(t2, data1), "CreateVolume from the scheduled snapshot differs")
        a.unpublish(v2.volume_id, t2)
        a.delete_volume(v2.volume_id)
        out = os.path.join(WORK, "sched-restore.img")
        rid = policy_snapshots(self.copy, "six-hourly", self.vol)[0]["id"]
        ferry("restore", "--repo", self.copy, rid, out)
        with open(out + ".want", "wb") as f:
            f.write(data1)
        self.assertEqual(subprocess.run(["cmp", out, out + ".want"]).returncode, 0, "ferry restore of the copy differs")
        os.unlink(out)
        os.unlink(out + ".want")
        # Another node, which never cut it, restores it from the primary (found by its label).
        b = Agent("sched-other", node_id="node-other", config="lookup-repositories = %s\n" % self.primary).start()
        try:
            vb = b.create_volume("pvc-elsewhere", SIZE, snapshot=s1.snapshot_id, secrets={"password": PASSWORD})
            tb = b.publish(vb.volume_id, b.block_target("pvc-elsewhere"))
            self.assertIsNone(first_difference(tb, data1), "CreateVolume on another node differs")
            b.unpublish(vb.volume_id, tb)
            b.delete_volume(vb.volume_id)
            self.assertEqual(b.stop()[0], 0)
            self.assertAgentClean(b)
        finally:
            b.kill()

    def test_b_retention_per_target(self):
        a = self.agent
        vol, tgt, data = Schedule.vol, Schedule.target_path, Schedule.data
        # A VolumeSnapshot's snapshot to the same repositories: retention never touches it.
        csi = a.create_snapshot(vol, "snapshot-by-hand", {P_REPO: self.primary, P_COPY: self.copy,
                                                          P_VS_NAME: "by-hand"}, {"password": PASSWORD})
        a.wait_ready(csi.snapshot_id)
        times = {s.snapshot_id: s.creation_time.seconds for s in a.list_snapshots(source_volume_id=vol)
                 if s.snapshot_id != csi.snapshot_id}
        known = set(times) | {csi.snapshot_id}
        t = self.clock.t
        for k in range(11):     # runs every 6 hours over nearly three days
            t = (t // (6 * HOUR) + 1) * 6 * HOUR
            self.rewrite(tgt, data, "ret-%d" % k)
            pos = log_pos(a)
            self.clock.set(t)
            s = self.wait_new_snapshots(a, vol, known)[0]
            known.add(s.snapshot_id)
            times[s.snapshot_id] = t
            a.wait_ready(s.snapshot_id)
            log_wait(a, "policy six-hourly: volume %s: retention on " % vol, pos, count=2)
            newest_first = sorted(times, key=lambda i: -times[i])
            want_primary = newest_first[:3]
            want_copy, days = [], []
            for i in newest_first:            # keepDaily 2: the newest of each of 2 days
                day = time.gmtime(times[i])[:3]
                if day not in days and len(days) < 2:
                    days.append(day)
                    want_copy.append(i)
            self.assertEqual(ids(policy_snapshots(self.primary, "six-hourly", vol)), sorted(want_primary),
                             "primary (keepLast 3) after run %d" % k)
            self.assertEqual(ids(policy_snapshots(self.copy, "six-hourly", vol)), sorted(want_copy),
                             "copy (keepDaily 2) after run %d" % k)
            for url in (self.primary, self.copy):
                self.assertEqual(len([x for x in repo_snapshots(url)
                                      if x["labels"].get(L_SNAPSHOT_ID) == csi.snapshot_id]), 1,
                                 "%s: the VolumeSnapshot's snapshot was removed by a policy's retention" % url)
            # What the primary forgot leaves ListSnapshots too.
            listed = sorted(x.snapshot_id for x in a.list_snapshots(source_volume_id=vol))
            self.assertEqual(listed, sorted(want_primary + [csi.snapshot_id]), "ListSnapshots after run %d" % k)
        log("retention: primary %s, copy %s" % (want_primary, want_copy))
        # The newest restores byte-identical from the primary.
        out = os.path.join(WORK, "sched-ret.img")
        rid = [x["id"] for x in repo_snapshots(self.primary)
               if x["labels"].get(L_SNAPSHOT_ID) == newest_first[0]][0]
        ferry("restore", "--repo", self.primary, rid, out)
        self.assertIsNone(first_difference(out, bytes(data)), "the newest scheduled snapshot does not restore")
        os.unlink(out)
        ferry("check", "--repo", self.primary, "--read-data")
        ferry("check", "--repo", self.copy, "--read-data")

    def test_c_missed_run_happens_once(self):
        a = self.agent
        vol = Schedule.vol
        known = {s.snapshot_id for s in a.list_snapshots(source_volume_id=vol)}
        self.assertEqual(a.stop()[0], 0)
        # Down over three of its times.
        t = (self.clock.t // (6 * HOUR) + 3) * 6 * HOUR + 2 * HOUR
        self.clock.set(t)
        pos = log_pos(a)
        a.start()
        new = self.wait_new_snapshots(a, vol, known)
        self.assertEqual(new[0].creation_time.seconds, t, "the missed run is not cut at start")
        log_wait(a, "was missed (the agent was down or busy): it runs once now", pos)
        # A later pass at the same time cuts nothing more.
        set_and_pass(a, self.clock, t + 60)
        new = [s for s in a.list_snapshots(source_volume_id=vol) if s.snapshot_id not in known]
        self.assertEqual(len(new), 1, "missed runs after downtime: %d snapshots, want 1" % len(new))
        runs = [ln for ln in log_since(a, pos) if "policy six-hourly: volume %s: the run due" % vol in ln]
        self.assertEqual(len(runs), 1, "more than one run after downtime: %s" % runs)
        a.wait_ready(new[0].snapshot_id)
        known.add(new[0].snapshot_id)
        # The next time comes as usual.
        t = (t // (6 * HOUR) + 1) * 6 * HOUR
        self.clock.set(t)
        s = self.wait_new_snapshots(a, vol, known)[0]
        self.assertEqual(s.creation_time.seconds, t)
        a.wait_ready(s.snapshot_id)

    def test_d_bad_file_keeps_the_policy_in_force(self):
        a = self.agent
        vol = Schedule.vol
        path = os.path.join(self.pdir, "six-hourly.yaml")
        with open(path) as f:
            good = f.read()
        for bad, want in (
                (good.replace('schedule: "0 */6 * * *"', 'schedule: "0 */6 * * 8"'),
                 "six-hourly.yaml: spec.schedule: '0 */6 * * 8' is not a cron line: the day-of-week field '8': 8 "
                 "is out of range 0-7 (line 8)"),
                (good.replace("drill: {enabled: false}", "drill: {enabled: false}\n  retention: {keepLast: 1}"),
                 "six-hourly.yaml: spec: unknown field 'retention'"),
                (good + "  extra: [unclosed\n", "six-hourly.yaml: not valid YAML")):
            pos = log_pos(a)
            write_file(path, bad)
            line = log_wait(a, "policy file %s rejected: " % path, pos)[0]
            self.assertIn(want, line)
            self.assertIn("policy six-hourly as it was before stays in force", line)
            self.assertEqual(len(log_wait(a, "rejected", pos)), 1, "one line per rejection")
        # The old version still runs on its schedule.
        known = {s.snapshot_id for s in a.list_snapshots(source_volume_id=vol)}
        t = (self.clock.t // (6 * HOUR) + 1) * 6 * HOUR
        self.clock.set(t)
        s = self.wait_new_snapshots(a, vol, known)[0]
        a.wait_ready(s.snapshot_id)
        pos = log_pos(a)
        write_file(path, good)
        log_wait(a, "policy six-hourly (%s) changed, the new version is in force" % path, pos)

    def test_e_configmap_update_takes_effect(self):
        """A ConfigMap volume: files are symlinks into ..data, itself a symlink
        to a timestamped directory that an update replaces (rename)."""
        a = self.agent
        vol = Schedule.vol
        pos = log_pos(a)
        os.unlink(os.path.join(self.pdir, "six-hourly.yaml"))
        log_wait(a, "policy six-hourly: %s/six-hourly.yaml is gone" % self.pdir, pos)
        d1 = os.path.join(self.pdir, "..2030_01_01_00_00_00.1")
        os.mkdir(d1)
        with open(os.path.join(d1, "six-hourly.yaml"), "w") as f:
            f.write(self.policy())
        os.symlink(os.path.basename(d1), os.path.join(self.pdir, "..data"))
        pos = log_pos(a)
        os.symlink("..data/six-hourly.yaml", os.path.join(self.pdir, "six-hourly.yaml"))
        log_wait(a, "policy six-hourly (%s/six-hourly.yaml) in force" % self.pdir, pos)
        # The update: hourly instead of every six hours.
        d2 = os.path.join(self.pdir, "..2030_01_01_00_00_00.2")
        os.mkdir(d2)
        with open(os.path.join(d2, "six-hourly.yaml"), "w") as f:
            f.write(self.policy(schedule="30 * * * *"))
        pos = log_pos(a)
        os.symlink(os.path.basename(d2), os.path.join(self.pdir, "..data_tmp"))
        os.rename(os.path.join(self.pdir, "..data_tmp"), os.path.join(self.pdir, "..data"))
        subprocess.run(["rm", "-rf", d1], check=True)
        log_wait(a, "policy six-hourly (%s/six-hourly.yaml) changed, the new version is in force: schedule "
                 "'30 * * * *'" % self.pdir, pos)
        known = {s.snapshot_id for s in a.list_snapshots(source_volume_id=vol)}
        t = (self.clock.t // HOUR) * HOUR + 30 * 60
        if t <= self.clock.t:
            t += HOUR
        self.clock.set(t)
        s = self.wait_new_snapshots(a, vol, known)[0]
        self.assertEqual(s.creation_time.seconds, t, "the new schedule's time")
        a.wait_ready(s.snapshot_id)
        # Gone from the directory: no longer in force.
        pos = log_pos(a)
        os.unlink(os.path.join(self.pdir, "six-hourly.yaml"))
        log_wait(a, "policy six-hourly: %s/six-hourly.yaml is gone: the policy is no longer in force" % self.pdir, pos)
        known.add(s.snapshot_id)
        set_and_pass(a, self.clock, t + HOUR)
        self.assertEqual([s for s in a.list_snapshots(source_volume_id=vol) if s.snapshot_id not in known], [],
                         "a snapshot after its policy was removed")


def mount_point_fs(name, size_mb=256):
    """A loop-mounted ext4 filesystem in WORK (run.sh unmounts what is left)."""
    img = os.path.join(WORK, name + ".img")
    mnt = os.path.join(WORK, name)
    os.makedirs(mnt, exist_ok=True)
    subprocess.run(["truncate", "-s", "%dM" % size_mb, img], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", img], check=True)
    subprocess.run(["mount", "-o", "loop", img, mnt], check=True)
    return mnt


def status_json(url, volume):
    p = ferry("status", "--repo", url, "--volume", volume, "--json", check=False)
    assert p.returncode in (0, 3), "ferry status: exit %d: %s" % (p.returncode, p.stderr.decode())
    return json.loads(p.stdout.decode())["rows"][0]


class Maintenance(PolicyAgent, StopsClean, AgentTest):
    """Prune beside uploads, scheduled drills, RPO and RTO objectives."""

    @classmethod
    def setUpClass(cls):
        cls.fs = mount_point_fs("maint-repofs")
        cls.primary = "file://" + os.path.join(cls.fs, "repo")
        ferry("init", "--repo", cls.primary)
        cls.copy, _ = new_repo("maint-copy", init=False)
        ferry("init", "--repo", cls.copy, "--copy-of", cls.primary)
        cls.sec = secret_dir("maint")
        cls.dsec = secret_dir("maint-drill")
        cls.agent = PolicyAgent.make_agent(cls, "maint", T0).start()

    @classmethod
    def tearDownClass(cls):
        subprocess.run(["fsfreeze", "-u", cls.fs], stderr=subprocess.DEVNULL)
        cls.agent.stop()

    def test_a_prune_waits_for_the_upload(self):
        a = self.agent
        vol, tgt, data = self.volume(a, "pvc-pruned", seed="p")
        # The policy begins at 00:20: its prune's next time is 06:10.
        set_and_pass(a, self.clock, T0 + 20 * 60)
        pos = log_pos(a)
        write_file(os.path.join(self.pdir, "pruned.yaml"), policy_yaml("pruned", """
selector: {volumeIds: [%s]}
schedule: "0 * * * *"
targets:
%s%s
prune: {schedule: "10 */6 * * *"}
drill: {enabled: false}
""" % (vol, indent(target(self.primary, self.sec, "retention: {keepLast: 1}"), 2),
       indent(target(self.copy, self.sec, "retention: {keepLast: 1}"), 2))))
        log_wait(a, "policy pruned (", pos)
        known = set()
        # Two runs: retention leaves the first one's chunks unreferenced.
        for k in range(2):
            self.rewrite(tgt, data, "pruned-%d" % k)
            self.clock.set(T0 + (k + 1) * HOUR)
            s = self.wait_new_snapshots(a, vol, known)[0]
            known.add(s.snapshot_id)
            a.wait_ready(s.snapshot_id)
        # The third run's upload is held: the primary's filesystem is frozen.
        self.rewrite(tgt, data, "pruned-2")
        pos = log_pos(a)
        subprocess.run(["fsfreeze", "-f", self.fs], check=True)
        try:
            self.clock.set(T0 + 3 * HOUR)
            s = self.wait_new_snapshots(a, vol, known)[0]
            log_wait(a, "snapshot %s: upload starts" % s.snapshot_id, pos)
            self.assertEqual([ln for ln in log_since(a, pos) if "policy pruned: prune" in ln], [])
            self.clock.set(T0 + 6 * HOUR + 10 * 60)
            line = log_wait(a, "policy pruned: the prune of file://%s/repo waits for the upload of" % self.fs, pos)[0]
            self.assertIn(s.snapshot_id, line)
        finally:
            subprocess.run(["fsfreeze", "-u", self.fs], check=True)
        a.wait_ready(s.snapshot_id)
        log_wait(a, "policy pruned: prune of %s done" % self.copy, pos)
        lines = log_since(a, pos)
        up = [i for i, ln in enumerate(lines) if "snapshot %s uploaded to" % s.snapshot_id in ln]
        pr = [i for i, ln in enumerate(lines) if "policy pruned: prune of file://%s/repo starts" % self.fs in ln]
        done = [ln for ln in lines if "policy pruned: prune of file://%s/repo done" % self.fs in ln]
        self.assertTrue(up and pr and done, "upload %s, prune %s %s" % (up, pr, done))
        self.assertLess(up[0], pr[0], "the prune started before the upload to its repository ended")
        self.assertNotIn("prune of file://%s/repo failed" % self.fs, "\n".join(lines))
        m = re.search(r"done: (\d+) chunks removed", done[0])
        self.assertTrue(m and int(m.group(1)) > 0, "the prune removed nothing: %s" % done[0])
        ferry("check", "--repo", self.primary, "--read-data")
        out = os.path.join(WORK, "pruned.img")
        rid = [x["id"] for x in policy_snapshots(self.primary, "pruned", vol)
               if x["labels"][L_SNAPSHOT_ID] == s.snapshot_id][0]
        ferry("restore", "--repo", self.primary, rid, out)
        self.assertIsNone(first_difference(out, bytes(data)), "the snapshot uploaded beside a prune does not restore")
        os.unlink(out)

    def drill_policy(self, vol, record, check="fsck -n -f {}"):
        return policy_yaml("drilled", """
selector: {volumeIds: [%s]}
schedule: "0 */2 * * *"
targets:
%s%s
drill:
  schedule: "45 * * * *"
  check: "%s"
  record: %s
  scratchDir: %s
objectives: {rpo: 3h, rto: 1h}
""" % (vol, indent(target(self.dprimary, self.dsec), 2), indent(target(self.dcopy, self.dsec), 2), check,
       "true" if record else "false", self.scratch))

    def test_b_drill_passes_and_is_kept(self):
        a = self.agent
        Maintenance.dprimary, _ = new_repo("drill-primary")
        Maintenance.dcopy, Maintenance.dcopy_path = new_repo("drill-copy", init=False)
        ferry("init", "--repo", self.dcopy, "--copy-of", self.dprimary)
        Maintenance.scratch = os.path.join(WORK, "drill-scratch")
        os.makedirs(self.scratch, exist_ok=True)
        vol, _, _ = self.volume(a, "pvc-drilled", cap=mount_cap("ext4"))
        Maintenance.dvol = vol
        tgt = a.publish(vol, a.mount_target("pvc-drilled"), cap=mount_cap("ext4"))
        with open(os.path.join(tgt, "table.dat"), "wb") as f:
            f.write(prand(3 * MiB, "drilled"))
        self.clock.set(T0 + 5 * HOUR)
        pos = log_pos(a)
        write_file(os.path.join(self.pdir, "drilled.yaml"), self.drill_policy(vol, record=False))
        # Before any drill, the RTO is not measured: a breach.
        log_wait(a, "policy drilled: volume %s: RTO from %s is not measured" % (vol, self.dcopy), pos)
        self.clock.set(T0 + 6 * HOUR)
        s = self.wait_new_snapshots(a, vol, set())[0]
        a.wait_ready(s.snapshot_id)
        pos = log_pos(a)
        self.clock.set(T0 + 6 * HOUR + 45 * 60)
        line = log_wait(a, "policy drilled: volume %s: drill of snapshot" % vol, pos, count=2)[1]
        self.assertIn("from %s passed" % self.dcopy, line)
        self.assertIn("check exited 0", line)
        self.assertNotIn("recorded", line)
        log_wait(a, "policy drilled: volume %s: RTO from %s is 0s, within the objective 1h" % (vol, self.dcopy), pos)
        # Kept by the agent (record: false: nothing in the repository) ...
        self.assertIsNone(status_json(self.dcopy, vol)["last_drill"], "a drill recorded with record: false")
        with open(os.path.join(a.state, "policies.state")) as f:
            kept = [ln.split("\t") for ln in f if ln.startswith("drill\tdrilled\t%s\t" % vol)]
        self.assertEqual(len(kept), 1, "the drill's result is not in the agent's state")
        self.assertEqual(kept[0][4], "1")
        # ... across a restart: no RTO breach once the status is read again.
        self.assertEqual(a.stop()[0], 0)
        pos = log_pos(a)
        a.start()
        log_wait(a, "policies: policy drilled: the status of %s read" % self.dcopy, pos)
        set_and_pass(a, self.clock, self.clock.t + 60)
        self.assertEqual([ln for ln in log_since(a, pos) if "RTO from" in ln], [],
                         "after a restart the passing drill is forgotten")
        # With record: true the next drill is in the copy's drill records.
        pos = log_pos(a)
        write_file(os.path.join(self.pdir, "drilled.yaml"), self.drill_policy(vol, record=True))
        log_wait(a, "policy drilled (", pos)
        self.clock.set(T0 + 7 * HOUR + 45 * 60)
        line = log_wait(a, "policy drilled: volume %s: drill of snapshot" % vol, pos, count=2)[1]
        self.assertIn("passed", line)
        self.assertIn("recorded", line)
        row = status_json(self.dcopy, vol)
        self.assertEqual(row["last_drill"]["result"], "ok", row)
        self.assertEqual(os.listdir(self.scratch), [], "the drill left its scratch behind")

    def test_c_drill_fails_on_a_damaged_chunk_and_a_failing_check(self):
        a = self.agent
        vol = Maintenance.dvol
        chunks = sorted(os.path.join(d, f) for d, _, fs in os.walk(os.path.join(self.dcopy_path, "chunks"))
                        for f in fs)
        orig = {}
        for c in chunks:               # a byte flipped in each chunk of the copy
            with open(c, "r+b") as f:
                f.seek(64)
                orig[c] = f.read(1)
                f.seek(64)
                f.write(bytes([orig[c][0] ^ 0xff]))
        pos = log_pos(a)
        self.clock.set(T0 + 8 * HOUR + 45 * 60)
        line = log_wait(a, re.compile(r"policy drilled: volume %s: drill of snapshot \w+ from .* (passed|failed)" % vol),
                        pos)[0]
        m = re.search(r"failed \(restore\): chunk (\w+) is corrupt", line)
        self.assertTrue(m, line)
        self.assertIn(m.group(1), [os.path.basename(c) for c in chunks])
        self.assertEqual(status_json(self.dcopy, vol)["last_drill"]["result"], "failed")
        # Repaired; now the check command fails.
        for c in chunks:
            with open(c, "r+b") as f:
                f.seek(64)
                f.write(orig[c])
        pos = log_pos(a)
        write_file(os.path.join(self.pdir, "drilled.yaml"), self.drill_policy(vol, record=True, check="test ! -b {}"))
        log_wait(a, "policy drilled (", pos)
        self.clock.set(T0 + 9 * HOUR + 45 * 60)
        line = log_wait(a, re.compile(r"policy drilled: volume %s: drill of snapshot \w+ from .* (passed|failed)" % vol),
                        pos)[0]
        self.assertRegex(line, r"failed \(check\): the check 'test ! -b \{\}' on /dev/loop\d+ exited with status 1")
        self.assertEqual(os.listdir(self.scratch), [], "a failed drill left its scratch behind")

    def test_d_rpo_objective(self):
        a = self.agent
        vol = Maintenance.dvol
        # The policy backs up every 2 hours with rpo 3h: a run that fails
        # (a wrong password for the primary) lets the RPO pass 3 hours.
        pos = log_pos(a)
        write_file(os.path.join(self.pdir, "drilled.yaml"), self.drill_policy(vol, record=True))
        log_wait(a, "policy drilled (", pos)
        newest = max(s.creation_time.seconds for s in a.list_snapshots(source_volume_id=vol))
        sec = os.path.join(self.dsec, "password")
        with open(sec, "w") as f:
            f.write("a wrong password")
        try:
            pos = log_pos(a)
            self.clock.set(newest + 2 * HOUR)  # the run is cut; its upload fails
            log_wait(a, "upload failed", pos)
            self.clock.set(newest + 3 * HOUR + 60)
            for url in (self.dprimary, self.dcopy):
                log_wait(a, "policy drilled: volume %s: RPO on %s is 3h1m, above the objective 3h" % (vol, url), pos)
        finally:
            with open(sec, "w") as f:
                f.write(PASSWORD)
        # The next run's time: the pending upload takes the policy's secrets again, and lands.
        pos = log_pos(a)
        self.clock.set(newest + 4 * HOUR)
        for url in (self.dprimary, self.dcopy):
            log_wait(a, "policy drilled: volume %s: RPO on %s is" % (vol, url), pos)
        lines = [ln for ln in log_since(a, pos) if "RPO on" in ln]
        for ln in lines:
            self.assertIn("within the objective 3h again", ln)


class Errors(PolicyAgent, StopsClean, AgentTest):
    """Overlapping policies, a missing secret, PVC selectors: each says what
    is wrong once, and the other policies keep running."""

    @classmethod
    def setUpClass(cls):
        cls.repo, _ = new_repo("errors")
        cls.sec = secret_dir("errors")
        cls.missing = os.path.join(WORK, "secrets", "not-there-yet")
        cls.agent = PolicyAgent.make_agent(cls, "errors", T0).start()

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()

    def pol(self, name, selector, secrets=None):
        return policy_yaml(name, """
selector: %s
schedule: "0 * * * *"
targets:
%s
drill: {enabled: false}
""" % (selector, indent(target(self.repo, secrets or self.sec), 2)))

    def test_a_overlap_missing_secret_pvcs(self):
        a = self.agent
        k8s = lambda ns, n: {"csi.storage.k8s.io/pvc/namespace": ns, "csi.storage.k8s.io/pvc/name": n,
                             "csi.storage.k8s.io/pv/name": "pv-" + n}
        v1, _, _ = self.volume(a, "pvc-both", seed="1")
        v2, _, _ = self.volume(a, "pvc-second", seed="2")
        v3, _, _ = self.volume(a, "pvc-nosecret", seed="3")
        v4, _, _ = self.volume(a, "pvc-db", seed="4", parameters=k8s("prod", "data-db-0"))
        v5, _, _ = self.volume(a, "pvc-db-staging", seed="5", parameters=k8s("staging", "data-db-0"))
        v6, _, _ = self.volume(a, "pvc-web", seed="6", parameters=k8s("prod", "web-0"))
        pos = log_pos(a)
        write_file(os.path.join(self.pdir, "a.yaml"), self.pol("a-first", "{volumeIds: [%s]}" % v1))
        write_file(os.path.join(self.pdir, "b.yaml"), self.pol("b-second", "{volumeIds: [%s, %s]}" % (v1, v2)))
        write_file(os.path.join(self.pdir, "c.yaml"), self.pol("c-nosecret", "{volumeIds: [%s]}" % v3, self.missing))
        write_file(os.path.join(self.pdir, "d.yaml"), self.pol("d-pvcs", "{pvcs: [{namespace: prod, name: 'data-db-*'}]}"))
        line = log_wait(a, "policy b-second: volume %s is also selected by policy a-first" % v1, pos)[0]
        self.assertIn("b-second skips it", line)
        # c-nosecret's status read fails on its secret: said, counted, the others unaffected.
        log_wait(a, "policy c-nosecret: target %s: the secrets directory %s: No such file or directory"
                 % (self.repo, self.missing), pos)
        for p in ("a-first", "b-second", "c-nosecret", "d-pvcs"):
            log_wait(a, "policy %s (" % p, pos)
        pos = log_pos(a)
        self.clock.set(T0 + HOUR)
        got = {}
        for v in (v1, v2, v4):
            got[v] = a.wait_ready(self.wait_new_snapshots(a, v, set())[0].snapshot_id).snapshot_id
        line = log_wait(a, "policy c-nosecret: volume %s: the run due 2030-01-01 01:00 UTC is skipped: target %s: "
                        "the secrets directory %s: No such file or directory" % (v3, self.repo, self.missing), pos)[0]
        set_and_pass(a, self.clock, T0 + HOUR + 60)
        for v in (v3, v5, v6):
            self.assertEqual(a.list_snapshots(source_volume_id=v), [], "volume %s was backed up" % v)
        self.assertEqual(len([ln for ln in log_since(a, 0) if "is also selected by policy" in ln]), 1,
                         "the overlap is said more than once")
        labels = {s["labels"][L_SNAPSHOT_ID]: s["labels"].get(P_POLICY) for s in repo_snapshots(self.repo)}
        self.assertEqual(labels, {got[v1]: "a-first", got[v2]: "b-second", got[v4]: "d-pvcs"})
        # The PVC's names went with the snapshot too.
        sd = [s for s in repo_snapshots(self.repo) if s["labels"][L_SNAPSHOT_ID] == got[v4]][0]
        self.assertEqual(sd["labels"].get("csi.storage.k8s.io/pvc/name"), "data-db-0")
        # The secret appears: the next run of c-nosecret goes through.
        secret_dir("not-there-yet")
        self.clock.set(T0 + 2 * HOUR)
        a.wait_ready(self.wait_new_snapshots(a, v3, set())[0].snapshot_id)
        # The overlap ends when a-first lets the volume go: b-second takes it.
        pos = log_pos(a)
        write_file(os.path.join(self.pdir, "a.yaml"), self.pol("a-first", "{volumeIds: [%s]}" % v6))
        log_wait(a, "policy a-first (", pos)
        known = {s.snapshot_id for s in a.list_snapshots(source_volume_id=v1)}
        self.clock.set(T0 + 3 * HOUR)
        s = self.wait_new_snapshots(a, v1, known)[0]
        a.wait_ready(s.snapshot_id)
        self.assertEqual([x["labels"].get(P_POLICY) for x in repo_snapshots(self.repo)
                          if x["labels"][L_SNAPSHOT_ID] == s.snapshot_id], ["b-second"])


if __name__ == "__main__":
    main()
