#!/usr/bin/env bash
# Backing up a mounted filesystem (issue 13, item 13): without --freeze, a
# source mounted read-write gets one warning line (and a --json warning);
# with --freeze MOUNTPOINT the filesystem is frozen for the backup (another
# process's write waits, and the snapshot does not have it) and thawed after
# success, after a failure, and after SIGTERM or SIGINT.  A freeze that
# cannot be right (another filesystem, the repository on the frozen one,
# already frozen by someone else) is refused and freezes or thaws nothing.
# Real loop device, real ext4.
. "$(dirname "$0")/lib.sh"
need_root "loop devices and mounts"
command -v fsfreeze >/dev/null || skip "fsfreeze (util-linux) is not installed"

R="$T/repo"
$FERRY init --repo "$R" --chunk-size 1M >/dev/null
truncate -s 64M "$T/fs.img"
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$T/fs.img"
dev=$(new_loop "$T/fs.img")
M="$T/mnt"
mkdir "$M"
mount "$dev" "$M" || skip "cannot mount ext4"
_mounts+=("$M")
prand $((4 * 1024 * 1024)) data > "$M/data"
sync
# thawed: FITHAW of a filesystem that is not frozen fails (EINVAL); if it was
# frozen, this thaws it (the test goes on) and says so
is_thawed() { ! fsfreeze -u "$M" 2>/dev/null; }

# --- the warning
$FERRY backup --repo "$R" --volume fs "$dev" >/dev/null 2>"$T/err" || fail "backup of a mounted device: $(cat "$T/err")"
[ "$(grep -c warning "$T/err")" = 1 ] || fail "not one warning line: $(cat "$T/err")"
grep -q "warning: $dev is mounted read-write at $M (ext4): the copy is crash-consistent at best (--freeze $M freezes it during the backup)" "$T/err" ||
  fail "the warning does not name the mount: $(cat "$T/err")"
ok "warning: $(cat "$T/err")"
$FERRY backup --repo "$R" --volume fs --json "$dev" >"$T/b.json" 2>/dev/null
jq -e --arg m "$M" '.warnings | length == 1 and (.[0] | contains("mounted read-write at " + $m))' "$T/b.json" >/dev/null ||
  fail "--json has no warning: $(cat "$T/b.json")"
$FERRY backup --repo "$R" --volume fs-img "$T/fs.img" >/dev/null 2>"$T/err"
grep -q "warning: $T/fs.img (attached as $dev) is mounted read-write at $M" "$T/err" ||
  fail "an image file attached and mounted: no warning: $(cat "$T/err")"
$FERRY backup --repo "$R" --volume fs --quiet "$dev" >/dev/null 2>"$T/err"
grep -q "warning: $dev is mounted read-write" "$T/err" || fail "--quiet hid the warning"
ok "the warning in --json, for an attached image file, and with --quiet"

# --- --freeze: a write by another process waits until the backup is done
FERRY_TEST_STOP_AT=listed $FERRY backup --repo "$R" --volume fs --freeze "$M" --json "$dev" >"$T/f.json" 2>"$T/f.err" &
b=$!
wait_state $b T || fail "the backup did not stop at its hook: $(cat "$T/f.err")"
sh -c 'echo written > "$1/late"' _ "$M" &
w=$!
wait_state $w D || fail "a write to the frozen filesystem did not block"
[ ! -e "$M/late" ] || fail "the blocked write created its file"
ok "frozen: a write by another process blocks (state D, its file not created)"
kill -CONT $b
wait $b || fail "backup --freeze failed: $(cat "$T/f.err")"
wait $w || fail "the blocked write failed after the thaw"
[ "$(cat "$M/late")" = written ] || fail "the write after the thaw"
is_thawed || fail "the filesystem stayed frozen after a successful backup"
grep -q warning "$T/f.err" && fail "a warning although --freeze froze the filesystem: $(cat "$T/f.err")"
jq -e --arg m "$M" '.frozen == $m and (.warnings | length == 0)' "$T/f.json" >/dev/null || fail "--json: $(cat "$T/f.json")"
# the snapshot is the filesystem as it was frozen: without the file written meanwhile
$FERRY restore --repo "$R" "$(jq -r .snapshot_id "$T/f.json")" "$T/frozen.img"
e2fsck -fn "$T/frozen.img" >/dev/null 2>&1 || fail "the frozen snapshot's ext4 is not clean"
debugfs -R "stat /late" "$T/frozen.img" 2>&1 | grep -q "File not found" || fail "the frozen snapshot has the file written after the freeze"
debugfs -R "cat /data" "$T/frozen.img" 2>/dev/null | cmp - "$M/data" || fail "the frozen snapshot's data file differs"
ok "thawed after success; the snapshot is clean (e2fsck -n) and lacks the write that waited"

# --- thawed after a failure (inside the backup, after the freeze)
expect_fail "backup --freeze that fails" "no snapshot 0bad0bad" \
  $FERRY backup --repo "$R" --volume fs --freeze "$M" --parent 0bad0bad "$dev"
is_thawed || fail "the filesystem stayed frozen after a failed backup"
ok "thawed after a failure"

# --- thawed after SIGTERM and SIGINT
for sig in TERM INT; do
  FERRY_TEST_STOP_AT=listed $FERRY backup --repo "$R" --volume fs --freeze "$M" "$dev" >/dev/null 2>&1 &
  b=$!
  wait_state $b T || fail "SIG$sig: the backup did not stop at its hook"
  if fsfreeze -f "$M" 2>/dev/null; then fsfreeze -u "$M"; fail "SIG$sig: the filesystem was not frozen while the backup ran"; fi
  kill -$sig $b
  kill -CONT $b
  rc=0; wait $b || rc=$?
  [ $rc = $((128 + $(kill -l $sig))) ] || fail "SIG$sig: the backup exited $rc"
  is_thawed || fail "the filesystem stayed frozen after SIG$sig"
  echo ok > "$M/after-$sig" || fail "write after SIG$sig"
  ok "thawed after SIG$sig (exit $rc)"
done
$FERRY unlock --repo "$R" >/dev/null   # the killed backups' locks (their process is gone)

# --- freezes that are refused: nothing frozen, nothing thawed
mount_tmpfs "$T/other" 4M
expect_fail "--freeze of another filesystem" "--freeze $T/other: the filesystem mounted there \(tmpfs, tmpfs\) is not on $dev: nothing frozen" \
  $FERRY backup --repo "$R" --volume fs --freeze "$T/other" "$dev"
expect_fail "--freeze of a directory that is no mount point" "--freeze $T: not a mount point" \
  $FERRY backup --repo "$R" --volume fs --freeze "$T" "$dev"
$FERRY init --repo "$M/repo" >/dev/null
expect_fail "--freeze with the repository on the frozen filesystem" "the repository $M/repo is on that filesystem" \
  $FERRY backup --repo "$M/repo" --volume fs --freeze "$M" "$dev"
is_thawed || fail "a refused --freeze left the filesystem frozen"
fsfreeze -f "$M"
expect_fail "--freeze of a filesystem frozen by someone else" "freeze $M: FIFREEZE: Device or resource busy \(already frozen\)" \
  $FERRY backup --repo "$R" --volume fs --freeze "$M" "$dev"
fsfreeze -u "$M" || fail "ferry thawed a filesystem someone else had frozen"
ok "refused freezes froze and thawed nothing"

# --- read-only: no warning
umount "$M"
mount -o ro "$dev" "$M"
$FERRY backup --repo "$R" --volume fs "$dev" >/dev/null 2>"$T/err"
grep -q warning "$T/err" && fail "a read-only mount got a warning: $(cat "$T/err")"
$FERRY check --repo "$R" --read-data >/dev/null || fail "check"
ok "backup of a mounted filesystem"
