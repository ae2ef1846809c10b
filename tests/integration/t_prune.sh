#!/usr/bin/env bash
# forget, prune and locks on a real repository: snapshots removed by policy,
# their chunks deleted, everything left restores byte-identical; a backup that
# has listed the chunks it will reuse keeps prune out until it commits; stale
# locks (a killed backup) are removed, unreadable ones are not.
. "$(dirname "$0")/lib.sh"

# Background ferry processes: never leave one stopped behind a failed test.
bg=()
trap 'for p in "${bg[@]}"; do kill -KILL "$p" 2>/dev/null || true; done; cleanup' EXIT

R="$T/repo"
MiB=$((1024 * 1024))
$FERRY init --repo "$R" --chunk-size 1M >/dev/null

# files SUFFIX: every object of the repository with its size, sorted (a snapshot of its state)
files() { (cd "$R" && find . -type f -printf '%p %s\n' | sort) > "$T/files.$1"; }
same_files() { cmp -s "$T/files.$1" "$T/files.$2" || { diff "$T/files.$1" "$T/files.$2" | head >&2; fail "$3"; }; }
nlocks() { find "$R/locks" -type f 2>/dev/null | wc -l; }

# --- usage
for c in forget prune unlock; do
  $FERRY $c --help | grep -q "usage: ferry $c" || fail "$c --help"
done
rc=0; $FERRY forget --repo "$R" 2>"$T/err" || rc=$?
[ $rc = 2 ] && grep -q "no --keep-\* policy given" "$T/err" || fail "forget without a policy exited $rc: $(cat "$T/err")"
rc=0; $FERRY forget --repo "$R" --keep-daily 0 2>/dev/null || rc=$?
[ $rc = 2 ] || fail "--keep-daily 0 exited $rc, not 2"
rc=0; $FERRY prune --repo "$R" extra 2>/dev/null || rc=$?
[ $rc = 2 ] || fail "prune with an argument exited $rc, not 2"
ok "usage errors and --help"

# --- four generations of a changing 24 MiB volume: generation g rewrites MiB 6(g-1)..6g.
# Kept by keep-last 2: gen3 = [g1 g2 g3 base3] and gen4 = [g1 g2 g3 g4], so the
# 12 chunks of base1 and base2 (only in gen1 and gen2) become unreferenced.
img="$T/vol.img"
prand $((24 * MiB)) base > "$img"
ids=()
for g in 1 2 3 4; do
  prand $((6 * MiB)) "gen$g" | dd of="$img" bs=1M seek=$(((g - 1) * 6)) conv=notrunc status=none
  cp "$img" "$T/gen$g.img"
  ids+=("$($FERRY backup --repo "$R" --volume vol "$img")")
done
make_fs_image "$T/fs.img" 32 7
fsid=$($FERRY backup --repo "$R" --volume fs "$T/fs.img")
[ "$($FERRY prune --repo "$R" --dry-run --json | jq .chunks_removed)" = 0 ] || fail "prune would remove chunks before any forget"

# forget --dry-run: says what would go, removes nothing
files before-dry
j=$($FERRY forget --repo "$R" --volume vol --keep-last 2 --keep-daily 1 --dry-run --json)
files after-dry
same_files before-dry after-dry "forget --dry-run changed the repository"
[ "$(jq -r '[.volumes[].remove[].id] | sort | join(" ")' <<<"$j")" = "$(printf '%s\n' "${ids[0]}" "${ids[1]}" | sort | tr '\n' ' ' | sed 's/ $//')" ] ||
  fail "dry run would not remove exactly gen1 and gen2: $j"
[ "$(jq .dry_run <<<"$j")" = true ] || fail "dry run not marked: $j"
ok "forget --dry-run removes nothing"

# forget for real: the newest is kept as last and daily, the next as last
j=$($FERRY forget --repo "$R" --volume vol --keep-last 2 --keep-daily 1 --json)
[ "$(jq -c '[.volumes[] | select(.volume == "vol") | .keep[] | [.id, (.reasons | join(","))]]' <<<"$j")" = \
  "[[\"${ids[3]}\",\"last,daily\"],[\"${ids[2]}\",\"last\"]]" ] || fail "unexpected keep set or reasons: $j"
[ "$(jq .removed <<<"$j")" = 2 ] || fail "forget did not remove 2: $j"
$FERRY snapshots --repo "$R" --json > "$T/snaps.json"
[ "$(jq length "$T/snaps.json")" = 3 ] || fail "3 snapshots should remain: $(cat "$T/snaps.json")"
for id in "${ids[0]}" "${ids[1]}"; do
  ! jq -r '.[].id' "$T/snaps.json" | grep -qx "$id" || fail "forgotten snapshot $id still listed"
  expect_fail "restore of forgotten snapshot ${id:0:8}" "no snapshot $id" $FERRY restore --repo "$R" "$id" "$T/x.img"
done
$FERRY snapshots --repo "$R" | grep -q "${ids[0]:0:8}" && fail "forgotten snapshot in the table"
ok "forget removed gen1 and gen2, kept gen3 (last) and gen4 (last,daily) and the fs volume"

# a manifest that cannot be read stops prune (and forget) before any deletion
man="$R/snapshots/$fsid"
cp "$man" "$T/man.bak"
truncate -s $(($(stat -c %s "$man") - 5)) "$man"
files before-bad
expect_fail "prune with a corrupt manifest" "manifest of snapshot $fsid is corrupt: .*prune stopped before deleting anything" \
  $FERRY prune --repo "$R"
expect_fail "forget with a corrupt manifest" "manifest of snapshot $fsid is corrupt: .*nothing was removed" \
  $FERRY forget --repo "$R" --keep-last 1
files after-bad
same_files before-bad after-bad "prune or forget deleted something with a manifest unreadable"
[ "$(nlocks)" = 0 ] || fail "a failed prune left its lock"
cp "$T/man.bak" "$man"

# prune --dry-run: counts, deletes nothing
files before-dry
j=$($FERRY prune --repo "$R" --dry-run --json)
files after-dry
same_files before-dry after-dry "prune --dry-run changed the repository"
[ "$(jq .chunks_removed <<<"$j")" = 12 ] || fail "dry run should count 12 chunks: $j"
$FERRY prune --repo "$R" --dry-run --verbose | grep -c "^would remove chunk [0-9a-f]\{64\}" | grep -qx 12 ||
  fail "prune --dry-run --verbose should list 12 chunks"
ok "prune --dry-run: $j"

# prune: 12 chunks go, the repository shrinks by at least their 12 MiB
size0=$(du -sb "$R" | cut -f1)
j=$($FERRY prune --repo "$R" --json)
size1=$(du -sb "$R" | cut -f1)
[ "$(jq .chunks_removed <<<"$j")" = 12 ] || fail "prune should remove 12 chunks: $j"
[ "$(jq .bytes_removed <<<"$j")" -ge $((12 * MiB)) ] || fail "bytes freed too small: $j"
[ $((size0 - size1)) -ge $((12 * MiB)) ] || fail "repository shrank by $((size0 - size1)) bytes only ($size0 -> $size1)"
[ "$($FERRY prune --repo "$R" --json | jq .chunks_removed)" = 0 ] || fail "a second prune removed more"
ok "prune removed 12 chunks: $size0 -> $size1 bytes"

$FERRY restore --repo "$R" "${ids[2]}" "$T/r3.img" && cmp "$T/gen3.img" "$T/r3.img" || fail "gen3 differs after prune"
$FERRY restore --repo "$R" "${ids[3]}" "$T/r4.img" && cmp "$T/gen4.img" "$T/r4.img" || fail "gen4 differs after prune"
$FERRY restore --repo "$R" "$fsid" "$T/rfs.img" && cmp "$T/fs.img" "$T/rfs.img" || fail "fs volume differs after prune"
$FERRY check --repo "$R" --read-data --json > "$T/check.json" || fail "check --read-data after prune: $(cat "$T/check.json")"
[ "$(jq .chunks_unreferenced "$T/check.json")" = 0 ] || fail "unreferenced chunks left: $(cat "$T/check.json")"
ok "every remaining snapshot restores byte-identical; check --read-data passes"

# --- the race: S's chunks are unreferenced; a backup of the same data lists them
# (it will dedupe against them) and stops; prune must not run until it commits.
prand $((8 * MiB)) race-s > "$T/s.img"
sid=$($FERRY backup --repo "$R" --volume race "$T/s.img")
prand $((2 * MiB)) race-other > "$T/other.img"
$FERRY backup --repo "$R" --volume race "$T/other.img" >/dev/null
[ "$($FERRY forget --repo "$R" --volume race --keep-last 1 --json | jq -r '.volumes[0].remove[0].id')" = "$sid" ] ||
  fail "forget did not remove S"
n=$($FERRY prune --repo "$R" --dry-run --json | jq .chunks_removed)
[ "$n" -ge 8 ] || fail "S's chunks should be unreferenced now (prune would remove $n)"

FERRY_TEST_STOP_AT=listed $FERRY backup --repo "$R" --volume race --json "$T/s.img" > "$T/race.json" 2>"$T/race.err" &
bpid=$!
bg+=("$bpid")
wait_stopped "$bpid"
[ "$(nlocks)" = 1 ] || fail "the stopped backup should hold one lock, found $(nlocks)"
files before-race
rc=0; $FERRY prune --repo "$R" >"$T/out" 2>"$T/err" || rc=$?
[ $rc = 1 ] || fail "prune during the backup exited $rc, not 1: $(cat "$T/err")"
grep -qE "prune failed: repository is locked by backup \(shared\) on host $(uname -n) pid $bpid since [0-9T:-]+Z \(lock [0-9a-f]{32}\); if that process is gone, run 'ferry unlock'" "$T/err" ||
  fail "prune's error does not name the backup's lock: $(cat "$T/err")"
files after-race
same_files before-race after-race "prune deleted something while a backup held its lock"
[ "$(nlocks)" = 1 ] || fail "the refused prune left its own lock behind"
ok "prune refused while the backup held its lock: $(cat "$T/err")"

kill -CONT "$bpid"
rc=0; wait "$bpid" || rc=$?
[ $rc = 0 ] || fail "the backup failed after it was continued ($rc): $(cat "$T/race.err")"
[ "$(jq .chunks_new "$T/race.json")" = 0 ] && [ "$(jq .chunks_dedup "$T/race.json")" = 8 ] ||
  fail "the backup should have reused all 8 of S's chunks: $(cat "$T/race.json")"
[ "$(nlocks)" = 0 ] || fail "the finished backup left its lock"
rid=$(jq -r .snapshot_id "$T/race.json")
$FERRY check --repo "$R" --read-data >/dev/null || fail "check --read-data after the race"
$FERRY restore --repo "$R" "$rid" "$T/race-out.img" && cmp "$T/s.img" "$T/race-out.img" || fail "the raced backup does not restore"
ok "the backup completed on S's chunks, restores byte-identical, check --read-data passes"

# --- a backup killed while holding its lock leaves it; it is stale (same host, pid
# gone): a backup ignores it, prune removes it, says so, and proceeds.
kill_stopped_backup() {
  FERRY_TEST_STOP_AT=listed $FERRY backup --repo "$R" --volume killed "$T/gen1.img" >/dev/null 2>&1 &
  kpid=$!
  bg+=("$kpid")
  wait_stopped "$kpid"
  kill -KILL "$kpid"
  rc=0; { wait "$kpid"; } 2>/dev/null || rc=$? # (bash would report the kill on stderr)
  [ $rc = 137 ] || fail "killed backup exited $rc"
  [ "$(nlocks)" = 1 ] || fail "the killed backup should leave its lock"
}
kill_stopped_backup
$FERRY backup --repo "$R" --volume other "$T/other.img" >/dev/null || fail "a backup should ignore a stale lock"
rc=0; $FERRY prune --repo "$R" >"$T/out" 2>"$T/err" || rc=$?
[ $rc = 0 ] || fail "prune with a stale lock exited $rc: $(cat "$T/err")"
grep -qE "^ferry: removed stale lock locks/[0-9a-f]{32}: backup \(shared\) on host $(uname -n) pid $kpid since .*\(process $kpid is gone from this host\)" "$T/err" ||
  fail "prune did not say it removed the stale lock: $(cat "$T/err")"
grep -q "removed" "$T/out" || fail "prune did not proceed: $(cat "$T/out")"
[ "$(nlocks)" = 0 ] || fail "stale lock still there"
ok "prune removed the killed backup's stale lock: $(cat "$T/err")"

# ferry unlock removes a stale lock, and says which
kill_stopped_backup
$FERRY unlock --repo "$R" > "$T/out"
grep -qE "^removed stale lock locks/[0-9a-f]{32}: backup \(shared\) .* pid $kpid .*\(process $kpid is gone from this host\)" "$T/out" ||
  fail "unlock output: $(cat "$T/out")"
[ "$(nlocks)" = 0 ] || fail "unlock left the stale lock"
$FERRY unlock --repo "$R" | grep -q "^no locks" || fail "unlock on a clean repository"
ok "unlock: $(head -n 1 "$T/out")"

# --- an exclusive lock held (prune stopped right after taking it): backups and
# forget fail naming it; unlock keeps it (live); prune then finishes.
FERRY_TEST_STOP_AT=locked $FERRY prune --repo "$R" >"$T/prune.out" 2>"$T/prune.err" &
ppid_=$!
bg+=("$ppid_")
wait_stopped "$ppid_"
files before-ex
rc=0; $FERRY backup --repo "$R" --volume blocked "$T/other.img" >/dev/null 2>"$T/blocked.err" || rc=$?
[ $rc = 1 ] || fail "backup under an exclusive lock exited $rc, not 1: $(cat "$T/blocked.err")"
grep -qE "backup failed: repository is locked by prune \(exclusive\) on host $(uname -n) pid $ppid_ since .*; if that process is gone, run 'ferry unlock'" "$T/blocked.err" ||
  fail "backup's error does not name prune's lock: $(cat "$T/blocked.err")"
expect_fail "forget under an exclusive lock" "forget failed: repository is locked by prune \(exclusive\)" \
  $FERRY forget --repo "$R" --keep-last 1
$FERRY unlock --repo "$R" | grep -q "^kept live lock locks/[0-9a-f]\{32\}: prune (exclusive)" || fail "unlock should keep the live lock"
files after-ex
same_files before-ex after-ex "something changed the repository under prune's exclusive lock"
kill -CONT "$ppid_"
rc=0; wait "$ppid_" || rc=$?
[ $rc = 0 ] || fail "the stopped prune failed after it was continued: $(cat "$T/prune.err")"
[ "$(nlocks)" = 0 ] || fail "prune left its lock"
$FERRY backup --repo "$R" --volume blocked "$T/other.img" >/dev/null || fail "backup after prune released its lock"
ok "backup and forget refused under prune's exclusive lock: $(cat "$T/blocked.err")"

# --- an unreadable lock: prune refuses naming it (it cannot tell whose it is),
# plain unlock keeps it, unlock --remove-all removes it
kill_stopped_backup
lock=$(cd "$R" && find locks -type f)
python3 - "$R/$lock" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
b[-5] ^= 0x10
open(p, 'wb').write(b)
PY
expect_fail "prune with a damaged lock" "prune failed: lock $lock is unreadable \(authentication failed" $FERRY prune --repo "$R"
printf 'garbage, not a ferry lock object\n' > "$R/locks/0123456789abcdef0123456789abcdef"
expect_fail "backup with a garbage lock" "lock locks/[0-9a-f]{32} is unreadable .*'ferry unlock --remove-all'" \
  $FERRY backup --repo "$R" --volume x "$T/other.img"
$FERRY unlock --repo "$R" > "$T/out"
grep -q "^kept unreadable lock $lock" "$T/out" || fail "plain unlock should keep an unreadable lock: $(cat "$T/out")"
[ "$(nlocks)" = 2 ] || fail "plain unlock removed an unreadable lock"
j=$($FERRY unlock --repo "$R" --remove-all --json)
[ "$(jq .removed <<<"$j")" = 2 ] && [ "$(jq '[.locks[] | select(.corrupt)] | length' <<<"$j")" = 2 ] ||
  fail "unlock --remove-all: $j"
[ "$(nlocks)" = 0 ] || fail "unlock --remove-all left locks"
$FERRY prune --repo "$R" >/dev/null || fail "prune after unlock --remove-all"
$FERRY check --repo "$R" --read-data >/dev/null || fail "final check --read-data"
ok "unreadable locks: prune refuses naming them, unlock --remove-all clears them"

# --- a backup whose lock was removed under it (unlock --remove-all, or a prune
# elsewhere that judged it stale) does not commit: its chunks are unprotected.
nsnap=$($FERRY snapshots --repo "$R" --json | jq length)
FERRY_TEST_STOP_AT=listed $FERRY backup --repo "$R" --volume lost "$T/gen1.img" >/dev/null 2>"$T/lost.err" &
lpid=$!
bg+=("$lpid")
wait_stopped "$lpid"
$FERRY unlock --repo "$R" --remove-all >/dev/null
kill -CONT "$lpid"
rc=0; wait "$lpid" || rc=$?
[ $rc = 1 ] || fail "backup that lost its lock exited $rc, not 1"
grep -qE "backup failed: lock locks/[0-9a-f]{32} was removed by another process" "$T/lost.err" ||
  fail "backup that lost its lock: $(cat "$T/lost.err")"
[ "$($FERRY snapshots --repo "$R" --json | jq length)" = "$nsnap" ] || fail "a backup without its lock committed a snapshot"
ok "a backup that lost its lock does not commit: $(cat "$T/lost.err")"
