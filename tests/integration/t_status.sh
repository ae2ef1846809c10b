#!/usr/bin/env bash
# ferry status: RPO per volume and repository rises with time and falls when
# a backup (or a copy) lands there; RTO comes from recorded drills (the last
# that passed, and its estimate for the newest snapshot's data); objectives
# breached exit 3 with one line each; --json is valid JSON with the
# documented fields; a copy that cannot be read exits 1 and the rest is still
# shown; a tampered drill record is said and skipped; bad usage exits 2.
# Time is driven with FERRY_TEST_NOW (test-only: "now" in Unix seconds), so
# nothing waits for the clock except one bounded wait for the next second.
source "$(dirname "$0")/lib.sh"
need_root "a failed drill's check attaches a loop device"

P=$T/primary
C=$T/copy
S=$T/scratch
mkdir -p "$S"
"$FERRY" init --repo "$P" >/dev/null
"$FERRY" init --repo "$C" --copy-of "$P" >/dev/null

img_a=$T/a.img img_b=$T/b.img
prand $((8 << 20)) 1 >"$img_a"
prand $((4 << 20)) 2 >"$img_b"
"$FERRY" backup --repo "$P" --copy-to "$C" --volume a "$img_a" >/dev/null
"$FERRY" backup --repo "$P" --volume b "$img_b" >/dev/null

# the creation time (Unix seconds, fractional) of volume V's newest snapshot on repository R
snap_time() { "$FERRY" snapshots --repo "$1" --volume "$2" --json | jq -r '.[-1].time' | xargs -I{} date -d {} +%s; }
# status ARGS... -> $T/st.json, exit status in $st_rc
status_json() {
  st_rc=0
  "$FERRY" status "$@" --json >"$T/st.json" 2>"$T/st.err" || st_rc=$?
  jq -e . "$T/st.json" >/dev/null || fail "status --json is not JSON (exit $st_rc): $(cat "$T/st.json" "$T/st.err")"
}
# row VOLUME ROLE FIELD
row() { jq -r --arg v "$1" --arg r "$2" ".rows[] | select(.volume == \$v and .role == \$r) | $3" "$T/st.json"; }

ta=$(snap_time "$P" a)

# --- the documented fields
status_json --repo "$P" --copy "$C"
[ "$st_rc" = 0 ] || fail "status: exit $st_rc: $(cat "$T/st.err")"
jq -e --arg p "$P" --arg c "$C" '
  (.time | test("Z$")) and .objectives == {"rpo_s": null, "rto_s": null} and .breached == false and .failed == false and
  (.targets | length == 2) and .targets[0] == {"repository": $p, "role": "primary", "ok": true, "error": "", "unreadable_snapshots": 0} and
  .targets[1].repository == $c and .targets[1].role == "copy" and
  ([.rows[] | [.volume, .role]] == [["a","primary"],["a","copy"],["b","primary"],["b","copy"]]) and
  ([.rows[0] | keys[]] | sort) == (["bad_drill_records","bytes","drill_records_error","last_drill","last_passed_drill",
     "ok","repository","role","rpo_breached","rpo_s","rto_breached","rto_estimate_s","rto_s","size","snapshot",
     "snapshot_time","snapshots","volume"] | sort) and
  .rows[0].size == 8388608 and .rows[0].bytes == 8388608 and .rows[0].snapshots == 1 and .rows[0].last_drill == null and
  .rows[0].rto_s == null and (.rows[0].rpo_s | type) == "number" and
  .rows[3].snapshot == null and .rows[3].rpo_s == null' "$T/st.json" >/dev/null ||
  fail "status --json fields: $(cat "$T/st.json")"
"$FERRY" status --repo "$P" --copy "$C" >"$T/st.txt" || fail "status (table)"
grep -qE "^a +primary [0-9a-f]{8} " "$T/st.txt" && grep -qE "^b +copy +- " "$T/st.txt" || fail "status table: $(cat "$T/st.txt")"
ok "status --json: every documented field, a row per volume and repository (b has none on the copy)"

# --- RPO rises with time ...
status_json --repo "$P" --copy "$C" --volume a
[ "$(jq '.rows | length' "$T/st.json")" = 2 ] || fail "--volume a: $(cat "$T/st.json")"
FERRY_TEST_NOW=$((ta + 100)) status_json --repo "$P" --volume a
r1=$(row a primary .rpo_s)
FERRY_TEST_NOW=$((ta + 5000)) status_json --repo "$P" --volume a
r2=$(row a primary .rpo_s)
[ "$r1" -ge 99 ] && [ "$r1" -le 100 ] && [ "$r2" -ge 4999 ] && [ "$r2" -le 5000 ] ||
  fail "RPO 100 s and 5000 s after the snapshot read $r1 and $r2"
ok "RPO rises with the clock: $r1 s, then $r2 s"

# ... breaches the objective (exit 3, one line per breach) ...
FERRY_TEST_NOW=$((ta + 7200)) status_json --repo "$P" --copy "$C" --rpo 1h
[ "$st_rc" = 3 ] || fail "RPO 2h against 1h: exit $st_rc: $(cat "$T/st.err")"
jq -e '.breached == true and .failed == false and .objectives.rpo_s == 3600 and
  ([.rows[] | select(.rpo_breached) | [.volume, .role]] == [["a","primary"],["a","copy"],["b","primary"],["b","copy"]])' \
  "$T/st.json" >/dev/null || fail "RPO breaches in JSON: $(cat "$T/st.json")"
[ "$(grep -c '^ferry: status: RPO of volume ' "$T/st.err")" = 4 ] && grep -q "RPO of volume b on copy $C: no snapshot there (objective 1h)" "$T/st.err" &&
  grep -qE "RPO of volume a on primary $P is (1h59m|2h), above the objective 1h" "$T/st.err" || fail "breach lines: $(cat "$T/st.err")"
FERRY_TEST_NOW=$((ta + 7200)) "$FERRY" status --repo "$P" --volume a --rpo 1h >"$T/st.txt" 2>/dev/null && fail "table: a breach exited 0"
grep -qE "^a +primary .* (1h59m|2h) BREACH " "$T/st.txt" || fail "the table does not mark the breach: $(cat "$T/st.txt")"
rc=0
FERRY_TEST_NOW=$((ta + 7200)) "$FERRY" status --repo "$P" --volume a --rpo 1h --quiet >"$T/st.txt" 2>"$T/st.err" || rc=$?
[ $rc = 3 ] && [ ! -s "$T/st.txt" ] && [ "$(wc -l <"$T/st.err")" = 1 ] || fail "--quiet with a breach: exit $rc, $(cat "$T/st.txt" "$T/st.err")"
FERRY_TEST_NOW=$((ta + 60)) status_json --repo "$P" --volume a --rpo 1h
[ "$st_rc" = 0 ] && [ "$(jq .breached "$T/st.json")" = false ] || fail "RPO 1m against 1h: exit $st_rc"
ok "an RPO above the objective exits 3 with one line per breach (a volume without a snapshot on a copy is one); below, 0"

# ... and falls when a backup lands (on the primary only: the copy stays behind)
for _ in $(seq 50); do [ "$(date +%s)" -gt "$((ta + 1))" ] && break; sleep 0.1; done  # the next snapshot is a second later
prand $((1 << 20)) 3 | dd of="$img_a" bs=1M seek=2 conv=notrunc status=none
"$FERRY" backup --repo "$P" --volume a "$img_a" >/dev/null
ta2=$(snap_time "$P" a)
now=$((ta2 + 100))
FERRY_TEST_NOW=$now status_json --repo "$P" --copy "$C" --volume a
rp=$(row a primary .rpo_s) rc_=$(row a copy .rpo_s)
[ "$rp" -ge 99 ] && [ "$rp" -le 100 ] && [ "$rc_" -gt "$rp" ] && [ "$(row a primary .snapshots)" = 2 ] ||
  fail "after a backup to the primary: RPO $rp there, $rc_ on the copy"
FERRY_TEST_NOW=$now status_json --repo "$P" --copy "$C" --volume a --rpo "${rp}s"
[ "$st_rc" = 3 ] && [ "$(row a primary .rpo_breached)" = false ] && [ "$(row a copy .rpo_breached)" = true ] ||
  fail "objective ${rp}s: exit $st_rc, primary $(row a primary .rpo_breached), copy $(row a copy .rpo_breached)"
"$FERRY" copy --from "$P" --to "$C" >/dev/null
FERRY_TEST_NOW=$now status_json --repo "$P" --copy "$C" --volume a --rpo "${rp}s"
[ "$st_rc" = 0 ] && [ "$(row a copy .rpo_s)" = "$rp" ] || fail "after the copy caught up: exit $st_rc, copy RPO $(row a copy .rpo_s)"
ok "RPO falls when a backup lands (primary $rp s, the copy still $rc_ s: breached at ${rp}s), and on the copy when ferry copy brings it"

# --- RTO: unknown without a drill (a breach of --rto), then from drill records
status_json --repo "$P" --volume a --rto 1h
[ "$st_rc" = 3 ] && [ "$(row a primary .rto_s)" = null ] && grep -q "RTO of volume a on primary $P: unknown, no drill that passed is recorded there" "$T/st.err" ||
  fail "no drill and --rto: exit $st_rc: $(cat "$T/st.err")"
"$FERRY" drill --repo "$P" --volume a --scratch-dir "$S" --record --json >"$T/d.json" || fail "drill --record"
status_json --repo "$P" --volume a --rto 1h
[ "$st_rc" = 0 ] || fail "a recorded drill and --rto 1h: exit $st_rc: $(cat "$T/st.err")"
jq -e --slurpfile d "$T/d.json" '
  .rows[0] as $r | $d[0] as $d |
  $r.last_drill.result == "ok" and $r.last_drill.snapshot == $d.snapshot and $r.last_drill.time == $d.time and
  ($r.rto_s - $d.restore_s | fabs) < 0.002 and ($r.rto_estimate_s - $r.rto_s | fabs) < 0.002 and
  $r.last_passed_drill == $r.last_drill and $r.last_drill.bytes == $d.bytes and $r.rto_breached == false' \
  "$T/st.json" >/dev/null || fail "RTO from the record: $(cat "$T/st.json") drill: $(cat "$T/d.json")"
ok "RTO is the recorded drill's restore time ($(row a primary .rto_s) s); no drill with --rto is a breach"

# the estimate follows the data of the newest snapshot at the drill's throughput
prand $((8 << 20)) 4 >"$T/a2.img"
truncate -s 16M "$T/a2.img"
prand $((8 << 20)) 5 | dd of="$T/a2.img" bs=1M seek=8 conv=notrunc status=none
"$FERRY" backup --repo "$P" --volume a "$T/a2.img" >/dev/null
status_json --repo "$P" --volume a
jq -e '.rows[0] as $r | $r.bytes == 16777216 and $r.last_drill.bytes == 8388608 and
  ($r.rto_estimate_s - 2 * $r.rto_s | fabs) < 0.004' "$T/st.json" >/dev/null ||
  fail "the estimate for twice the data: $(cat "$T/st.json")"
ok "the RTO estimate doubles with the data: $(row a primary .rto_s) s measured, $(row a primary .rto_estimate_s) s for the newest snapshot"

# a failed drill is recorded as the last drill; RTO stays the last that passed
rc=0
"$FERRY" drill --repo "$P" --volume a --scratch-dir "$S" --snapshot "$(jq -r .snapshot "$T/d.json")" --record \
  --check 'exit 5' >/dev/null 2>"$T/err" || rc=$?
[ $rc = 1 ] || fail "a drill whose check fails: exit $rc: $(cat "$T/err")"
status_json --repo "$P" --volume a
jq -e '.rows[0] as $r | $r.last_drill.result == "failed" and $r.last_drill.stage == "check" and
  $r.last_drill.check_status == 5 and $r.last_passed_drill.result == "ok" and $r.rto_s != null' "$T/st.json" >/dev/null ||
  fail "a failed drill in status: $(cat "$T/st.json")"
"$FERRY" status --repo "$P" --volume a >"$T/st.txt" || fail "status after a failed drill"
grep -qE "^a +primary .* FAILED [0-9-]+ " "$T/st.txt" || fail "the table does not show the failed drill: $(cat "$T/st.txt")"
ok "a failed drill is the last drill (FAILED, check status 5); RTO stays that of the last that passed"

# a tampered record is said and skipped: the older ones still count
newest=$(find "$P/drills" -type f | sort | tail -n 1)
printf '\x00' | dd of="$newest" bs=1 seek=40 conv=notrunc status=none
status_json --repo "$P" --volume a
[ "$st_rc" = 0 ] && [ "$(row a primary .bad_drill_records)" = 1 ] && [ "$(row a primary .last_passed_drill.result)" = ok ] &&
  grep -q "warning: drill records of volume a on $P: drill record drills/.* is corrupt" "$T/st.err" ||
  fail "a tampered record: exit $st_rc: $(cat "$T/st.err") $(cat "$T/st.json")"
ok "a tampered drill record is reported and skipped"

# --- a copy that cannot be read: exit 1, the rest still shown
status_json --repo "$P" --copy "$T/nowhere" --volume a
[ "$st_rc" = 1 ] && [ "$(jq '.targets[1].ok' "$T/st.json")" = false ] && [ "$(row a primary .snapshot)" != null ] &&
  grep -q "status: copy $T/nowhere: " "$T/st.err" || fail "an unreadable copy: exit $st_rc: $(cat "$T/st.err")"
expect_fail "a volume no repository holds" "no snapshot of volume 'zzz' in the repository" \
  "$FERRY" status --repo "$P" --volume zzz
ok "a copy that cannot be opened exits 1 with its line, the primary's rows still printed"

# --- bad usage: exit 2, one line
usage() {
  local what=$1; shift
  local rc=0
  "$FERRY" status "$@" >"$T/out" 2>"$T/err" || rc=$?
  [ "$rc" = 2 ] && [ "$(wc -l <"$T/err")" = 1 ] || fail "$what: exit $rc: $(cat "$T/err")"
  ok "$what: $(cat "$T/err")"
}
usage "--rpo without a unit" --repo "$P" --rpo 3600
usage "--rpo 0s" --repo "$P" --rpo 0s
usage "--rto with a bad unit" --repo "$P" --rto 1y
usage "an empty --copy" --repo "$P" --copy ''
usage "an abbreviated option" --repo "$P" --vol a
usage "an operand" --repo "$P" a
usage "no repository" --rpo 1h
