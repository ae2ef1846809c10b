#!/usr/bin/env bash
# A chunk object under the wrong fan-out folder (chunks/cd/ab12... instead of
# chunks/ab/ab12...) is not where restore looks for it: check reports it,
# naming it, and exits 1; a new backup stores the block again under its own
# key (it does not dedupe against the misplaced object), and restore works;
# a copy resends it.
. "$(dirname "$0")/lib.sh"

R="$T/repo"
MiB=$((1024 * 1024))
$FERRY init --repo "$R" --chunk-size 1M >/dev/null
prand $((6 * MiB)) vol > "$T/vol.img"
id1=$($FERRY backup --repo "$R" --volume vol "$T/vol.img")

chunk=$(find "$R/chunks" -type f | sort | head -n 1)
cid=$(basename "$chunk")
fan=${cid:0:2}
other=$([ "$fan" = 00 ] && echo 01 || echo 00)
mkdir -p "$R/chunks/$other"
mv "$chunk" "$R/chunks/$other/$cid"

rc=0; $FERRY check --repo "$R" >"$T/out" 2>"$T/err" || rc=$?
[ $rc = 1 ] || { cat "$T/out" "$T/err" >&2; fail "check with a misplaced chunk exited $rc, not 1"; }
grep -q "chunk object chunks/$other/$cid is misplaced: a chunk with this id belongs at chunks/$fan/$cid" "$T/err" ||
  fail "check does not name the misplaced object: $(cat "$T/err")"
grep -q "chunk $cid is missing (named by snapshot $id1)" "$T/err" || fail "check does not say $cid is missing: $(cat "$T/err")"
ok "check: $(tr '\n' ' ' < "$T/err")"

# A new backup of the same volume stores the block again where it belongs.
$FERRY backup --repo "$R" --volume vol --json "$T/vol.img" > "$T/b.json"
[ "$(jq .chunks_new "$T/b.json")" = 1 ] || fail "the new backup stored $(jq .chunks_new "$T/b.json") chunks, not 1: $(cat "$T/b.json")"
[ -f "$R/chunks/$fan/$cid" ] || fail "the new backup did not store chunk $cid under chunks/$fan/"
$FERRY restore --repo "$R" "$id1" "$T/r1.img" >/dev/null || fail "restore of the first snapshot"
cmp "$T/vol.img" "$T/r1.img" || fail "the restored first snapshot differs"
ok "backup stored the block again under chunks/$fan/, the first snapshot restores"

# Only the stray object is left to report; once removed, check passes.
rc=0; $FERRY check --repo "$R" --read-data >"$T/out" 2>"$T/err" || rc=$?
[ $rc = 1 ] && grep -q "chunks/$other/$cid is misplaced" "$T/err" && ! grep -q "missing" "$T/err" ||
  fail "check after the new backup: rc $rc: $(cat "$T/err")"
rm "$R/chunks/$other/$cid"
$FERRY check --repo "$R" --read-data >/dev/null || fail "check after removing the stray object"

# A copy whose chunk is misplaced gets it again from 'ferry copy' of the snapshot.
C="$T/copy"
$FERRY init --repo "$C" --copy-of "$R" >/dev/null
$FERRY copy --from "$R" --to "$C" >/dev/null
mkdir -p "$C/chunks/$other"
mv "$C/chunks/$fan/$cid" "$C/chunks/$other/$cid"
$FERRY copy --from "$R" --to "$C" "$id1" >/dev/null || fail "copy of $id1 to repair the copy"
[ -f "$C/chunks/$fan/$cid" ] || fail "copy did not resend the misplaced chunk $cid"
$FERRY restore --repo "$C" "$id1" "$T/c1.img" >/dev/null && cmp "$T/vol.img" "$T/c1.img" || fail "restore from the copy"
ok "copy resends a chunk that is misplaced in the copy"
