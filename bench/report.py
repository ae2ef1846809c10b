#!/usr/bin/python3
"""Summarise bench/run.sh raw runs: medians, tables, target checks, results.json, chart.png.

usage: report.py --meta OUT/meta.json --raw OUT/raw.jsonl --out OUT
Run with /usr/bin/python3 (Debian's interpreter, which sees python3-matplotlib).
"""
import argparse
import json
import os
import statistics
import sys

# id, label, group, kind
ROWS = [
    ("fio_read", "fio read (O_DIRECT qd8)", "ceiling", "ceiling"),
    ("fio_write", "fio write (O_DIRECT qd8)", "ceiling", "ceiling"),
    ("codec", "codec all-core (level 1)", "ceiling", "ceiling"),
    ("ferry_backup_tmpfs_cold", "ferry backup, tmpfs as is", "ferry", "backup"),
    ("ferry_backup_tmpfs", "ferry backup, repo tmpfs", "ferry", "backup"),
    ("ferry_backup_disk", "ferry backup, repo same disk", "ferry", "backup"),
    ("ferry_restore", "ferry restore, same disk", "ferry", "restore"),
    ("restic_backup", "restic backup", "restic", "backup"),
    ("restic_restore", "restic restore", "restic", "restore"),
    ("borg_backup", "borg backup (lz4)", "borg", "backup"),
    ("borg_restore", "borg restore", "borg", "restore"),
    ("ferry_sparse_1g", "ferry backup, sparse 1 GiB", "memory", "memory"),
    ("ferry_sparse_64g", "ferry backup, sparse 64 GiB", "memory", "memory"),
]
# The incremental set (run.sh --only incremental): its own table and targets.
INCR_ROWS = [
    ("ferry_incr_full", "ferry full backup (base.img)", "incremental", "incremental"),
    ("ferry_incr_extent", "ferry incr, extent diff", "incremental", "incremental"),
    ("ferry_incr_ranges", "ferry incr, range list", "incremental", "incremental"),
    ("ferry_incr_scan", "ferry incr, manifest scan", "incremental", "incremental"),
    ("read_only", "fio read new.img (O_DIRECT)", "incremental", "incremental"),
    ("restic_incr", "restic incremental", "restic", "incremental"),
    ("ferry_incr_100g_nochange", "ferry incr, 100 GiB no change", "incremental", "incremental"),
    ("ferry_diff_100g", "ferry diff, 100 GiB", "incremental", "incremental"),
]
# The S3 set (run.sh --only s3): a Ceph RGW on loopback; its own table and targets.
S3_ROWS = [
    ("s3_ceiling", "RGW ingest ceiling (curl x8)", "ceiling", "s3"),
    ("ferry_s3", "ferry backup to S3", "ferry", "s3"),
    ("restic_s3", "restic backup to S3", "restic", "s3"),
    ("ferry_s3_fanout", "ferry backup, 3 targets", "ferry", "s3"),
    ("ferry_s3_fanout_lock", "ferry backup, 3 targets, 1 locked", "ferry", "s3"),
]
MAIN_SETS = ("ceiling", "ferry", "peers", "memory")
LABEL = {r[0]: r[1] for r in ROWS + INCR_ROWS + S3_ROWS}
RSS_LIMIT_MIB = 256.0
INCR_READ_MAX = 0.02       # extent diff / range list: read <= 2% of the volume
INCR_WALL_MAX = 0.05       # ... in <= 5% of the full backup's wall time
INCR_X_RESTIC = 20.0       # ... and >= 20x faster than restic's incremental
SCAN_X_READ = 1.10         # manifest scan wall <= 110% of just reading the volume
BIG_WALL_MAX_S = 1.0       # 100 GiB no-change incremental, and diff: < 1 s
S3_X_CEILING = 0.70        # ferry backup to S3 >= 70% of RGW's ingest ceiling
S3_X_RESTIC = 3.0          # ... and >= 3x restic's backup to the same RGW
S3_FANOUT_CPU = 1.20       # CPU of a backup to 3 targets <= 1.2x that of 1 target
COLORS = {"ceiling": "#8c8c8c", "ferry": "#1f77b4", "restic": "#ff7f0e",
          "borg": "#2ca02c", "memory": "#9467bd"}


def human_size(n):
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):g} {unit}"
    return f"{n} B"


def median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def summarise(raw, skip_peers=False):
    rows = {}
    def ext(ok, key):
        return median([r["extra"].get(key) for r in ok if isinstance(r.get("extra"), dict)])

    for rid, label, group, kind in ROWS + INCR_ROWS + S3_ROWS:
        runs = [r for r in raw if r["row"] == rid]
        ok = [r for r in runs if r["status"] == "ok"]
        if ok:
            status = "ok"
        elif skip_peers and group in ("restic", "borg"):
            status = "skipped"
        elif any(r["status"] == "missing" for r in runs):
            status = "missing"
        elif runs:
            status = "failed"
        else:
            status = "not run"
        cpu = [None if r["user_s"] is None or r["sys_s"] is None else r["user_s"] + r["sys_s"]
               for r in ok]
        rss = [None if r["rss_kib"] is None else r["rss_kib"] / 1024.0 for r in ok]
        errors = [{"run": r["run"], "error": r["error"]} for r in runs if r.get("error")]
        verified = [r["extra"].get("verified") for r in ok
                    if isinstance(r.get("extra"), dict) and "verified" in r["extra"]]
        rows[rid] = {
            "label": label, "group": group, "kind": kind, "status": status,
            "runs_ok": len(ok), "runs_total": len([r for r in runs if r["status"] != "missing"]),
            "median": {
                "mbps": median([r["mbps"] for r in ok]),
                "wall_s": median([r["wall_s"] for r in ok]),
                "cpu_s": median(cpu),
                "rss_mib": median(rss),
                "stored_bytes": median([r["stored_bytes"] for r in ok]),
                # bytes the tool read (ferry's and fio's own count; restic: bytes processed)
                "bytes_read": median([r["extra"].get("bytes_read") for r in ok
                                      if isinstance(r.get("extra"), dict)]),
                # ferry backup's own duration_s (no start-up, key derivation or final sync)
                "self_s": median([r["extra"].get("duration_s") for r in ok
                                  if isinstance(r.get("extra"), dict)]),
                # S3 rows: bytes sent to the gateway (all targets), and the CPU seconds
                # the Ceph daemons (mon, osd, radosgw) used during the timed command
                "bytes_up": ext(ok, "bytes_up"),
                "rgw_cpu_s": ext(ok, "rgw_cpu_s"),
            },
            "max_rss_mib": max([v for v in rss if v is not None], default=None),
            # what ferry says about itself (backup --json), next to the harness's figure
            "self_reported_mbps": median([r["extra"].get("throughput_mbps") for r in ok
                                          if isinstance(r.get("extra"), dict)]),
            "verified": verified,
            "errors": errors,
        }
    return rows


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def add_ratios(rows, ceiling):
    for rid, row in rows.items():
        m = row["median"]["mbps"]
        kind = row["kind"]
        row["x_ceiling"] = ratio(m, ceiling) if kind in ("backup", "restore", "ceiling") else None
        peer = {"backup": ("restic_backup", "borg_backup"),
                "restore": ("restic_restore", "borg_restore")}.get(kind)
        row["x_restic"] = ratio(m, rows[peer[0]]["median"]["mbps"]) if peer else None
        row["x_borg"] = ratio(m, rows[peer[1]]["median"]["mbps"]) if peer else None


def check(name, ok, detail):
    """ok: True/False, or None for SKIP."""
    status = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
    return {"name": name, "status": status, "detail": detail}


def med(rows, rid, key="mbps"):
    return rows[rid]["median"][key] if rows[rid]["status"] == "ok" else None


def unavailable(name, rows, *rids):
    """A target whose inputs are not all there: FAIL when a ferry row failed (ferry ran
    and broke), SKIP when something is missing, skipped or a peer failed."""
    detail = why_missing(rows, *rids) or "no ceiling"
    broke = any(r.startswith("ferry") and rows[r]["status"] == "failed" for r in rids)
    return check(name, False if broke else None, detail)


def why_missing(rows, *rids):
    out = []
    for rid in rids:
        if rows[rid]["status"] != "ok":
            out.append(f"{LABEL[rid]}: {rows[rid]['status']}")
    return "; ".join(out)


def cold_note(rows, ceiling):
    """The tmpfs row as it comes (pages not touched first), for the record."""
    c = med(rows, "ferry_backup_tmpfs_cold")
    return "" if c is None else f"; as is: {c:.0f} MB/s, {100 * c / ceiling:.0f}%"


def checks_for(rows, ceiling, ceiling_note):
    out = []
    f_tmpfs, f_disk, f_rest = (med(rows, r) for r in
                               ("ferry_backup_tmpfs", "ferry_backup_disk", "ferry_restore"))
    r_b, r_r, b_b = med(rows, "restic_backup"), med(rows, "restic_restore"), med(rows, "borg_backup")
    fio_w = med(rows, "fio_write")

    if f_tmpfs is None or ceiling is None:
        out.append(unavailable("ferry backup (tmpfs repo) >= 85% of ceiling", rows,
                               "ferry_backup_tmpfs", "fio_read"))
    else:
        out.append(check("ferry backup (tmpfs repo) >= 85% of ceiling", f_tmpfs >= 0.85 * ceiling,
                         f"{f_tmpfs:.0f} MB/s vs 0.85 x {ceiling:.0f} = {0.85 * ceiling:.0f} MB/s "
                         f"({100 * f_tmpfs / ceiling:.0f}% of ceiling{ceiling_note}; "
                         f"tmpfs pages touched first{cold_note(rows, ceiling)})"))
    for peer, pm, k in (("restic", r_b, 4.0), ("borg", b_b, 3.5)):
        name = f"ferry backup (same disk) >= {k:g}x {peer} backup"
        if f_disk is None or pm is None:
            out.append(unavailable(name, rows, "ferry_backup_disk", f"{peer}_backup"))
        else:
            out.append(check(name, f_disk >= k * pm,
                             f"{f_disk:.0f} MB/s vs {k:g} x {pm:.0f} = {k * pm:.0f} MB/s "
                             f"({f_disk / pm:.2f}x)"))
    fs, rs = med(rows, "ferry_backup_disk", "stored_bytes"), med(rows, "restic_backup", "stored_bytes")
    name = "ferry stored bytes <= 1.05x restic"
    if fs is None or rs is None:
        out.append(unavailable(name, rows, "ferry_backup_disk", "restic_backup"))
    else:
        out.append(check(name, fs <= 1.05 * rs,
                         f"{fs:,.0f} B vs 1.05 x {rs:,.0f} = {1.05 * rs:,.0f} B ({fs / rs:.3f}x)"))
    name = "ferry restore >= 80% of fio write"
    if f_rest is None or fio_w is None:
        out.append(unavailable(name, rows, "ferry_restore", "fio_write"))
    else:
        out.append(check(name, f_rest >= 0.8 * fio_w,
                         f"{f_rest:.0f} MB/s vs 0.8 x {fio_w:.0f} = {0.8 * fio_w:.0f} MB/s "
                         f"({100 * f_rest / fio_w:.0f}%)"))
    name = "ferry restore >= 3x restic restore"
    if f_rest is None or r_r is None:
        out.append(unavailable(name, rows, "ferry_restore", "restic_restore"))
    else:
        out.append(check(name, f_rest >= 3 * r_r,
                         f"{f_rest:.0f} MB/s vs 3 x {r_r:.0f} = {3 * r_r:.0f} MB/s ({f_rest / r_r:.2f}x)"))

    ferry_rows = ("ferry_backup_tmpfs_cold", "ferry_backup_tmpfs", "ferry_backup_disk", "ferry_restore")
    peaks = [(rows[r]["max_rss_mib"], r) for r in ferry_rows if rows[r]["max_rss_mib"] is not None]
    name = f"ferry peak RSS < {RSS_LIMIT_MIB:.0f} MiB (backup and restore, every run)"
    if not peaks:
        out.append(unavailable(name, rows, *ferry_rows))
    else:
        top, rid = max(peaks)
        out.append(check(name, top < RSS_LIMIT_MIB,
                         f"max {top:.1f} MiB ({LABEL[rid]}); "
                         + ", ".join(f"{LABEL[r]} {v:.1f}" for v, r in peaks)))

    a, b = med(rows, "ferry_sparse_1g", "rss_mib"), med(rows, "ferry_sparse_64g", "rss_mib")
    name = f"memory: sparse 1 GiB vs 64 GiB peak RSS within 10% and < {RSS_LIMIT_MIB:.0f} MiB"
    if a is None or b is None:
        out.append(unavailable(name, rows, "ferry_sparse_1g", "ferry_sparse_64g"))
    else:
        spread = abs(a - b) / min(a, b)
        out.append(check(name, spread <= 0.10 and max(a, b) < RSS_LIMIT_MIB,
                         f"1 GiB {a:.1f} MiB, 64 GiB {b:.1f} MiB (differ by {100 * spread:.1f}%)"))
    return out


def general_checks(rows):
    """Whatever ran: every ferry run succeeded, every checked restore matched."""
    out = []
    fr = [r for r in rows if r.startswith("ferry")]
    tot = sum(rows[r]["runs_total"] for r in fr)
    failed = [(LABEL[r], rows[r]["runs_total"] - rows[r]["runs_ok"]) for r in fr
              if rows[r]["runs_total"] > rows[r]["runs_ok"]]
    name = "every ferry run succeeded"
    if tot == 0:
        out.append(check(name, None, why_missing(rows, *fr)))
    else:
        out.append(check(name, not failed, f"{tot - sum(n for _, n in failed)} of {tot} runs ok"
                         + "".join(f"; {lab}: {n} failed" for lab, n in failed)))

    bad = [(LABEL[r], v) for r, row in rows.items() for v in row["verified"] if v is not True]
    n = sum(len(row["verified"]) for row in rows.values())
    name = "restored data equals the image (first run of each restore)"
    if n == 0:
        out.append(check(name, None, "no restore ran"))
    else:
        out.append(check(name, not bad, f"{n} restore(s) compared"
                         + ("" if not bad else "; differ: " + ", ".join(sorted({b[0] for b in bad})))))
    return out


def tag(c, rid, short):
    """A check about one incremental row, with the short form shown in its table line."""
    c["row"] = rid
    c["short"] = short
    return c


def incr_checks(rows, meta):
    out = []
    inc = meta.get("incremental") or {}
    size = meta["size_bytes"]
    full = med(rows, "ferry_incr_full", "wall_s")
    restic = med(rows, "restic_incr", "wall_s")
    for rid in ("ferry_incr_extent", "ferry_incr_ranges"):
        lab = LABEL[rid]
        wall, rd = med(rows, rid, "wall_s"), med(rows, rid, "bytes_read")
        name = f"{lab}: reads <= {100 * INCR_READ_MAX:g}% of the volume"
        if rd is None:
            out.append(tag(unavailable(name, rows, rid), rid, "read ?"))
        else:
            out.append(tag(check(name, rd <= INCR_READ_MAX * size,
                                 f"{rd / 1e6:.1f} MB of {size / 1e6:.0f} MB ({100 * rd / size:.2f}%)"),
                           rid, f"read {100 * rd / size:.2f}% <= {100 * INCR_READ_MAX:g}%"))
        name = f"{lab}: wall <= {100 * INCR_WALL_MAX:g}% of the full backup's"
        if wall is None or full is None:
            out.append(tag(unavailable(name, rows, rid, "ferry_incr_full"), rid, "x full ?"))
        else:
            out.append(tag(check(name, wall <= INCR_WALL_MAX * full,
                                 f"{wall:.3f} s vs {INCR_WALL_MAX:g} x {full:.2f} s = "
                                 f"{INCR_WALL_MAX * full:.3f} s ({100 * wall / full:.1f}%)"),
                           rid, f"{100 * wall / full:.1f}% of full <= {100 * INCR_WALL_MAX:g}%"))
        name = f"{lab}: >= {INCR_X_RESTIC:g}x faster than restic's incremental"
        if wall is None or restic is None:
            out.append(tag(unavailable(name, rows, rid, "restic_incr"), rid, "x restic ?"))
        else:
            out.append(tag(check(name, restic >= INCR_X_RESTIC * wall,
                                 f"{wall:.3f} s vs restic {restic:.2f} s ({restic / wall:.1f}x)"),
                           rid, f"{restic / wall:.0f}x restic >= {INCR_X_RESTIC:g}x"))
    rid = "ferry_incr_scan"
    wall, ro = med(rows, rid, "wall_s"), med(rows, "read_only", "wall_s")
    name = f"{LABEL[rid]}: wall <= {100 * SCAN_X_READ:g}% of just reading the volume (fio)"
    if wall is None or ro is None:
        out.append(tag(unavailable(name, rows, rid, "read_only"), rid, "x read ?"))
    else:
        out.append(tag(check(name, wall <= SCAN_X_READ * ro,
                             f"{wall:.2f} s vs {SCAN_X_READ:g} x {ro:.2f} s = {SCAN_X_READ * ro:.2f} s "
                             f"({100 * wall / ro:.0f}%)"),
                       rid, f"{100 * wall / ro:.0f}% of read <= {100 * SCAN_X_READ:g}%"))
    big = human_size(inc.get("big_bytes", 100 << 30))
    for rid, what in (("ferry_incr_100g_nochange", f"{big} no-change incremental (extent diff)"),
                      ("ferry_diff_100g", f"ferry diff of two {big} snapshots")):
        wall = med(rows, rid, "wall_s")
        name = f"{what} < {BIG_WALL_MAX_S:g} s"
        if wall is None:
            out.append(tag(unavailable(name, rows, rid), rid, "< 1 s ?"))
        else:
            out.append(tag(check(name, wall < BIG_WALL_MAX_S, f"{wall:.3f} s"),
                           rid, f"{wall:.3f} s < {BIG_WALL_MAX_S:g} s"))
    fr = [r[0] for r in INCR_ROWS if r[0].startswith("ferry") and r[0] != "ferry_diff_100g"]
    peaks = [(rows[r]["max_rss_mib"], r) for r in fr if rows[r]["max_rss_mib"] is not None]
    name = f"ferry incremental backups: peak RSS < {RSS_LIMIT_MIB:.0f} MiB (every run)"
    if not peaks:
        out.append(unavailable(name, rows, *fr))
    else:
        top, rid = max(peaks)
        out.append(check(name, top < RSS_LIMIT_MIB, f"max {top:.1f} MiB ({LABEL[rid]})"))
    return out


def s3_checks(rows):
    out = []
    c_mb, c_up = med(rows, "s3_ceiling"), med(rows, "s3_ceiling", "bytes_up")
    f_mb, f_up = med(rows, "ferry_s3"), med(rows, "ferry_s3", "bytes_up")
    name = f"ferry backup to S3 >= {100 * S3_X_CEILING:g}% of RGW's ingest ceiling"
    if f_mb is None or c_mb is None:
        out.append(tag(unavailable(name, rows, "ferry_s3", "s3_ceiling"), "ferry_s3", "x ceiling ?"))
    else:
        same = "" if c_up is None or f_up is None else \
            f"; the ceiling sent {c_up / 1e6:,.1f} MB, ferry {f_up / 1e6:,.1f} MB"
        out.append(tag(check(name, f_mb >= S3_X_CEILING * c_mb,
                             f"{f_mb:.0f} MB/s vs {S3_X_CEILING:g} x {c_mb:.0f} = {S3_X_CEILING * c_mb:.0f} MB/s "
                             f"({100 * f_mb / c_mb:.0f}%; both image bytes / wall{same})"),
                       "ferry_s3", f"{100 * f_mb / c_mb:.0f}% of ceiling >= {100 * S3_X_CEILING:g}%"))
    r_mb = med(rows, "restic_s3")
    name = f"ferry backup to S3 >= {S3_X_RESTIC:g}x restic backup to S3"
    if f_mb is None or r_mb is None:
        out.append(tag(unavailable(name, rows, "ferry_s3", "restic_s3"), "ferry_s3", "x restic ?"))
    else:
        out.append(tag(check(name, f_mb >= S3_X_RESTIC * r_mb,
                             f"{f_mb:.0f} MB/s vs {S3_X_RESTIC:g} x {r_mb:.0f} = {S3_X_RESTIC * r_mb:.0f} MB/s "
                             f"({f_mb / r_mb:.2f}x)"),
                       "ferry_s3", f"{f_mb / r_mb:.2f}x restic >= {S3_X_RESTIC:g}x"))
    one = med(rows, "ferry_s3", "cpu_s")
    for rid in ("ferry_s3_fanout", "ferry_s3_fanout_lock"):
        three = med(rows, rid, "cpu_s")
        name = f"{LABEL[rid]}: ferry CPU <= {S3_FANOUT_CPU:g}x that of 1 target"
        if one is None or three is None:
            out.append(tag(unavailable(name, rows, rid, "ferry_s3"), rid, "x 1 target ?"))
        else:
            out.append(tag(check(name, three <= S3_FANOUT_CPU * one,
                                 f"{three:.1f} s vs {S3_FANOUT_CPU:g} x {one:.1f} s = {S3_FANOUT_CPU * one:.1f} s "
                                 f"({three / one:.2f}x)"),
                           rid, f"CPU {three / one:.2f}x 1 target <= {S3_FANOUT_CPU:g}x"))
    fr = [r[0] for r in S3_ROWS if r[0].startswith("ferry")]
    peaks = [(rows[r]["max_rss_mib"], r) for r in fr if rows[r]["max_rss_mib"] is not None]
    name = f"ferry backups to S3: peak RSS < {RSS_LIMIT_MIB:.0f} MiB (every run)"
    if not peaks:
        out.append(unavailable(name, rows, *fr))
    else:
        top, rid = max(peaks)
        out.append(check(name, top < RSS_LIMIT_MIB, f"max {top:.1f} MiB ({LABEL[rid]})"))
    return out


def s3_table(rows, meta, checks):
    s3 = meta.get("s3") or {}
    lines = []
    what = f"{human_size(meta['size_bytes'])} mixed image (seed {meta['seed']})"
    if s3:
        what += (f" to a Ceph RGW on loopback ({'https' if s3.get('tls') else 'plain http'}, "
                 f"{s3['connections']} connections); the ceiling uploads ferry's {s3['ceiling_objects']} "
                 f"chunk objects ({s3['ceiling_object_bytes'] / 1e6:,.1f} MB)")
    lines.append(f"ferry bench, s3: {what}; median of {meta['runs']} run(s), "
                 f"{meta['nproc']} CPU(s), {meta['date']}")
    hdr = f"{'row':<34} {'wall s':>7} {'MB/s':>6} {'up MB/s':>7} {'CPU s':>6} {'RGW CPU':>7} {'cores':>5} " \
          f"{'RSS MiB':>7} {'stored bytes':>15}  {'runs':<5} targets"
    lines.append(hdr)
    lines.append("-" * (len(hdr) + 40))
    for rid, label, group, kind in S3_ROWS:
        row = rows[rid]
        if group == "restic" and meta.get("skip_peers"):
            continue
        if row["status"] != "ok":
            lines.append(f"{label:<34} {row['status']:>7}")
            continue
        m = row["median"]
        up = None if m["bytes_up"] is None or not m["wall_s"] else m["bytes_up"] / m["wall_s"] / 1e6
        cores = None
        if m["cpu_s"] is not None and m["rgw_cpu_s"] is not None and m["wall_s"]:
            cores = (m["cpu_s"] + m["rgw_cpu_s"]) / m["wall_s"]
        targets = "; ".join(f"{c['short']} {c['status']}" for c in checks if c.get("row") == rid)
        lines.append(f"{label:<34} {fmt(m['wall_s'], '.2f'):>7} {fmt(m['mbps'], '.0f'):>6} {fmt(up, '.0f'):>7} "
                     f"{fmt(m['cpu_s'], '.1f'):>6} {fmt(m['rgw_cpu_s'], '.1f'):>7} {fmt(cores, '.2f'):>5} "
                     f"{fmt(m['rss_mib'], '.1f'):>7} {fmt(m['stored_bytes'], ',.0f'):>15}  "
                     f"{row['runs_ok']}/{row['runs_total']:<3} {targets}")
    lines.append("MB/s = image bytes / wall; up MB/s = bytes sent to the gateway (all targets) / wall; "
                 "CPU s = the tool's user + sys;")
    lines.append("RGW CPU = the Ceph daemons' (radosgw, osd, mon) user + sys during the run; "
                 "cores = (CPU s + RGW CPU) / wall")
    return lines


def fmt(v, spec, none="-"):
    return none if v is None else format(v, spec)


def incr_table(rows, meta, checks):
    inc = meta.get("incremental") or {}
    lines = []
    what = f"{human_size(meta['size_bytes'])} mixed image (seed {meta['seed']})"
    if inc:
        what += (f", {inc['changed_blocks']} of {inc['blocks']} {human_size(inc['block_bytes'])} blocks "
                 f"changed ({human_size(inc['write_bytes'])} each), on a reflink XFS "
                 f"(loop{'' if inc.get('loop_direct_io') else ', buffered'})")
    lines.append(f"ferry bench, incremental: {what}; median of {meta['runs']} run(s), "
                 f"{meta['nproc']} CPU(s), {meta['date']}")
    hdr = f"{'row':<31} {'wall s':>8} {'self s':>7} {'MB read':>9} {'MB added':>9} {'CPU s':>7} {'RSS MiB':>8}  " \
          f"{'runs':<5} targets"
    lines.append(hdr)
    lines.append("-" * (len(hdr) + 40))
    for rid, label, group, kind in INCR_ROWS:
        row = rows[rid]
        if rid == "ferry_incr_100g_nochange":
            lines.append("")
        if row["status"] != "ok":
            lines.append(f"{label:<31} {row['status']:>8}")
            continue
        m = row["median"]
        rd = None if m["bytes_read"] is None else m["bytes_read"] / 1e6
        added = None if m["stored_bytes"] is None else m["stored_bytes"] / 1e6
        targets = "; ".join(f"{c['short']} {c['status']}" for c in checks if c.get("row") == rid)
        lines.append(f"{label:<31} {fmt(m['wall_s'], '.3f'):>8} {fmt(m['self_s'], '.3f'):>7} {fmt(rd, ',.1f'):>9} "
                     f"{fmt(added, ',.1f'):>9} {fmt(m['cpu_s'], '.1f'):>7} {fmt(m['rss_mib'], '.1f'):>8}  "
                     f"{row['runs_ok']}/{row['runs_total']:<3} {targets}")
    return lines


def table(rows, meta, ceiling, ceiling_note):
    lines = []
    size = meta["size_bytes"]
    lines.append(f"ferry bench: {human_size(size)} mixed image (seed {meta['seed']}), "
                 f"median of {meta['runs']} run(s), {meta['nproc']} CPU(s), {meta['date']}")
    hdr = f"{'row':<30} {'MB/s':>9} {'CPU s':>7} {'RSS MiB':>8} {'stored bytes':>15} " \
          f"{'x ceil':>6} {'x restic':>8} {'x borg':>6}  runs"
    lines.append(hdr)
    lines.append("-" * len(hdr))
    groups_seen = set()
    for rid, label, group, kind in ROWS:
        row = rows[rid]
        if group in ("restic", "borg") and meta.get("skip_peers"):
            continue
        if group not in groups_seen and groups_seen:
            lines.append("")
        groups_seen.add(group)
        m = row["median"]
        if row["status"] != "ok":
            lines.append(f"{label:<30} {row['status']:>9}")
            continue
        stored = fmt(m["stored_bytes"], ",.0f")
        runs = f"{row['runs_ok']}/{row['runs_total']}"
        lines.append(f"{label:<30} {fmt(m['mbps'], '.0f'):>9} {fmt(m['cpu_s'], '.1f'):>7} "
                     f"{fmt(m['rss_mib'], '.1f'):>8} {stored:>15} "
                     f"{fmt(row['x_ceiling'], '.2f'):>6} {fmt(row['x_restic'], '.2f'):>8} "
                     f"{fmt(row['x_borg'], '.2f'):>6}  {runs}")
        if rid == "codec":
            lines.append(f"{'ceiling = min(fio read, codec)':<30} {fmt(ceiling, '.0f'):>9}"
                         f"{ceiling_note}")
    return lines


def chart(rows, meta, ceiling, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report: matplotlib not available: no chart", file=sys.stderr)
        return False
    shown = [r for r in ROWS if r[3] != "memory"
             and not (meta.get("skip_peers") and r[2] in ("restic", "borg"))]
    rss_rows = [r for r in ROWS if r[2] != "ceiling"
                and not (meta.get("skip_peers") and r[2] in ("restic", "borg"))]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(14, 6.5),
                                  gridspec_kw={"width_ratios": [3, 2]})

    def bars(axis, defs, key, unit):
        labels = [d[1] for d in defs][::-1]
        vals = [rows[d[0]]["median"][key] if rows[d[0]]["status"] == "ok" else None
                for d in defs][::-1]
        colors = [COLORS[d[2]] for d in defs][::-1]
        y = range(len(defs))
        axis.barh(list(y), [v or 0 for v in vals], color=colors)
        axis.set_yticks(list(y))
        axis.set_yticklabels(labels)
        top = max([v for v in vals if v is not None], default=1)
        for yi, v, d in zip(y, vals, defs[::-1]):
            text = f"{v:.0f} {unit}" if v is not None and v >= 10 else \
                (f"{v:.1f} {unit}" if v is not None else rows[d[0]]["status"])
            axis.text((v or 0) + top * 0.01, yi, text, va="center", fontsize=9,
                      color="black" if v is not None else "#b00000")
        axis.set_xlim(0, top * 1.22)
        axis.grid(axis="x", alpha=0.3)
        return top

    bars(ax, shown, "mbps", "MB/s")
    ax.set_xlabel("MB/s (image size / wall time; fio and codec: their own figure)")
    ax.set_title("throughput (median)")
    if ceiling:
        ax.axvline(ceiling, color="black", linestyle="--", linewidth=1)
        ax.axvline(0.85 * ceiling, color="#1f77b4", linestyle=":", linewidth=1)
        ax.text(ceiling, len(shown) - 0.4, " ceiling", fontsize=8)
        ax.text(0.85 * ceiling, len(shown) - 0.4, "85% ", fontsize=8, ha="right", color="#1f77b4")

    bars(ax2, rss_rows, "rss_mib", "MiB")
    ax2.axvline(RSS_LIMIT_MIB, color="#b00000", linestyle="--", linewidth=1)
    ax2.text(RSS_LIMIT_MIB, len(rss_rows) - 0.4, " 256 MiB", fontsize=8, color="#b00000")
    lim = ax2.get_xlim()[1]
    ax2.set_xlim(0, max(lim, RSS_LIMIT_MIB * 1.15))
    ax2.set_xlabel("peak RSS MiB (GNU time %M)")
    ax2.set_title("peak memory (median)")

    fig.suptitle(f"ferry bench — {human_size(meta['size_bytes'])} mixed image, "
                 f"median of {meta['runs']} run(s), {meta['nproc']} CPU(s), {meta['date'][:16]}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--meta", required=True)
    ap.add_argument("--raw", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    with open(args.meta) as f:
        meta = json.load(f)
    raw = []
    with open(args.raw) as f:
        for line in f:
            if line.strip():
                raw.append(json.loads(line))

    rows = summarise(raw, meta.get("skip_peers", False))
    sets = meta.get("sets", ["all"])          # reports of runs before --only: everything
    main_ran = "all" in sets or any(s in sets for s in MAIN_SETS)
    incr_ran = "all" in sets or "incremental" in sets
    s3_ran = "all" in sets or "s3" in sets
    fio_r, codec = med(rows, "fio_read"), med(rows, "codec")
    parts = [v for v in (fio_r, codec) if v is not None]
    ceiling = min(parts) if parts else None
    ceiling_note = ""
    if ceiling is not None and codec is None:
        ceiling_note = "; codec_bench missing: fio read only"
    add_ratios(rows, ceiling)
    main_checks = checks_for(rows, ceiling, ceiling_note) if main_ran else []
    inc_checks = incr_checks(rows, meta) if incr_ran else []
    s3c = s3_checks(rows) if s3_ran else []
    checks = main_checks + inc_checks + s3c + general_checks(rows)

    lines = []
    if main_ran:
        lines += table(rows, meta, ceiling, "  (" + ceiling_note.lstrip("; ") + ")" if ceiling_note else "")
        lines.append("")
    if incr_ran:
        lines += incr_table(rows, meta, inc_checks)
        lines.append("")
    if s3_ran:
        lines += s3_table(rows, meta, s3c)
        lines.append("")
    lines.append("targets:")
    for c in checks:
        lines.append(f"  {c['status']:<4}  {c['name']}: {c['detail']}")
    counts = {s: sum(c["status"] == s for c in checks) for s in ("PASS", "FAIL", "SKIP")}
    lines.append(f"  -> {counts['PASS']} pass, {counts['FAIL']} fail, {counts['SKIP']} skipped")
    notes = []
    for rid, row in rows.items():
        by_msg = {}
        for e in row["errors"]:
            by_msg.setdefault(e["error"], []).append(e["run"])
        for msg, runs in by_msg.items():
            which = ", ".join(str(r) for r in runs if r)
            where = f" (run{'s' if len(runs) > 1 else ''} {which})" if which else ""
            notes.append(f"  {LABEL[rid]}{where}: {msg}")
    if notes:
        lines.append("")
        lines.append("notes (missing or failed runs; logs in " + os.path.join(args.out, "logs") + "):")
        lines.extend(notes)
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(args.out, "table.txt"), "w") as f:
        f.write(text + "\n")

    png = os.path.join(args.out, "chart.png")
    have_chart = chart(rows, meta, ceiling, png) if main_ran else False
    result = {
        "meta": meta,
        "units": {"mbps": "decimal MB/s (1e6 bytes/s) of the image's apparent size",
                  "rss_mib": "peak resident set, MiB (GNU time %M)",
                  "cpu_s": "user + system CPU seconds",
                  "stored_bytes": "du -sb of the repository (incremental rows: its growth)",
                  "bytes_read": "bytes the tool read: ferry's and fio's own count, restic's bytes processed",
                  "wall_s": "wall seconds (GNU time %e)",
                  "bytes_up": "S3 rows: bytes sent to the gateway, all targets (ferry's bytes_up; curl's size_upload)",
                  "rgw_cpu_s": "S3 rows: user + system CPU seconds of the Ceph daemons during the timed command"},
        "ceiling": {"mbps": ceiling, "fio_read_mbps": fio_r, "codec_mbps": codec,
                    "note": ceiling_note.lstrip("; ")},
        "rows": rows,
        "checks": checks,
        "incremental": None if not incr_ran else {
            "setup": meta.get("incremental"),
            "rows": [r[0] for r in INCR_ROWS],
            "targets": {"read_max_fraction": INCR_READ_MAX, "wall_max_fraction_of_full": INCR_WALL_MAX,
                        "min_x_restic": INCR_X_RESTIC, "scan_max_x_read": SCAN_X_READ,
                        "big_wall_max_s": BIG_WALL_MAX_S},
            "checks": inc_checks,
        },
        "s3": None if not s3_ran else {
            "setup": meta.get("s3"),
            "rows": [r[0] for r in S3_ROWS],
            "targets": {"min_x_ceiling": S3_X_CEILING, "min_x_restic": S3_X_RESTIC,
                        "max_fanout_cpu_x_one_target": S3_FANOUT_CPU},
            "checks": s3c,
        },
        "runs": raw,
        "chart": png if have_chart else None,
    }
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"\nwrote {os.path.join(args.out, 'results.json')}"
          + (f", {png}" if have_chart else "") + f", {os.path.join(args.out, 'table.txt')}")


if __name__ == "__main__":
    main()
