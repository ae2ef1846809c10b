#!/usr/bin/python3
"""CSI: 50 CreateSnapshot calls at once over 10 volumes (5 per volume, one
name sent twice per volume: the same snapshot both times), all uploaded;
ListSnapshots paging (max_entries=7) sees each exactly once; filters; bad
tokens; 40 concurrent DeleteSnapshot calls."""
import collections
import threading
import time

import grpc

from csilib import (StopsClean, P_REPO, PASSWORD, MiB, Agent, AgentTest, Code, L_SNAPSHOT_ID, log, main, new_repo, pb,
                    prand, pwrite_sync, repo_snapshots)

NVOL = 10
PER_VOL = 5


def run_all(fns):
    """Run every fn at once (threads released together); returns [(result, exc)]."""
    out = [None] * len(fns)
    gate = threading.Barrier(len(fns))

    def run(i, fn):
        gate.wait()
        try:
            out[i] = (fn(), None)
        except Exception as e:   # noqa: BLE001 (reported by the caller)
            out[i] = (None, e)

    ts = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=600)
    return out


class Concurrency(StopsClean, AgentTest):
    @classmethod
    def setUpClass(cls):
        cls.agent = Agent("concurrency", node_id="node-conc", upload_workers=2).start()
        cls.url, cls.repo_path = new_repo("concurrency")

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()

    def test_concurrent_snapshots(self):
        a = self.agent
        vols = []
        for i in range(NVOL):
            v = a.create_volume("pvc-conc-%02d" % i, 8 * MiB)
            t = a.publish(v.volume_id, a.block_target("pvc-conc-%02d" % i))
            pwrite_sync(t, (i * 64 * 1024) % (8 * MiB), prand(256 * 1024, "conc-%d" % i))
            a.unpublish(v.volume_id, t)
            vols.append(v.volume_id)

        params = {P_REPO: self.url}
        secrets = {"password": PASSWORD}
        # Per volume: names 0..3, and name 0 again.
        calls = []
        for i, vid in enumerate(vols):
            for k in list(range(PER_VOL - 1)) + [0]:
                calls.append((vid, "snapshot-conc-%02d-%d" % (i, k)))
        self.assertEqual(len(calls), NVOL * PER_VOL)
        aborted = collections.Counter()

        def create(vid, name):
            # ABORTED ("an operation is pending for this name") is the one
            # error a CO retries; anything else is a failure.
            deadline = time.monotonic() + 120
            while True:
                try:
                    return a.create_snapshot(vid, name, params, secrets)
                except grpc.RpcError as e:
                    if e.code() != Code.ABORTED or time.monotonic() > deadline:
                        raise
                    aborted[name] += 1
                    time.sleep(0.05)

        t0 = time.monotonic()
        results = run_all([lambda v=v, n=n: create(v, n) for v, n in calls])
        log("50 CreateSnapshot calls answered in %.2fs (%d ABORTED retries)"
            % (time.monotonic() - t0, sum(aborted.values())))
        errors = ["%s/%s: %s %s" % (v, n, e.code().name if hasattr(e, "code") else "", e)
                  for (v, n), (_, e) in zip(calls, results) if e is not None]
        self.assertEqual(errors, [], "CreateSnapshot calls failed")
        by_name = collections.defaultdict(set)
        for (vid, name), (snap, _) in zip(calls, results):
            self.assertEqual(snap.source_volume_id, vid, name)
            by_name[name].add(snap.snapshot_id)
        for name, ids in by_name.items():
            self.assertEqual(len(ids), 1, "name %s sent twice got ids %s" % (name, sorted(ids)))
        ids = {next(iter(v)) for v in by_name.values()}
        self.assertEqual(len(ids), NVOL * (PER_VOL - 1), "distinct names must be distinct snapshots")

        t0 = time.monotonic()
        for sid in ids:
            a.wait_ready(sid, timeout=120)
        log("all %d snapshots ready %.1fs later" % (len(ids), time.monotonic() - t0))

        # One repository snapshot per CSI snapshot: a name sent twice is uploaded once.
        per_id = collections.Counter(s["labels"].get(L_SNAPSHOT_ID) for s in repo_snapshots(self.url))
        self.assertEqual(set(per_id), ids, "repository snapshots vs CSI snapshots")
        self.assertEqual([k for k, n in per_id.items() if n != 1], [], "uploaded more than once")

        # ListSnapshots, 7 at a time: each snapshot exactly once.
        pages, seen, token = 0, [], ""
        while True:
            r = a.controller.ListSnapshots(pb.ListSnapshotsRequest(max_entries=7, starting_token=token), timeout=30)
            pages += 1
            self.assertLessEqual(len(r.entries), 7)
            seen += [e.snapshot.snapshot_id for e in r.entries]
            if not r.next_token:
                break
            self.assertLess(pages, 100, "paging does not end")
            token = r.next_token
        dup = [k for k, n in collections.Counter(seen).items() if n > 1]
        self.assertEqual(dup, [], "listed more than once while paging")
        self.assertEqual(set(seen), ids, "paging with max_entries=7 lists other snapshots")
        self.assertGreaterEqual(pages, 6, "40 snapshots in fewer than 6 pages of 7")
        log("ListSnapshots: %d pages" % pages)
        # All at once, too.
        self.assertEqual(sorted(s.snapshot_id for s in a.list_snapshots()), sorted(ids))

        # Filters.
        for i, vid in enumerate(vols[:3]):
            got = a.list_snapshots(source_volume_id=vid)
            want = {next(iter(by_name["snapshot-conc-%02d-%d" % (i, k)])) for k in range(PER_VOL - 1)}
            self.assertEqual({s.snapshot_id for s in got}, want, "ListSnapshots(source_volume_id=%s)" % vid)
            self.assertTrue(all(s.ready_to_use for s in got))
        one = sorted(ids)[0]
        got = a.list_snapshots(snapshot_id=one)
        self.assertEqual([s.snapshot_id for s in got], [one], "ListSnapshots(snapshot_id=...)")
        self.assertEqual(a.list_snapshots(snapshot_id="snap-" + "0" * 32), [], "unknown snapshot_id: empty")
        self.assertEqual(a.list_snapshots(source_volume_id="vol-" + "0" * 32), [], "unknown volume: empty")

        # Bad tokens.
        for tok in ("not-a-token", "-5", "\u00e9\u00e9", "x" * 200):
            with self.subTest(token=tok):
                self.assertCode(Code.ABORTED, a.controller.ListSnapshots,
                                pb.ListSnapshotsRequest(max_entries=7, starting_token=tok),
                                "ListSnapshots starting_token=%r" % tok)
        self.assertCode(Code.INVALID_ARGUMENT, a.controller.ListSnapshots,
                        pb.ListSnapshotsRequest(max_entries=-1), "ListSnapshots max_entries=-1")

        # Delete them all at once.
        results = run_all([lambda s=s: a.delete_snapshot(s) for s in ids])
        errors = [str(e) for _, e in results if e is not None]
        self.assertEqual(errors, [], "concurrent DeleteSnapshot calls failed")
        self.assertEqual(a.list_snapshots(), [])
        for vid in vols:
            a.delete_volume(vid)


if __name__ == "__main__":
    main()
