#!/usr/bin/env bash
# Object Lock (the immutable copy of 3-2-1-1) on a real RGW: init refuses a
# bucket without Object Lock; every object ferry writes to the lock bucket is
# retained (the server refuses to delete it); forget and prune report the
# retention instead of failing or deleting; once retention has passed they
# delete, and what remains still checks and restores.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/../s3/lib.sh"
# ferry signs as the primary user (awscli takes --profile)
export AWS_ACCESS_KEY_ID=$RGW_PRIMARY_AK AWS_SECRET_ACCESS_KEY=$RGW_PRIMARY_SK
S3P=$S3_RUN

# Two immutable copies of P, so that no check depends on how fast this
# machine is: L is held for a day (nothing in it can expire while the test
# runs, however loaded the machine), and the expiry is watched on S, held
# for SHORT seconds, by waiting on the clock until every retention has passed.
SHORT=3
P="s3://ferry-primary/$S3P?endpoint=$RGW_HTTP"
L="s3://ferry-lock/$S3P?endpoint=$RGW_HTTP&lock=compliance&lock-days=1"
S="s3://ferry-lock/$S3P-short?endpoint=$RGW_HTTP&lock=compliance&lock-seconds=$SHORT"
N="s3://ferry-nolock/$S3P?endpoint=$RGW_HTTP&lock=compliance&lock-days=30"

"$FERRY" init --repo "$P" >/dev/null
expect_fail "immutable target on a bucket without Object Lock" "ferry-nolock does not have Object Lock enabled" \
  "$FERRY" init --repo "$N" --copy-of "$P"
expect_fail "lock without a retention" "needs lock-days" \
  "$FERRY" init --repo "s3://ferry-lock/$S3P?endpoint=$RGW_HTTP&lock=compliance" --copy-of "$P"
"$FERRY" init --repo "$L" --copy-of "$P" >/dev/null
"$FERRY" init --repo "$S" --copy-of "$P" >/dev/null
ok "init: the lock bucket accepted as an immutable copy"

img=$T/vol.img
make_fs_image "$img" 64 5
"$FERRY" backup --repo "$P" --copy-to "$L" --copy-to "$S" --volume vol --json "$img" >"$T/b1.json"
id1=$(json_get "$T/b1.json" .snapshot_id)
prand $((6 << 20)) 6 | dd of="$img" bs=1M seek=30 conv=notrunc status=none
"$FERRY" backup --repo "$P" --copy-to "$L" --copy-to "$S" --volume vol --json "$img" >"$T/b2.json"
id2=$(json_get "$T/b2.json" .snapshot_id)
# A backup killed before its manifest leaves unreferenced chunks behind.  It
# is killed after 75 puts (FERRY_TEST_KILL_AFTER_OPS, docs/store.md): its 3
# locks, then 72 of its 75 chunk puts (25 chunks, 3 targets; no manifest is
# written before all of them).  A worker seals a chunk only into a free object
# buffer, and a buffer is free again only once every target has stored its
# chunk: with 13 buffers (8 uploaders + 2 workers + 3 targets) no target is
# more than 13 chunks ahead of another, so each lock target has at least
# (72 - 2 x 13) / 3 > 15 chunks when the process dies.
prand $((100 << 20)) 7 | dd of="$T/other.img" status=none
rc=0
FERRY_TEST_KILL_AFTER_OPS=put:75 "$FERRY" backup --repo "$P" --copy-to "$L" --copy-to "$S" --volume other \
  --threads 2 --uploaders 8 "$T/other.img" >/dev/null 2>&1 || rc=$?
[ "$rc" = 137 ] || fail "the killed backup exited $rc, not 137"
s_written=$(date +%s) # every object of S was put (and its retention set) before this

# The server enforces the retention ferry asked for.
key=$(awsp primary s3api list-objects-v2 --bucket ferry-lock --prefix "$S3P/chunks/" --query 'Contents[0].Key' --output text)
ver=$(awsp primary s3api list-object-versions --bucket ferry-lock --prefix "$key" --query 'Versions[0].VersionId' --output text)
mode=$(awsp primary s3api head-object --bucket ferry-lock --key "$key" --query ObjectLockMode --output text)
[ "$mode" = COMPLIANCE ] || fail "chunk $key has lock mode '$mode'"
# (--version-id=ID: an id may begin with '-', which awscli would take for an option)
expect_s3_error "RGW refuses to delete $key (COMPLIANCE)" "403 AccessDenied" primary \
  s3api delete-object --bucket ferry-lock --key "$key" --version-id="$ver"
awsp primary s3api head-object --bucket ferry-lock --key "$key" >/dev/null || fail "$key is gone"

# forget and prune report the retention; nothing is deleted, nothing fails.
"$FERRY" forget --repo "$L" --keep-last 1 --json >"$T/f1.json" || fail "forget failed under retention"
[ "$(json_get "$T/f1.json" .retained)" = 1 ] && [ "$(json_get "$T/f1.json" .removed)" = 0 ] ||
  fail "forget: $(cat "$T/f1.json")"
"$FERRY" prune --repo "$L" --json >"$T/p1.json" || fail "prune failed under retention"
[ "$(json_get "$T/p1.json" .chunks_retained)" -gt 0 ] && [ "$(json_get "$T/p1.json" .chunks_removed)" = 0 ] ||
  fail "prune: $(cat "$T/p1.json")"
"$FERRY" prune --repo "$L" >"$T/p1.txt"
grep -q "under Object Lock retention" "$T/p1.txt" || fail "prune does not say why: $(cat "$T/p1.txt")"
[ "$("$FERRY" snapshots --repo "$L" --json | jq length)" = 2 ] || fail "a snapshot went missing"
ok "forget keeps $(json_get "$T/f1.json" .retained) retained snapshot, prune leaves $(json_get "$T/p1.json" .chunks_retained) retained chunks and says so"

# Once S's retention has passed (the clock, not a sleep, decides), they delete.
until_epoch=$((s_written + SHORT + 1))
deadline=$((until_epoch + 300))
while [ "$(date +%s)" -le "$until_epoch" ]; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "the clock did not pass the retention"
  sleep 0.2 # poll interval of the clock
done
"$FERRY" forget --repo "$S" --keep-last 1 --json >"$T/f2.json"
[ "$(json_get "$T/f2.json" .removed)" = 1 ] && [ "$(json_get "$T/f2.json" .retained)" = 0 ] ||
  fail "forget after retention: $(cat "$T/f2.json")"
"$FERRY" prune --repo "$S" --json >"$T/p2.json"
[ "$(json_get "$T/p2.json" .chunks_removed)" -gt 0 ] && [ "$(json_get "$T/p2.json" .chunks_retained)" = 0 ] ||
  fail "prune after retention: $(cat "$T/p2.json")"
left=$(awsp primary s3api list-object-versions --bucket ferry-lock --prefix "$S3P-short/snapshots/" --query 'length(Versions)' --output text)
[ "$left" = 1 ] || fail "$left manifest versions left in the lock bucket, want 1"
"$FERRY" check --repo "$S" --read-data >/dev/null || fail "check after prune"
"$FERRY" restore --repo "$S" "$id2" "$T/r.img" >/dev/null
cmp "$img" "$T/r.img" || fail "restore from the lock bucket differs"
ok "after retention: forget removed $id1, prune removed $(json_get "$T/p2.json" .chunks_removed) chunks (every version); $id2 restores identical"
# ... and L, held for a day, still refuses
"$FERRY" forget --repo "$L" --keep-last 1 --json >"$T/f3.json"
[ "$(json_get "$T/f3.json" .retained)" = 1 ] || fail "forget of L after S expired: $(cat "$T/f3.json")"

# A chunk that goes up in parts is retained too (RGW ignores the lock headers
# of CreateMultipartUpload: ferry sets the retention after completing it).
PM="s3://ferry-primary/$S3P-mp?endpoint=$RGW_HTTP"
LM="s3://ferry-lock/$S3P-mp?endpoint=$RGW_HTTP&lock=compliance&lock-days=1&multipart-threshold=5MiB&part-size=5MiB"
"$FERRY" init --repo "$PM" --chunk-size 16M >/dev/null
"$FERRY" init --repo "$LM" --copy-of "$PM" >/dev/null
"$FERRY" backup --repo "$PM" --copy-to "$LM" --volume other "$T/other.img" >/dev/null
big=$(awsp primary s3api list-objects-v2 --bucket ferry-lock --prefix "$S3P-mp/chunks/" \
  --query 'sort_by(Contents, &Size)[-1].[Key,Size]' --output text)
[ "${big##*[[:space:]]}" -gt $((5 << 20)) ] || fail "no chunk above the multipart threshold: $big"
mode=$(awsp primary s3api head-object --bucket ferry-lock --key "${big%%[[:space:]]*}" --query ObjectLockMode --output text)
[ "$mode" = COMPLIANCE ] || fail "multipart chunk ${big%%[[:space:]]*} has lock mode '$mode'"
"$FERRY" restore --repo "$LM" latest "$T/rm.img" >/dev/null
cmp "$T/other.img" "$T/rm.img" || fail "restore of the multipart lock copy differs"
ok "a chunk uploaded in parts (${big##*[[:space:]]} bytes) is COMPLIANCE-retained too, and restores"
