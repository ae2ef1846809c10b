#!/usr/bin/env bash
# Resume: a backup killed with SIGKILL once 10%, 50% and 90% of its chunks are
# stored (the test hook FERRY_TEST_KILL_AFTER_OPS, docs/store.md) leaves a
# consistent repository (check passes, no snapshot, nothing referencing a
# missing chunk), and the rerun stores only what is still missing.
# tests/integration/t_crash.sh kills every command at random points.
. "$(dirname "$0")/lib.sh"

MB=1048576
SIZE=$((96 * MB))
prand $SIZE resume > "$T/vol.img"
nchunks=$((SIZE / MB))

count_chunks() { find "$1/chunks" -type f ! -name '.tmp-*' 2>/dev/null | wc -l; }

for pct in 10 50 90; do
  R="$T/repo-$pct"
  $FERRY init --repo "$R" --chunk-size 1M -q
  rc=0
  k=$((nchunks * pct / 100))
  # its store operations: its lock, then chunk puts (2 in flight)
  FERRY_TEST_KILL_AFTER_OPS=put:$((1 + k)) \
    $FERRY backup --repo "$R" --volume vol --uploaders 2 "$T/vol.img" >/dev/null 2>"$T/err" || rc=$?
  [ "$rc" = 137 ] || { cat "$T/err" >&2; fail "$pct%: backup was not killed (exit $rc)"; }
  [ "$($FERRY snapshots --repo "$R" --json | jq length)" = 0 ] || fail "$pct%: a killed backup left a snapshot"
  $FERRY check --repo "$R" --read-data >/dev/null || fail "$pct%: check fails after the kill"
  have=$(count_chunks "$R")
  # The kill came right after the kth chunk was stored; the other uploader's may have been too.
  [ "$have" -ge "$k" ] && [ "$have" -le $((k + 1)) ] || fail "$pct%: $have chunks stored before the kill after the ${k}th"

  j=$($FERRY backup --repo "$R" --volume vol --json "$T/vol.img")
  [ "$(jq -r .chunks_dedup <<<"$j")" = "$have" ] || fail "$pct%: rerun did not reuse the $have chunks already there: $j"
  [ "$(jq -r .chunks_new <<<"$j")" = $((nchunks - have)) ] || fail "$pct%: rerun stored more than what was missing: $j"
  [ "$(jq -r .bytes_dedup <<<"$j")" = $((have * MB)) ] || fail "$pct%: summary does not say what was already there: $j"
  $FERRY check --repo "$R" --read-data >/dev/null || fail "$pct%: check fails after the rerun"
  $FERRY restore --repo "$R" latest "$T/out.img"
  cmp "$T/vol.img" "$T/out.img" || fail "$pct%: restore after the rerun differs"
  rm -f "$T/out.img"
  ok "killed at $pct% with $have of $nchunks chunks stored; the rerun stored $((nchunks - have)) and reused $have"
done

# An incremental killed halfway: the parent stays the newest snapshot, the
# rerun is still an incremental of it, and both restore.
R="$T/repo-10"
p=$($FERRY snapshots --repo "$R" --json | jq -r '.[0].id')
cp "$T/vol.img" "$T/v1.img"
prand $((40 * MB)) changed | dd of="$T/v1.img" bs=1M seek=30 conv=notrunc status=none
rc=0
# killed once its lock and 20 of the 40 changed chunks are stored
FERRY_TEST_KILL_AFTER_OPS=put:21 $FERRY backup --repo "$R" --volume vol "$T/v1.img" >/dev/null 2>&1 || rc=$?
[ "$rc" = 137 ] || fail "incremental: backup was not killed (exit $rc)"
$FERRY check --repo "$R" >/dev/null || fail "incremental: check fails after the kill"
j=$($FERRY backup --repo "$R" --volume vol --json "$T/v1.img")
[ "$(jq -r .parent_id <<<"$j")" = "$p" ] || fail "incremental rerun: parent is not the last complete snapshot: $j"
[ "$(jq -r .chunks_new <<<"$j")" -lt 40 ] || fail "incremental rerun stored all 40 changed chunks again: $j"
[ "$(jq -r '.bytes_same' <<<"$j")" = $(((nchunks - 40) * MB)) ] || fail "incremental rerun: unchanged blocks miscounted: $j"
$FERRY restore --repo "$R" "$(jq -r .snapshot_id <<<"$j")" "$T/out.img"
cmp "$T/v1.img" "$T/out.img" || fail "incremental restore differs"
$FERRY restore --repo "$R" "$p" "$T/out0.img"
cmp "$T/vol.img" "$T/out0.img" || fail "parent restore differs after the killed incremental"
ok "incremental killed after 20 of its 40 changed chunks: rerun reused $(jq -r .chunks_dedup <<<"$j") stored chunks, $(jq -r .chunks_new <<<"$j") new"
