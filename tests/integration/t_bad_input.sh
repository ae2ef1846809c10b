#!/usr/bin/env bash
# Bad input: each case gets one clear error line naming what was wrong, a
# non-zero exit, and loses nothing already stored (check --read-data passes on
# what was not deliberately damaged).
. "$(dirname "$0")/lib.sh"

R="$T/repo"
$FERRY init --repo "$R" >/dev/null
prand $((6 * 1024 * 1024)) one > "$T/one.img"
prand $((6 * 1024 * 1024)) two > "$T/two.img"
id1=$($FERRY backup --repo "$R" --volume one "$T/one.img")
id2=$($FERRY backup --repo "$R" --volume two "$T/two.img")
intact() { $FERRY check --repo "$R" --read-data >/dev/null 2>&1 || fail "repository damaged after: $1"; }
# usage2 WHAT PATTERN CMD...: bad usage: exit 2 and one line on stderr matching PATTERN
usage2() {
  local what=$1 pat=$2 rc=0; shift 2
  "$@" >/dev/null 2>"$T/err" || rc=$?
  [ $rc = 2 ] || fail "$what: exit $rc, not 2: $(cat "$T/err")"
  [ "$(wc -l <"$T/err")" = 1 ] || fail "$what: not one line on stderr: $(cat "$T/err")"
  grep -qE -- "$pat" "$T/err" || fail "$what: stderr does not match /$pat/: $(cat "$T/err")"
  ok "$what: $(cat "$T/err")"
}
# fail1 WHAT PATTERN CMD...: a failure: exit 1 and one line on stderr matching PATTERN
fail1() {
  local what=$1 pat=$2 rc=0; shift 2
  "$@" >/dev/null 2>"$T/err" || rc=$?
  [ $rc = 1 ] || fail "$what: exit $rc, not 1: $(cat "$T/err")"
  [ "$(wc -l <"$T/err")" = 1 ] || fail "$what: not one line on stderr: $(cat "$T/err")"
  grep -qE -- "$pat" "$T/err" || fail "$what: stderr does not match /$pat/: $(cat "$T/err")"
  ok "$what: $(cat "$T/err")"
}

# --- repositories, URLs, passwords, keys
expect_fail "unknown URL scheme" "unknown repository URL scheme 'gopher'" $FERRY snapshots --repo gopher://x/y
expect_fail "repository that does not exist" "no repository at $T/nowhere" $FERRY snapshots --repo "$T/nowhere"
expect_fail "init over an existing repository" "already exists" $FERRY init --repo "$R"
intact "init over an existing repository"
expect_fail "wrong password" "wrong password or key" env FERRY_PASSWORD=wrong $FERRY snapshots --repo "$R"
expect_fail "no password" "is encrypted: set FERRY_PASSWORD" env -u FERRY_PASSWORD $FERRY snapshots --repo "$R"
: > "$T/empty-pw"
expect_fail "empty password file" "password file .* is empty" $FERRY snapshots --repo "$R" --password-file "$T/empty-pw"
printf 'short' > "$T/bad.key"
expect_fail "malformed key file" "must hold 32 bytes, or 64 hex digits" $FERRY snapshots --repo "$R" --key-file "$T/bad.key"
expect_fail "missing password file" "cannot read password file" $FERRY snapshots --repo "$R" --password-file "$T/nope"
expect_fail "init without a password" "no password" env -u FERRY_PASSWORD $FERRY init --repo "$T/r2"
[ ! -e "$T/r2/config" ] || fail "init without a password created a repository"
expect_fail "KDF cost out of range" "scrypt cost 2\^40 is out of range" env FERRY_SCRYPT_LOG2N=40 $FERRY init --repo "$T/r4"
usage2 "chunk size not a power of two" "--chunk-size wants a power of two from 1M to 16M .*not '3M'" \
  $FERRY init --repo "$T/r3" --chunk-size 3M
usage2 "chunk size too large" "--chunk-size wants a power of two .*not '32M'" $FERRY init --repo "$T/r3" --chunk-size 32M
usage2 "chunk size not a size" "--chunk-size wants .*not '4Q'" $FERRY init --repo "$T/r3" --chunk-size 4Q
[ ! -e "$T/r3" ] || fail "a refused init created $T/r3"

# --- usage errors exit 2 with one line; every command has --help (and 'ferry help CMD')
for c in init backup restore snapshots check diff forget prune unlock copy agent version; do
  $FERRY $c --help | grep -q "usage: ferry $c" || fail "$c --help"
  $FERRY help $c | grep -q "usage: ferry $c" || fail "ferry help $c"
done
[ "$($FERRY version)" = "$($FERRY --version)" ] || fail "version and --version differ"
usage2 "version with an argument" "version: unexpected argument 'x'" $FERRY version x
usage2 "help of an unknown command" "unknown command 'frob'" $FERRY help frob
usage2 "no command" "no command given" $FERRY
usage2 "backup without --volume" "missing --volume NAME" $FERRY backup --repo "$R" "$T/one.img"
usage2 "unknown command" "unknown command 'frobnicate'" $FERRY frobnicate
usage2 "unknown I/O engine" "--io-engine wants auto, io_uring, libaio or psync, not 'nvme-magic'" \
  $FERRY backup --repo "$R" --volume x --io-engine nvme-magic "$T/one.img"
# GNU getopt would take any unambiguous prefix: --read-dat for --read-data, --dry for --dry-run
usage2 "abbreviated option" "option '--read-dat' is abbreviated: write --read-data in full" \
  $FERRY check --repo "$R" --read-dat
usage2 "abbreviated option with a value" "option '--vol' is abbreviated: write --volume in full" \
  $FERRY backup --repo "$R" --vol x "$T/one.img"
usage2 "abbreviated destructive option" "option '--remove' is abbreviated" $FERRY unlock --repo "$R" --remove
# ferry agent too: its options are checked before it starts (nothing bound, no state touched)
usage2 "agent: abbreviated option" "option '--endp' is abbreviated: write --endpoint in full" \
  $FERRY agent --endp=unix://$T/never.sock --state-dir "$T/never-state"
usage2 "agent: unknown option" "unknown option '--frob'" $FERRY agent --frob --state-dir "$T/never-state"
usage2 "agent: option without its value" "option --node-id wants a value" $FERRY agent --node-id
usage2 "agent: a value for a flag" "option --debug takes no value" $FERRY agent --debug=yes
[ ! -e "$T/never-state" ] && [ ! -e "$T/never.sock" ] || fail "a refused ferry agent touched its state dir or socket"
usage2 "unknown long option" "unknown option '--frob'" $FERRY snapshots --repo "$R" --frob=1
usage2 "unknown short option" "unknown option '-x'" $FERRY snapshots --repo "$R" -x
usage2 "option without its value" "option --repo wants a value" $FERRY check --repo
usage2 "value given to a flag" "option --dry-run takes no value, not '--dry-run=yes'" $FERRY prune --repo "$R" --dry-run=yes
usage2 "bad thread count" "--threads wants a positive number, not '0'" $FERRY check --repo "$R" --threads 0
usage2 "tag without =" "--tag wants KEY=VALUE, not 'oops'" $FERRY backup --repo "$R" --volume x --tag oops "$T/one.img"
usage2 "forget without a policy" "no --keep-\* policy given" $FERRY forget --repo "$R"
usage2 "copy without --to" "missing --to URL" $FERRY copy --from "$R"
usage2 "snapshots with an argument" "unexpected argument 'x'" $FERRY snapshots --repo "$R" x
usage2 "no repository" "no repository: give --repo URL or set FERRY_REPO" $FERRY check
# a value that looks like an option is still a value
$FERRY snapshots --repo "$R" --volume --weird >/dev/null || fail "--volume --weird: a value starting with --"
[ -z "$(ls "$T" | grep -- '-weird')" ] || fail "a value was taken for a file"
ok "usage errors and --help"

# --- sources
expect_fail "missing source" "cannot open source $T/missing.img: No such file" $FERRY backup --repo "$R" --volume x "$T/missing.img"
expect_fail "directory as source" "is not a regular file or a block device" $FERRY backup --repo "$R" --volume x "$T"
expect_fail "character device as source" "is not a regular file or a block device" $FERRY backup --repo "$R" --volume x /dev/null
# sysfs says 4096 bytes but yields fewer: a read that comes up short is an error naming the offset.
thp=/sys/kernel/mm/transparent_hugepage/enabled
if [ -r $thp ] && [ "$(stat -c %s $thp)" = 4096 ]; then
  expect_fail "source that cannot be read in full" "reading $thp at offset 0: short read" $FERRY backup --repo "$R" --volume x --io-engine psync $thp
else
  echo "note: $thp unavailable; the short-read case is covered by the unit tests only"
fi

# --- parents, change sources, diff
usage2() { # WHAT PATTERN CMD...: a usage error, exit 2, with the pattern on stderr
  local what=$1 pat=$2 rc=0; shift 2
  "$@" >/dev/null 2>"$T/err" || rc=$?
  [ $rc = 2 ] || fail "$what: exit $rc, not 2"
  grep -qE -- "$pat" "$T/err" || fail "$what: stderr does not match /$pat/: $(cat "$T/err")"
  ok "$what: $(cat "$T/err")"
}
echo "0 4096" > "$T/ranges"
expect_fail "parent that does not exist" "no snapshot 0bad0bad in" $FERRY backup --repo "$R" --volume one --parent 0bad0bad "$T/one.img"
usage2 "parent that is not an id" "--parent wants auto, none, latest or a snapshot id, not 'x/y'" \
  $FERRY backup --repo "$R" --volume one --parent x/y "$T/one.img"
usage2 "ranges without an explicit parent" "--changed-ranges needs --parent SNAPSHOT" \
  $FERRY backup --repo "$R" --volume one --changed-ranges "$T/ranges" "$T/one.img"
usage2 "two change sources" "give one of --changed-ranges, --base-image, --manifest-scan" \
  $FERRY backup --repo "$R" --volume one --parent "$id1" --changed-ranges "$T/ranges" --base-image "$T/one.img" "$T/one.img"
usage2 "a change source with --parent none" "needs a parent, not --parent none" \
  $FERRY backup --repo "$R" --volume one --parent none --base-image "$T/one.img" "$T/one.img"
expect_fail "diff of a snapshot that does not exist" "diff failed: no snapshot 0bad0bad in" $FERRY diff --repo "$R" "$id1" 0bad0bad
usage2 "diff with one snapshot" "wants SNAP_A and SNAP_B" $FERRY diff --repo "$R" "$id1"
[ "$($FERRY snapshots --repo "$R" --json | jq length)" = 2 ] || fail "a failed backup left a snapshot"
intact "failed backups"

# --- targets
if [ "$(id -u)" = 0 ]; then
  truncate -s 4M "$T/small.img"
  prand $((4 * 1024 * 1024)) small > "$T/small.img"
  cp "$T/small.img" "$T/small.orig"
  dev=$(new_loop "$T/small.img")
  expect_fail "target device too small" "target $dev is smaller than the volume \(4194304 < 6291456 bytes\)" $FERRY restore --repo "$R" "$id1" "$dev"
  cmp "$T/small.img" "$T/small.orig" || fail "a refused restore wrote to the device"
  # restore target on a full filesystem: an error, and no partial file left
  mount_tmpfs "$T/tiny" 2M
  expect_fail "restore target filesystem full" "writing $T/tiny/out.img at offset [0-9]+: No space left on device" $FERRY restore --repo "$R" "$id1" "$T/tiny/out.img"
  [ -z "$(ls -A "$T/tiny")" ] || fail "a failed restore left files behind: $(ls -A "$T/tiny")"
else
  echo "SKIP (part): target-device and full-filesystem cases need root"
fi
expect_fail "restore target in a missing directory" "cannot create target $T/no/such/dir/x.img" $FERRY restore --repo "$R" "$id1" "$T/no/such/dir/x.img"
expect_fail "unknown snapshot" "no snapshot ffffffff" $FERRY restore --repo "$R" ffffffff "$T/x.img"
usage2 "malformed snapshot id" "'../../etc' is not a snapshot id" $FERRY restore --repo "$R" "../../etc" "$T/x.img"
usage2 "malformed snapshot id in diff" "'LATEST' is not a snapshot id" $FERRY diff --repo "$R" "$id1" LATEST

# --- which snapshot: 'latest' of several volumes, --volume, --tag, prefixes (issue 13 item 12)
fail1 "latest of two volumes" "'latest' is ambiguous: the snapshots in $R belong to 2 volumes \(one, two\): name one with --volume NAME" \
  $FERRY restore --repo "$R" latest "$T/x.img"
[ ! -e "$T/x.img" ] || fail "a refused restore wrote $T/x.img"
$FERRY restore --repo "$R" --volume two latest "$T/two-latest.img" && cmp "$T/two.img" "$T/two-latest.img" ||
  fail "restore --volume two latest"
$FERRY restore --repo "$R" --volume one "${id1:0:6}" "$T/one-prefix.img" && cmp "$T/one.img" "$T/one-prefix.img" ||
  fail "restore --volume one PREFIX"
fail1 "an id of another volume" "snapshot ${id2:0:8} is of volume two, not of volume one" \
  $FERRY restore --repo "$R" --volume one "$id2" "$T/x.img"
fail1 "latest of a volume that has none" "no readable snapshot of volume three in" \
  $FERRY restore --repo "$R" --volume three latest "$T/x.img"
id3=$($FERRY backup --repo "$R" --volume two --tag stage=b "$T/two.img")
$FERRY restore --repo "$R" --tag stage=b latest "$T/two-tag.img" && cmp "$T/two.img" "$T/two-tag.img" ||
  fail "restore --tag stage=b latest"
fail1 "a tag no snapshot carries" "no readable snapshot with tag stage=zz" $FERRY restore --repo "$R" --tag stage=zz latest "$T/x.img"
fail1 "diff latest of two volumes" "'latest' is ambiguous" $FERRY diff --repo "$R" "$id1" latest
fail1 "diff across volumes" "${id1:0:8} is a snapshot of volume one, ${id2:0:8} of volume two: different volumes \(--across-volumes" \
  $FERRY diff --repo "$R" "$id1" "$id2"
$FERRY diff --repo "$R" --across-volumes "$id1" "$id2" | grep -q '^0 ' || fail "diff --across-volumes printed no ranges"
[ "$($FERRY diff --repo "$R" --volume two "$id2" latest)" = "" ] || fail "diff --volume two: the same data differs"
# an ambiguous prefix lists the snapshots that share it (a second manifest under a name
# that shares the first 4 digits; it never opens, but the listing sees it)
twin="${id1:0:4}$(printf 'f%.0s' $(seq 28))"
[ "$twin" != "$id1" ] || twin="${id1:0:4}$(printf 'e%.0s' $(seq 28))"
cp "$R/snapshots/$id1" "$R/snapshots/$twin"
fail1 "ambiguous prefix" "snapshot prefix ${id1:0:4} is ambiguous in $R: 2 snapshots match \(.*$id1 of one.*\): give more digits" \
  $FERRY restore --repo "$R" "${id1:0:4}" "$T/x.img"
grep -q "$twin" "$T/err" || fail "the ambiguous prefix's line does not name $twin"
rm "$R/snapshots/$twin"

# --- repository full during a backup: fails, keeps earlier snapshots intact, leaves no temp files
if [ "$(id -u)" = 0 ]; then
  mount_tmpfs "$T/small-repo" 3M
  $FERRY init --repo "$T/small-repo/r" >/dev/null
  prand $((1024 * 1024)) fits > "$T/fits.img"
  $FERRY backup --repo "$T/small-repo/r" --volume fits "$T/fits.img" >/dev/null
  prand $((8 * 1024 * 1024)) big > "$T/big.img"
  expect_fail "repository filesystem full" "repository .* is full: writing chunk [0-9a-f]{64}: No space left on device" \
    $FERRY backup --repo "$T/small-repo/r" --volume big "$T/big.img"
  [ -z "$(find "$T/small-repo/r" -name '.tmp-*')" ] || fail "temp files left in a full repository"
  [ "$($FERRY snapshots --repo "$T/small-repo/r" --json | jq length)" = 1 ] || fail "the failed backup committed a snapshot"
  $FERRY check --repo "$T/small-repo/r" --read-data >/dev/null || fail "earlier snapshot damaged by the full repository"
  ok "repository full: earlier snapshot intact"
fi

# --- damage: a flipped byte in a chunk
chunk=$(find "$R/chunks" -type f | head -n 1)
cid=$(basename "$chunk")
cp "$chunk" "$T/chunk.bak"
python3 - "$chunk" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
b[len(b) // 2] ^= 0x01
open(p, 'wb').write(b)
PY
# which snapshot holds the damaged chunk? restore both: one must fail naming it.
failed=0
for id in "$id1" "$id2"; do
  rc=0
  $FERRY restore --repo "$R" "$id" "$T/r-$id.img" 2>"$T/err" || rc=$?
  if [ $rc != 0 ]; then
    grep -q "chunk $cid is corrupt: authentication failed" "$T/err" || { cat "$T/err"; fail "restore error does not name chunk $cid"; }
    [ ! -e "$T/r-$id.img" ] || fail "a failed restore left a file at the target"
    [ -z "$(ls "$T" | grep ferry-restore)" ] || fail "a failed restore left its temporary file"
    failed=$((failed + 1))
    ok "restore with a flipped byte: $(cat "$T/err")"
  fi
done
[ $failed = 1 ] || fail "expected exactly one restore to fail on the flipped byte, $failed did"
expect_fail "check --read-data finds the flipped byte" "chunk $cid is corrupt" $FERRY check --repo "$R" --read-data
$FERRY check --repo "$R" >/dev/null || fail "structural check should pass with a corrupt (but present) chunk"
cp "$T/chunk.bak" "$chunk"
intact "repairing the chunk"

# --- damage: a missing chunk
mv "$chunk" "$T/chunk.moved"
expect_fail "check finds a missing chunk" "chunk $cid is missing \(named by snapshot [0-9a-f]{32}\)" $FERRY check --repo "$R"
rc=0
for id in "$id1" "$id2"; do
  $FERRY restore --repo "$R" "$id" "$T/m-$id.img" 2>>"$T/err-missing" || rc=1
done
[ $rc = 1 ] && grep -q "chunk $cid is missing from the repository" "$T/err-missing" || fail "restore did not name the missing chunk"
mv "$T/chunk.moved" "$chunk"
intact "restoring the missing chunk"

# --- damage: a truncated manifest, then a missing one
man="$R/snapshots/$id1"
cp "$man" "$T/man.bak"
truncate -s $(( $(stat -c %s "$man") - 7 )) "$man"
expect_fail "restore from a truncated manifest" "manifest of snapshot $id1 is corrupt: truncated" $FERRY restore --repo "$R" "$id1" "$T/t.img"
expect_fail "check finds the truncated manifest" "manifest of snapshot $id1 is corrupt" $FERRY check --repo "$R"
rc=0; $FERRY snapshots --repo "$R" > "$T/list" 2>"$T/err" || rc=$?
[ $rc = 1 ] && grep -q "two" "$T/list" || fail "snapshots must list the readable snapshot and exit 1"
$FERRY restore --repo "$R" "$id2" "$T/two-out.img" && cmp "$T/two.img" "$T/two-out.img" || fail "other snapshot hurt by a truncated manifest"
rm "$man"
expect_fail "restore from a missing manifest" "no snapshot $id1" $FERRY restore --repo "$R" "$id1" "$T/t.img"
cp "$T/man.bak" "$man"
intact "putting the manifest back"
$FERRY restore --repo "$R" "$id1" "$T/one-out.img" && cmp "$T/one.img" "$T/one-out.img" || fail "round trip after repairs"
ok "all bad-input cases"
