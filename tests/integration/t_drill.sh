#!/usr/bin/env bash
# ferry drill on real parts: a file:// repository, an image with a real ext4
# filesystem, real loop devices attached read-only, fsck -n as the check.
# A good drill passes with its numbers in --json; a damaged chunk object, a
# block changed on the disk after the restore, a check that fails (a real
# e2fsck on a damaged filesystem, and a command's own exit status) or times
# out each fail it with one line naming what; and after every one of them,
# after SIGTERM and SIGINT in the middle, and after a SIGKILL (cleaned by the
# next drill), nothing is left: no loop device bound to the scratch, no
# scratch file or directory.  Refusals (a scratch inside the repository, too
# little room, latest among several volumes) and bad usage.  --record writes
# a record that check, prune and forget leave alone; without it a drill
# writes nothing to the repository.
source "$(dirname "$0")/lib.sh"
need_root "loop devices (the drill's read-only attach)"
command -v e2fsck >/dev/null && command -v debugfs >/dev/null || skip "e2fsprogs (e2fsck, debugfs) is not installed"

R=$T/repo
S=$T/scratch            # every drill's --scratch-dir
mkdir -p "$S"
"$FERRY" init --repo "$R" >/dev/null

# what a drill left: loop devices bound to a file under $S, and anything in $S
leftovers() {
  losetup -n -l -O NAME,BACK-FILE 2>/dev/null | awk -v s="$S/" 'index($2, s) == 1 { print "bound: " $1 " " $2 }'
  find "$S" -mindepth 1 -printf 'left: %P\n'
}
clean() {
  local l
  l=$(leftovers)
  [ -z "$l" ] || fail "$1: the drill left $l"
}
# every file of the repository with its size and time: what a drill may not change
repo_state() { find "$1" -type f -printf '%P %s %T@\n' | sort; }
# wait (bounded) until file $1 exists
wait_file() {
  for _ in $(seq 600); do [ -e "$1" ] && return 0; sleep 0.1; done
  fail "$2: $1 never appeared"
}
gone() { ! kill -0 "$1" 2>/dev/null; }

img=$T/vol.img
make_fs_image "$img" 64 7
id=$("$FERRY" backup --repo "$R" --volume vol "$img")

# --- a good drill, with a check that proves what it was given
before=$(repo_state "$R")
chk='test "$(blockdev --getro {})" = 1 && test "$FERRY_DRILL_DEVICE" = {} && test "$FERRY_DRILL_SNAPSHOT" = '"$id"' && test "$FERRY_DRILL_VOLUME" = vol && fsck -n {}'
"$FERRY" drill --repo "$R" --scratch-dir "$S" --check "$chk" --json >"$T/d1.json" 2>"$T/d1.err" ||
  { cat "$T/d1.err" >&2; fail "a good drill failed"; }
jq -e . "$T/d1.json" >/dev/null || fail "drill --json is not JSON: $(cat "$T/d1.json")"
size=$(stat -c %s "$img")
jq -e --arg id "$id" --argjson size "$size" '
  .result == "ok" and .reason == "" and .stage == null and .snapshot == $id and .volume == "vol" and
  .size == $size and .bytes > 0 and .bytes <= .size and .blocks == 16 and .blocks_verified == 16 and
  .restore_s > 0 and .throughput_mbps > 0 and .rto_s == .restore_s and .verify_s > 0 and
  .check_status == 0 and .check_s >= 0 and .check_timed_out == false and (.device | test("^/dev/loop[0-9]+$")) and
  (.check_output | test("clean")) and .recorded == false and
  (.time | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$")) and (.snapshot_time | test("Z$"))' \
  "$T/d1.json" >/dev/null || fail "a good drill's JSON: $(cat "$T/d1.json")"
clean "a good drill"
[ "$(repo_state "$R")" = "$before" ] || fail "a drill without --record changed the repository"
ok "a good drill: restored $(jq -r .bytes "$T/d1.json") bytes in $(jq -r .restore_s "$T/d1.json") s (RTO), every block verified, fsck -n on a read-only $(jq -r .device "$T/d1.json") clean; nothing left, nothing written to the repository"

"$FERRY" drill --repo "$R" --scratch-dir "$S" --check 'fsck -n {}' >"$T/d2.out" 2>"$T/d2.err" || fail "drill (text)"
grep -qE "^drill of snapshot ${id:0:8} \(volume vol, .*\) passed: restored in .* \(RTO of the data .*\), 16 blocks read back and verified .*check 'fsck -n \{\}' on /dev/loop[0-9]+ exited 0" "$T/d2.out" ||
  fail "drill's summary line: $(cat "$T/d2.out" "$T/d2.err")"
clean "a drill (text)"
ok "the summary line names the snapshot, the RTO, the verification and the check"

# --- bad usage: exit 2, one line
usage() {
  local what=$1; shift
  local rc=0
  "$FERRY" drill "$@" >"$T/out" 2>"$T/err" || rc=$?
  [ "$rc" = 2 ] && [ "$(wc -l <"$T/err")" = 1 ] || fail "$what: exit $rc: $(cat "$T/err")"
  ok "$what: $(cat "$T/err")"
}
usage "an abbreviated option" --repo "$R" --scratch "$S"
usage "an unknown option" --repo "$R" --fsck
usage "a bad snapshot" --repo "$R" --snapshot zz9
usage "a bad timeout" --repo "$R" --check true --check-timeout 10
usage "a timeout without a check" --repo "$R" --check-timeout 10s
usage "an empty check" --repo "$R" --check ' '
usage "an operand" --repo "$R" "$id"
clean "bad usage"

# --- latest among several volumes: refused without --volume (restore's rule)
"$FERRY" backup --repo "$R" --volume other "$img" >/dev/null
expect_fail "latest with two volumes and no --volume" "more than one volume|volumes" \
  "$FERRY" drill --repo "$R" --scratch-dir "$S"
[ "$(wc -l <"$T/err")" = 1 ] || fail "latest refused in more than one line"
"$FERRY" drill --repo "$R" --scratch-dir "$S" --volume vol --json >"$T/d3.json" || fail "drill --volume vol"
[ "$(jq -r .snapshot "$T/d3.json")" = "$id" ] || fail "drill --volume vol drilled $(jq -r .snapshot "$T/d3.json")"
"$FERRY" drill --repo "$R" --scratch-dir "$S" --snapshot "${id:0:8}" --json >"$T/d4.json" || fail "drill --snapshot prefix"
[ "$(jq -r .snapshot "$T/d4.json")" = "$id" ] || fail "drill --snapshot ${id:0:8}"
clean "selection"
ok "latest with two volumes is refused without --volume; --volume and --snapshot PREFIX select"

# --- refusals: a scratch inside the repository, too little room
before=$(repo_state "$R")
expect_fail "a scratch directory inside the repository" "inside the repository" \
  "$FERRY" drill --repo "$R" --volume vol --scratch-dir "$R/snapshots"
[ "$(repo_state "$R")" = "$before" ] && [ -z "$(find "$R" -name 'ferry-drill*')" ] ||
  fail "a refused drill left something in the repository"
small=$T/small
mount_tmpfs "$small" 8M
expect_fail "a scratch directory with too little room" "has [0-9.]+ [KM]iB free; the drill needs [0-9.]+ MiB" \
  "$FERRY" drill --repo "$R" --volume vol --scratch-dir "$small"
[ -z "$(ls -A "$small")" ] || fail "a drill refused for room left $(ls -A "$small")"
expect_fail "a scratch directory that does not exist" "scratch directory $T/nowhere: No such file" \
  "$FERRY" drill --repo "$R" --volume vol --scratch-dir "$T/nowhere"

# --- a check that fails: its status and its output
expect_fail "a check that fails" "the check 'echo from-the-check; echo on-stderr >&2; exit 4' on /dev/loop[0-9]+ exited with status 4: on-stderr" \
  "$FERRY" drill --repo "$R" --volume vol --scratch-dir "$S" --check 'echo from-the-check; echo on-stderr >&2; exit 4'
grep -q "  | from-the-check" "$T/err" && grep -q "  | on-stderr" "$T/err" || fail "the failed check's output is not shown: $(cat "$T/err")"
[ "$(tail -n 1 "$T/err" | grep -c '^ferry: drill failed: ')" = 1 ] || fail "the last line does not say what failed"
clean "a check that fails"
rc=0
"$FERRY" drill --repo "$R" --volume vol --scratch-dir "$S" --check 'echo out; exit 3' --json >"$T/f.json" 2>/dev/null || rc=$?
[ $rc = 1 ] && jq -e '.result == "failed" and .stage == "check" and .check_status == 3 and .check_output == "out\n" and (.reason | test("status 3"))' "$T/f.json" >/dev/null ||
  fail "a failed check's JSON (exit $rc): $(cat "$T/f.json")"
clean "a check that fails (json)"

# a real one: an ext4 with an inode in use cleared; e2fsck -n -f says so and exits 4
bad=$T/badfs.img
cp "$img" "$bad"
debugfs -w -R "clri <12>" "$bad" >/dev/null 2>&1
rc=0; e2fsck -n -f "$bad" >/dev/null 2>&1 || rc=$?
[ $rc = 4 ] || skip "e2fsck -n -f of the damaged filesystem exits $rc, not 4, here"
"$FERRY" backup --repo "$R" --volume badfs "$bad" >/dev/null
expect_fail "e2fsck -n -f on a damaged filesystem" "the check 'e2fsck -n -f \{\}' on /dev/loop[0-9]+ exited with status 4" \
  "$FERRY" drill --repo "$R" --volume badfs --scratch-dir "$S" --check 'e2fsck -n -f {}'
grep -q "  | .*has deleted/unused inode 12" "$T/err" || fail "e2fsck's output is not shown: $(cat "$T/err")"
clean "a real fsck that fails"

# a check that outlives its timeout: stopped (SIGTERM), and it fails the drill
expect_fail "a check that times out" "timed out after 1s \(stopped, status 143\)" \
  "$FERRY" drill --repo "$R" --volume vol --scratch-dir "$S" --check "echo \$\$ > $T/slow.pid; exec sleep 600" --check-timeout 1s
gone "$(cat "$T/slow.pid")" || fail "the timed-out check is still running"
clean "a check that times out"
# what a check leaves running in its process group is killed when it exits
"$FERRY" drill --repo "$R" --volume vol --scratch-dir "$S" --check "sleep 600 & echo \$! > $T/bg.pid; exit 0" >/dev/null ||
  fail "a check that left a process behind"
for _ in $(seq 100); do gone "$(cat "$T/bg.pid")" && break; sleep 0.1; done
gone "$(cat "$T/bg.pid")" || fail "the process the check left behind is still running"
clean "a check that left a process"
ok "a check's failure, a real fsck's, a timeout, and what a check leaves running: handled, nothing left"

# --- a damaged chunk object: the drill fails naming it
R2=$T/repo2
"$FERRY" init --repo "$R2" >/dev/null
id2=$("$FERRY" backup --repo "$R2" --volume vol "$img")
chunk=$(find "$R2/chunks" -type f | sort | head -n 1)
cname=$(basename "$chunk")
printf '\xff' | dd of="$chunk" bs=1 seek=200 conv=notrunc status=none
expect_fail "a damaged chunk" "drill failed: chunk $cname is corrupt: .*\(block [0-9]+, offset [0-9]+\)" \
  "$FERRY" drill --repo "$R2" --scratch-dir "$S" --check 'fsck -n {}'
[ "$(wc -l <"$T/err")" = 1 ] || fail "a damaged chunk: more than one line: $(cat "$T/err")"
rc=0
"$FERRY" drill --repo "$R2" --scratch-dir "$S" --json >"$T/dmg.json" 2>/dev/null || rc=$?
[ $rc = 1 ] && jq -e --arg c "$cname" --arg id "$id2" '.result == "failed" and .stage == "restore" and .snapshot == $id and (.reason | contains($c)) and .check_status == null' "$T/dmg.json" >/dev/null ||
  fail "a damaged chunk's JSON (exit $rc): $(cat "$T/dmg.json")"
clean "a damaged chunk"
ok "a byte flipped in chunk object ${cname:0:16}...: the drill fails naming the chunk and its block"

# --- what restore cannot see: a block changed on the disk after it was
# written.  The drill reads the image back and names the block.
FERRY_TEST_STOP_AT=verifying "$FERRY" drill --repo "$R" --volume vol --scratch-dir "$S" 2>"$T/v.err" &
p=$!
wait_stopped $p "verify"
simg=$(find "$S" -name '*.img' | head -n 1)
[ -n "$simg" ] || fail "no scratch image while the drill is stopped"
printf 'X' | dd of="$simg" bs=1 seek=$((5 * 4194304 + 12345)) conv=notrunc status=none
sync "$simg"
kill -CONT $p
rc=0; wait $p || rc=$?
[ $rc = 1 ] && grep -q "drill failed: block 5 (offset 20971520, chunk [^)]*) of the scratch image reads back wrong: crc32c [0-9a-f]\{8\}, the manifest says [0-9a-f]\{8\}" "$T/v.err" ||
  fail "a block changed after the restore: exit $rc: $(cat "$T/v.err")"
clean "a block changed after the restore"
ok "a block changed on the disk after the restore: the read-back names block 5"

# --- signals in the middle: the scratch goes, the process dies of the signal
# SIGTERM while restoring
FERRY_TEST_STOP_AT=restoring "$FERRY" drill --repo "$R" --volume vol --scratch-dir "$S" --check 'fsck -n {}' 2>"$T/s1.err" &
p=$!
wait_stopped $p "SIGTERM while restoring"
[ -n "$(find "$S" -name '*.ferry-restore')" ] || fail "no restore in progress under $S"
kill -TERM $p; kill -CONT $p
rc=0; wait $p || rc=$?
[ $rc = 143 ] && grep -q "drill interrupted by SIGTERM: the scratch is removed" "$T/s1.err" || fail "SIGTERM while restoring: exit $rc: $(cat "$T/s1.err")"
clean "SIGTERM while restoring"
# SIGINT while verifying
FERRY_TEST_STOP_AT=verifying "$FERRY" drill --repo "$R" --volume vol --scratch-dir "$S" 2>"$T/s2.err" &
p=$!
wait_stopped $p "SIGINT while verifying"
kill -INT $p; kill -CONT $p
rc=0; wait $p || rc=$?
[ $rc = 130 ] && grep -q "drill interrupted by SIGINT" "$T/s2.err" || fail "SIGINT while verifying: exit $rc: $(cat "$T/s2.err")"
clean "SIGINT while verifying"
# SIGTERM while the check runs, the device attached
rm -f "$T/started"
"$FERRY" drill --repo "$R" --volume vol --scratch-dir "$S" --check "echo \$\$ > $T/chk.pid; touch $T/started; exec sleep 600" 2>"$T/s3.err" &
p=$!
wait_file "$T/started" "SIGTERM during the check"
[ -n "$(leftovers | grep '^bound: ')" ] || fail "no loop device bound to the scratch while the check runs"
kill -TERM $p
rc=0; wait $p || rc=$?
[ $rc = 143 ] || fail "SIGTERM during the check: exit $rc: $(cat "$T/s3.err")"
gone "$(cat "$T/chk.pid")" || fail "the check is still running after the drill was stopped"
clean "SIGTERM during the check"
ok "SIGTERM while restoring, SIGINT while verifying, SIGTERM during the check: the drill dies of the signal, nothing left"

# SIGKILL cannot be caught: the loop device unbinds by itself (autoclear), the
# scratch directory stays, and the next drill there removes it
rm -f "$T/started"
"$FERRY" drill --repo "$R" --volume vol --scratch-dir "$S" --check "echo \$\$ > $T/k.pid; touch $T/started; exec sleep 600" 2>/dev/null &
p=$!
wait_file "$T/started" "SIGKILL"
kill -KILL $p
wait $p 2>/dev/null || true
kill "$(cat "$T/k.pid")" 2>/dev/null || true
for _ in $(seq 100); do [ -z "$(leftovers | grep '^bound: ')" ] && break; sleep 0.1; done
[ -z "$(leftovers | grep '^bound: ')" ] || fail "a loop device stays bound after SIGKILL: $(leftovers)"
[ -n "$(find "$S" -mindepth 1 -maxdepth 1 -name 'ferry-drill.*')" ] || fail "SIGKILL: no scratch directory left (expected one)"
"$FERRY" drill --repo "$R" --volume vol --scratch-dir "$S" --json >"$T/k.json" || fail "the drill after a SIGKILL"
[ "$(jq -r .stale_scratch_removed "$T/k.json")" = 1 ] || fail "the next drill did not remove the killed one's scratch: $(cat "$T/k.json")"
clean "the drill after a SIGKILL"
ok "SIGKILL: the loop device unbound by itself; the next drill removed the scratch directory"

# --- --record: a record the other commands leave alone
"$FERRY" drill --repo "$R" --volume vol --scratch-dir "$S" --record --json >"$T/r.json" || fail "drill --record"
[ "$(jq -r .recorded "$T/r.json")" = true ] || fail "drill --record: $(cat "$T/r.json")"
nrec=$(find "$R/drills" -type f | wc -l)
[ "$nrec" = 1 ] || fail "drill --record wrote $nrec objects under drills/"
rec=$(find "$R/drills" -type f)
[[ "$rec" =~ /drills/[0-9a-f]{32}/[0-9a-f]{32}$ ]] || fail "the record's key: $rec"
! grep -qa "vol" "$rec" || fail "the record reveals the volume's name"
"$FERRY" check --repo "$R" --read-data >"$T/c.out" 2>&1 || fail "check --read-data with a drill record: $(cat "$T/c.out")"
grep -q "no problems" "$T/c.out" || fail "check: $(cat "$T/c.out")"
prand $((4 << 20)) 8 | dd of="$img" bs=1M seek=20 conv=notrunc status=none
"$FERRY" backup --repo "$R" --volume vol "$img" >/dev/null
"$FERRY" forget --repo "$R" --keep-last 1 --json >"$T/fg.json" || fail "forget"
[ "$(jq .removed "$T/fg.json")" = 1 ] ||
  fail "forget removed nothing: $(cat "$T/fg.json")"
"$FERRY" prune --repo "$R" >/dev/null || fail "prune"
[ -f "$rec" ] || fail "forget or prune removed the drill record"
"$FERRY" check --repo "$R" >/dev/null || fail "check after forget and prune"
ok "drill --record: one sealed object under drills/ (the volume's name not in it); check, forget and prune leave it"

# a volume keeps its newest 16 records
small_img=$T/small.img
prand $((1 << 20)) 99 >"$small_img"
"$FERRY" backup --repo "$R" --volume tiny "$small_img" >/dev/null
for i in $(seq 18); do
  "$FERRY" drill --repo "$R" --volume tiny --scratch-dir "$S" --record --quiet >/dev/null || fail "drill --record #$i"
done
n=$(find "$R/drills" -type f | wc -l)
[ "$n" = 17 ] || fail "after 18 drills of tiny and 1 of vol, $n records (want 16 + 1)"
clean "18 recorded drills"
ok "a volume keeps its newest 16 drill records; another volume's are left alone"
