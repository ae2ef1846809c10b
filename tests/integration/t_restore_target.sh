#!/usr/bin/env bash
# What restore must never write, and what it leaves behind (issue 13, items
# 7, 9 and 11):
#  - never into the repository it restores from: its config, its keys, a new
#    file in it, whether named directly or through a symlink, a bind mount, a
#    hard link, or a loop device bound to one of its files (--force or not);
#    the whole tree is byte-identical afterwards and check passes;
#  - never over an existing file without --overwrite, never over a mounted
#    or exclusively held block device or a loop device's backing file
#    without --force; with them it restores;
#  - a restore killed with SIGKILL leaves its temporary file, which the next
#    restore of the same target takes over: none is left after it; a
#    restore that is still running keeps its own.
# Refusals are exit 1 with one line on stderr.
. "$(dirname "$0")/lib.sh"

R="$T/repo"
$FERRY init --repo "$R" --chunk-size 1M >/dev/null
prand $((8 * 1024 * 1024)) vol > "$T/vol.img"
id=$($FERRY backup --repo "$R" --volume vol "$T/vol.img")
key=$(ls "$R/keys")
chunk=$(find "$R/chunks" -type f | head -n 1)
tree_sum() { (cd "$R" && find . -print0 | LC_ALL=C sort -z | xargs -0 -n1 sh -c 'if [ -f "$1" ]; then sha256sum "$1"; else echo "dir $1"; fi' _) | sha256sum; }
before=$(tree_sum)

# refused WHAT PATTERN CMD...: exit 1, one line matching PATTERN, the repository untouched
refused() {
  local what=$1 pat=$2 rc=0; shift 2
  "$@" >/dev/null 2>"$T/err" || rc=$?
  [ $rc = 1 ] || fail "$what: exit $rc, not 1: $(cat "$T/err")"
  [ "$(wc -l <"$T/err")" = 1 ] || fail "$what: not one line on stderr: $(cat "$T/err")"
  grep -qE -- "$pat" "$T/err" || fail "$what: stderr does not match /$pat/: $(cat "$T/err")"
  [ "$(tree_sum)" = "$before" ] || fail "$what: the repository changed"
  ok "$what: $(cat "$T/err")"
}
inside="is inside the repository $R being restored from"

# --- item 7: the repository is never a target
refused "the config" "target $R/config $inside \(its top directory\)" $FERRY restore --repo "$R" "$id" "$R/config"
refused "the config, --force" "$inside" $FERRY restore --repo "$R" --force "$id" "$R/config"
refused "a key" "target $R/keys/$key $inside \(its directory keys\)" $FERRY restore --repo "$R" "$id" "$R/keys/$key"
refused "a new file in the repository" "$inside" $FERRY restore --repo "$R" "$id" "$R/snapshots/new.img"
refused "a chunk, --overwrite" "$inside \(its directory chunks/" $FERRY restore --repo "$R" --overwrite "$id" "$chunk"
refused "the repository's own path spelled otherwise" "$inside" $FERRY restore --repo "$R" "$id" "$T/./repo/../repo/config"
ln -s "$R/keys" "$T/keys-link"
refused "a directory symlink into the repository" "$inside \(its directory keys\)" \
  $FERRY restore --repo "$R" --force "$id" "$T/keys-link/$key"
ln -s "$R/config" "$T/config-link"
refused "a symlink to the config" "$inside" $FERRY restore --repo "$R" --force "$id" "$T/config-link"
ln "$R/config" "$T/config-hardlink"
refused "a hard link to the config" "is \(a link or bind mount of\) config of the repository $R" \
  $FERRY restore --repo "$R" --force "$id" "$T/config-hardlink"
ln "$R/keys/$key" "$T/key-hardlink"
refused "a hard link to a key" "is \(a link or bind mount of\) keys/$key of the repository" \
  $FERRY restore --repo "$R" --overwrite "$id" "$T/key-hardlink"
rm "$T/config-hardlink" "$T/key-hardlink"
if [ "$(id -u)" = 0 ]; then
  mkdir "$T/bind"
  mount --bind "$R" "$T/bind" || skip "mount --bind"
  _mounts+=("$T/bind")
  refused "a bind mount of the repository" "target $T/bind/config $inside" \
    $FERRY restore --repo "$R" --force "$id" "$T/bind/config"
  refused "a bind mount, a new file" "target $T/bind/snapshots/x.img $inside \(its directory snapshots\)" \
    $FERRY restore --repo "$R" "$id" "$T/bind/snapshots/x.img"
  umount "$T/bind"
  mkdir "$T/bindkeys"
  mount --bind "$R/keys" "$T/bindkeys"
  _mounts+=("$T/bindkeys")
  refused "a bind mount of the keys directory" "$inside \(its directory keys\)" \
    $FERRY restore --repo "$R" --force "$id" "$T/bindkeys/$key"
  umount "$T/bindkeys"
  : > "$T/bindfile"
  mount --bind "$R/config" "$T/bindfile"
  _mounts+=("$T/bindfile")
  refused "a bind mount of the config file" "is \(a link or bind mount of\) config of the repository" \
    $FERRY restore --repo "$R" --force "$id" "$T/bindfile"
  umount "$T/bindfile"
  # a loop device bound to a chunk (and to a hard link of one) is written in place
  loop=$(losetup --find --show "$chunk" 2>/dev/null) || skip "losetup"
  refused "a loop device bound to a chunk, --force" "target $loop is a loop device bound to chunks/" \
    $FERRY restore --repo "$R" --force "$id" "$loop"
  losetup -d "$loop"
  ln "$chunk" "$T/chunk-link"
  loop=$(losetup --find --show "$T/chunk-link" 2>/dev/null)
  refused "a loop device bound to a hard link of a chunk" "is a loop device bound to chunks/" \
    $FERRY restore --repo "$R" --force "$id" "$loop"
  losetup -d "$loop"
  rm "$T/chunk-link"
else
  echo "SKIP (part): bind mounts and loop devices need root"
fi
$FERRY check --repo "$R" --read-data >/dev/null || fail "check after the refusals"
ok "the repository is byte-identical and check --read-data passes after every refusal"

# --- item 11: existing files need --overwrite
$FERRY restore --repo "$R" "$id" "$T/out.img"
cmp "$T/vol.img" "$T/out.img" || fail "restore to a new file differs"
echo "precious" > "$T/precious"
refused "an existing file" "target $T/precious exists: nothing written \(--overwrite replaces it\)" \
  $FERRY restore --repo "$R" "$id" "$T/precious"
[ "$(cat "$T/precious")" = precious ] || fail "a refused restore changed an existing file"
ln -s "$T/precious" "$T/precious-link"
refused "a symlink to an existing file" "target $T/precious-link exists" $FERRY restore --repo "$R" "$id" "$T/precious-link"
$FERRY restore --repo "$R" --overwrite "$id" "$T/precious-link"
[ -L "$T/precious-link" ] || fail "--overwrite through a symlink replaced the symlink"
cmp "$T/vol.img" "$T/precious" || fail "--overwrite through a symlink did not restore the file it names"
ok "an existing file is refused; --overwrite replaces it (through a symlink: the file it names)"

# --- item 9: a killed restore's temporary file is taken over by the next one
rm -f "$T/out.img"
rc=0
FERRY_TEST_KILL_AFTER_BYTES=$((3 * 1024 * 1024)) $FERRY restore --repo "$R" --threads 1 "$id" "$T/out.img" 2>/dev/null || rc=$?
[ $rc = 137 ] || fail "the restore was not killed (exit $rc)"
[ -f "$T/out.img.ferry-restore" ] || fail "the killed restore left no temporary file: $(ls "$T")"
[ ! -e "$T/out.img" ] || fail "the killed restore left a file under the target's name"
ok "a restore killed after 3 MiB left $(stat -c %s "$T/out.img.ferry-restore") bytes in out.img.ferry-restore"
$FERRY restore --repo "$R" "$id" "$T/out.img"
cmp "$T/vol.img" "$T/out.img" || fail "the restore after the killed one differs"
left=$(ls -A "$T" | grep -c 'ferry-restore' || true)
[ "$left" = 0 ] || fail "temporary files left after the rerun: $(ls -A "$T" | grep ferry-restore)"
ok "the rerun took the temporary file over: target identical, no temporary file left"
# twice killed, then rerun: still exactly none (each run adds nothing)
for n in 1 2; do
  FERRY_TEST_KILL_AFTER_BYTES=$((2 * 1024 * 1024)) $FERRY restore --repo "$R" --threads 1 --overwrite "$id" "$T/out.img" \
    2>/dev/null && fail "restore $n was not killed"
done
[ "$(ls -A "$T" | grep -c ferry-restore)" = 1 ] || fail "two killed restores left $(ls -A "$T" | grep -c ferry-restore) temporary files"
$FERRY restore --repo "$R" --overwrite "$id" "$T/out.img"
cmp "$T/vol.img" "$T/out.img" || fail "the rerun after two kills differs"
[ "$(ls -A "$T" | grep -c ferry-restore || true)" = 0 ] || fail "temporary files left after two kills and a rerun"
ok "two killed restores and a rerun: one temporary file at most, none at the end"

# a running restore keeps its temporary file: a second restore of the target is refused
rm -f "$T/out.img"
FERRY_TEST_STOP_AT=restoring $FERRY restore --repo "$R" "$id" "$T/out.img" 2>"$T/a.err" &
a=$!
for _ in $(seq 600); do
  [ "$(awk '{print $3}' /proc/$a/stat 2>/dev/null)" = T ] && break
  sleep 0.1
done
[ "$(awk '{print $3}' /proc/$a/stat 2>/dev/null)" = T ] || fail "the first restore did not stop at its hook"
ino=$(stat -c %i "$T/out.img.ferry-restore")
rc=0
$FERRY restore --repo "$R" "$id" "$T/out.img" 2>"$T/err" >/dev/null || rc=$?
[ $rc = 1 ] && [ "$(wc -l <"$T/err")" = 1 ] && grep -q "another restore to $T/out.img is running" "$T/err" ||
  fail "a second restore of a target being restored: exit $rc: $(cat "$T/err")"
[ "$(stat -c %i "$T/out.img.ferry-restore" 2>/dev/null)" = "$ino" ] || fail "the second restore removed or replaced the first one's temporary file"
ok "a restore in progress: $(cat "$T/err")"
kill -CONT $a
wait $a || fail "the first restore failed after the second was refused: $(cat "$T/a.err")"
cmp "$T/vol.img" "$T/out.img" || fail "the first restore's target differs"
[ "$(ls -A "$T" | grep -c ferry-restore || true)" = 0 ] || fail "temporary files left after the concurrent restores"
ok "the first restore completed, identical, no temporary file left"
# something else in the temporary file's place is not ours to reuse
ln -s "$T/precious" "$T/out2.img.ferry-restore"
expect_fail "a symlink where the temporary file goes" "a symbolic link is in the way" \
  $FERRY restore --repo "$R" "$id" "$T/out2.img"
cmp "$T/vol.img" "$T/precious" || fail "restore wrote through a symlink in its temporary file's place"
rm "$T/out2.img.ferry-restore"

# --- item 11: block devices that are mounted or held
if [ "$(id -u)" != 0 ]; then
  echo "SKIP (part): mounted and held block devices need root"
  ok "restore targets (without root)"
  exit 0
fi
truncate -s 32M "$T/fs.img"
# no lazy init: an idle ext4 writes nothing, so the device's bytes can be compared
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$T/fs.img"
dev=$(new_loop "$T/fs.img")
mkdir "$T/mnt"
mount "$dev" "$T/mnt" || skip "mount ext4"
_mounts+=("$T/mnt")
echo data > "$T/mnt/file"
sync
sum0=$(sha256sum < "$dev")
refused "a device mounted read-write" "target $dev is mounted at $T/mnt \(ext4, read-write\): nothing written \(unmount it first; --force writes over it anyway\)" \
  $FERRY restore --repo "$R" "$id" "$dev"
refused "a device mounted, --overwrite" "is mounted at $T/mnt" $FERRY restore --repo "$R" --overwrite "$id" "$dev"
[ "$(sha256sum < "$dev")" = "$sum0" ] || fail "a refused restore changed the mounted device"
[ "$(cat "$T/mnt/file")" = data ] || fail "the mounted filesystem lost its file"
umount "$T/mnt"
# read-only: still refused; --force writes (nothing is written back at unmount)
mount -o ro "$dev" "$T/mnt"
refused "a device mounted read-only" "is mounted at $T/mnt \(ext4, read-only\)" $FERRY restore --repo "$R" "$id" "$dev"
$FERRY restore --repo "$R" --force "$id" "$dev" 2>"$T/err" >/dev/null || fail "--force over a mounted device: $(cat "$T/err")"
grep -q "warning: $dev is mounted at $T/mnt (ext4, read-only): written over anyway (--force)" "$T/err" ||
  fail "--force over a mounted device gave no warning: $(cat "$T/err")"
umount "$T/mnt"
# read past the page cache: the mounted filesystem kept some of the device's old pages there
direct() { dd if="$1" iflag=direct bs=1M count=8 status=none; }
cmp "$T/vol.img" <(direct "$dev") || fail "--force did not restore the device"
ok "--force over a read-only mounted device restores it, with: $(cat "$T/err")"
# held open exclusively by another program (O_EXCL), not mounted
prand $((32 * 1024 * 1024)) other | dd of="$dev" bs=1M oflag=direct status=none
sum1=$(sha256sum < "$dev")
/usr/bin/python3 -c '
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_EXCL)
open(sys.argv[2], "w").close()
time.sleep(600)' "$dev" "$T/held" &
holder=$!
for _ in $(seq 600); do [ -e "$T/held" ] && break; sleep 0.1; done
[ -e "$T/held" ] || fail "the holder did not open $dev"
refused "a device held open exclusively" "target $dev is in use: held open exclusively" $FERRY restore --repo "$R" "$id" "$dev"
[ "$(sha256sum < "$dev")" = "$sum1" ] || fail "a refused restore changed the held device"
$FERRY restore --repo "$R" --force "$id" "$dev" >/dev/null 2>&1 || fail "--force over a held device"
kill $holder; wait $holder 2>/dev/null || true
cmp "$T/vol.img" <(direct "$dev") || fail "--force did not restore the held device"
ok "a held device is refused, --force restores it"
# the backing file of an attached loop device: refused even with --overwrite
back=$T/back.img
cp "$T/vol.img" "$back"
bdev=$(new_loop "$back")
refused "a loop device's backing file, --overwrite" "target $back is the backing file of $bdev: nothing written \(detach it" \
  $FERRY restore --repo "$R" --overwrite "$id" "$back"
$FERRY restore --repo "$R" --force "$id" "$back" 2>"$T/err" >/dev/null || fail "--force over a loop backing file"
grep -q "warning: $back was the backing file of $bdev: replaced anyway (--force)" "$T/err" || fail "no warning: $(cat "$T/err")"
ok "a loop device's backing file: refused with --overwrite, replaced with --force and a warning"
# a device that holds a repository's filesystem: not even --force
truncate -s 64M "$T/rfs.img"
mkfs.ext4 -q -F "$T/rfs.img"
rdev=$(new_loop "$T/rfs.img")
mkdir "$T/rmnt"
mount "$rdev" "$T/rmnt"
_mounts+=("$T/rmnt")
$FERRY init --repo "$T/rmnt/repo" --chunk-size 1M >/dev/null
$FERRY backup --repo "$T/rmnt/repo" --volume small "$T/vol.img" >/dev/null
expect_fail "--force onto the device that holds the repository" "target $rdev holds the filesystem of the repository $T/rmnt/repo being restored from" \
  $FERRY restore --repo "$T/rmnt/repo" --force latest "$rdev"
$FERRY check --repo "$T/rmnt/repo" --read-data >/dev/null || fail "the repository on $rdev was damaged"
ok "--force does not write over the device that holds the repository"
$FERRY check --repo "$R" --read-data >/dev/null || fail "check at the end"
[ "$(tree_sum)" = "$before" ] || fail "the repository changed"
ok "restore targets"
