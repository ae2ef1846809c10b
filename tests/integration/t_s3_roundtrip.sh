#!/usr/bin/env bash
# Backups through a real S3 server (Ceph RGW, SigV4 checked): round trips over
# HTTP and HTTPS, a copy in another account written in the same pass, an
# independent client (awscli) reading what ferry wrote, ferry copy, and the
# bad inputs (wrong secret, unknown CA, missing bucket, a target that is not
# a copy, optional and required copies that fail).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/../s3/lib.sh"
# ferry signs as the primary user (awscli takes --profile)
export AWS_ACCESS_KEY_ID=$RGW_PRIMARY_AK AWS_SECRET_ACCESS_KEY=$RGW_PRIMARY_SK
S3P=$S3_RUN

P="s3://ferry-primary/$S3P?endpoint=$RGW_HTTP"
PS="s3://ferry-primary/$S3P?endpoint=$RGW_HTTPS"
R="s3://ferry-replica/$S3P?endpoint=$RGW_HTTP&credentials=$RGW_CREDS&profile=replica"
C="s3://ferry-replica/$S3P-copy?endpoint=$RGW_HTTPS&ca-file=$RGW_CA&credentials=$RGW_CREDS&profile=replica"

img=$T/vol.img
make_fs_image "$img" 96 1
prand $((8 << 20)) 2 | dd of="$img" bs=1M seek=60 conv=notrunc status=none

"$FERRY" init --repo "$P" >/dev/null
"$FERRY" init --repo "$R" --copy-of "$P" >/dev/null
ok "init: a primary, and a copy in another account (the replica user)"

# 1. A full backup to the primary and the copy in one pass.
"$FERRY" backup --repo "$P" --copy-to "$R" --volume vol --json "$img" >"$T/b1.json"
id1=$(json_get "$T/b1.json" .snapshot_id)
[ "$(json_get "$T/b1.json" '.targets | length')" = 2 ] || fail "two targets expected in the summary"
[ "$(json_get "$T/b1.json" '[.targets[].ok] | all')" = true ] || fail "a target failed: $(cat "$T/b1.json")"
new1=$(json_get "$T/b1.json" .chunks_new)
[ "$(json_get "$T/b1.json" '.targets[0].chunks_new')" = "$new1" ] &&
  [ "$(json_get "$T/b1.json" '.targets[1].chunks_new')" = "$new1" ] || fail "each target gets every new chunk"
cp "$img" "$T/vol1.img"
ok "backup to two targets: $new1 chunks sealed once, put to each"

# 2. Change files, back up again; restore both snapshots from both targets.
prand $((5 << 20)) 3 | dd of="$img" bs=1M seek=20 conv=notrunc status=none
"$FERRY" backup --repo "$P" --copy-to "$R" --volume vol --json "$img" >"$T/b2.json"
id2=$(json_get "$T/b2.json" .snapshot_id)
for repo in "$P" "$R"; do
  "$FERRY" restore --repo "$repo" --overwrite "$id1" "$T/r1.img" >/dev/null
  "$FERRY" restore --repo "$repo" --overwrite "$id2" "$T/r2.img" >/dev/null
  cmp "$T/vol1.img" "$T/r1.img" || fail "snapshot 1 from ${repo%%\?*} differs"
  cmp "$img" "$T/r2.img" || fail "snapshot 2 from ${repo%%\?*} differs"
  "$FERRY" check --repo "$repo" --read-data >/dev/null || fail "check --read-data on ${repo%%\?*}"
done
ok "both snapshots restore byte-identical from the primary and the copy; check --read-data passes on both"

# 3. HTTPS: the gateway's private CA must be named; then it works.
expect_fail "https with an unknown CA" "certificate|SSL.*--s3-ca-file" "$FERRY" snapshots --repo "$PS"
"$FERRY" snapshots --repo "$PS" --s3-ca-file "$RGW_CA" --json | jq -e 'length == 2' >/dev/null ||
  fail "snapshots over https with --s3-ca-file"
"$FERRY" restore --repo "$PS&ca-file=$RGW_CA" "$id2" "$T/r3.img" >/dev/null
cmp "$img" "$T/r3.img" || fail "restore over https differs"
ok "https: certificate verified against the CA (UNSIGNED-PAYLOAD + x-amz-checksum-crc32c)"

# 4. An independent client reads what ferry wrote: awscli lists and downloads
#    the whole repository, which is then a valid file repository.
nobj=$(awsp primary s3 ls --recursive "s3://ferry-primary/$S3P/" | wc -l)
awsp primary s3 cp --recursive --quiet "s3://ferry-primary/$S3P/" "$T/dl/"
nfile=$(find "$T/dl" -type f | wc -l)
[ "$nobj" -gt 10 ] && [ "$nobj" = "$nfile" ] || fail "awscli listed $nobj objects, downloaded $nfile"
"$FERRY" check --repo "$T/dl" --read-data >/dev/null || fail "the downloaded repository does not check"
"$FERRY" restore --repo "$T/dl" "$id2" "$T/r4.img" >/dev/null
cmp "$img" "$T/r4.img" || fail "restore from the awscli download differs"
ok "awscli lists $nobj objects and downloads them; the download checks and restores byte-identical"

# 5. ferry copy: seed a new copy over https, then nothing left to send.
"$FERRY" init --repo "$C" --copy-of "$P" >/dev/null
"$FERRY" copy --from "$P" --to "$C" --json >"$T/c1.json"
[ "$(json_get "$T/c1.json" .snapshots_copied)" = 2 ] || fail "copy: $(cat "$T/c1.json")"
"$FERRY" copy --from "$P" --to "$C" --json >"$T/c2.json"
[ "$(json_get "$T/c2.json" .snapshots_copied)" = 0 ] && [ "$(json_get "$T/c2.json" .chunks_copied)" = 0 ] ||
  fail "a second copy sent something: $(cat "$T/c2.json")"
"$FERRY" restore --repo "$C" "$id1" "$T/r5.img" >/dev/null
cmp "$T/vol1.img" "$T/r5.img" || fail "restore from the ferry copy differs"
ok "ferry copy: $(json_get "$T/c1.json" .chunks_copied) chunks sent once, a rerun sends none, restore identical"

# 6. Other ways in: a Kubernetes Secret mounted as files, listings in pages
#    of 5 keys (continuation tokens), TLS without verification (tests only).
mkdir -p "$T/secret"
printf '%s\n' "$RGW_REPLICA_AK" >"$T/secret/AWS_ACCESS_KEY_ID"
printf '%s\n' "$RGW_REPLICA_SK" >"$T/secret/AWS_SECRET_ACCESS_KEY"
RS="s3://ferry-replica/$S3P?endpoint=$RGW_HTTP&secret-dir=$T/secret&list-page=5"
AWS_ACCESS_KEY_ID=wrong AWS_SECRET_ACCESS_KEY=wrong "$FERRY" check --repo "$RS" --read-data -v \
  >"$T/sd.out" 2>&1 || fail "secret-dir: $(cat "$T/sd.out")"
grep -q "2 snapshots.*no problems" "$T/sd.out" || fail "secret-dir check: $(cat "$T/sd.out")"
"$FERRY" snapshots --repo "$PS&insecure=1" --json | jq -e 'length == 2' >/dev/null || fail "insecure=1"
ok "secret-dir (a mounted Kubernetes Secret), paged listings (list-page=5), insecure=1"

# 7. Bad input: one clear line, a non-zero exit, nothing lost.
AWS_SECRET_ACCESS_KEY=not-the-secret expect_fail "wrong secret key" "403 SignatureDoesNotMatch" \
  "$FERRY" backup --repo "$P" --volume vol "$img"
AWS_ACCESS_KEY_ID=NOSUCHKEY expect_fail "unknown access key" "403 InvalidAccessKeyId" \
  "$FERRY" snapshots --repo "$P"
expect_fail "missing bucket" "NoSuchBucket" "$FERRY" init --repo "s3://ferry-nosuchbucket/x?endpoint=$RGW_HTTP"
expect_fail "unknown URL parameter" "unknown or invalid parameter 'colour=blue'" \
  "$FERRY" snapshots --repo "$P&colour=blue"
"$FERRY" init --repo "s3://ferry-replica/$S3P-other?endpoint=$RGW_HTTP&credentials=$RGW_CREDS&profile=replica" >/dev/null
expect_fail "--copy-to a repository that is not a copy" "is not a copy of" \
  "$FERRY" backup --repo "$P" --volume vol "$img" \
  --copy-to "s3://ferry-replica/$S3P-other?endpoint=$RGW_HTTP&credentials=$RGW_CREDS&profile=replica"
expect_fail "a required copy that cannot be reached" "127.0.0.1:9" \
  "$FERRY" backup --repo "$P" --volume vol "$img" --copy-to "s3://ferry-replica/x?endpoint=http://127.0.0.1:9&retries=0"
"$FERRY" snapshots --repo "$P" --json | jq -e 'length == 2' >/dev/null || fail "a failed backup left a snapshot"
"$FERRY" check --repo "$P" --read-data >/dev/null || fail "check after the failures"
ok "failures left the primary with its 2 snapshots, checked"

"$FERRY" backup --repo "$P" --volume vol --json "$img" \
  --copy-to-optional "s3://ferry-replica/x?endpoint=http://127.0.0.1:9&retries=0" >"$T/b3.json" 2>"$T/b3.err" ||
  fail "an optional copy failed the backup: $(cat "$T/b3.err")"
grep -q "optional copy .*127.0.0.1:9.* dropped" "$T/b3.err" || fail "no warning for the dropped copy"
[ "$(json_get "$T/b3.json" .snapshot_id)" != null ] || fail "no snapshot"
ok "an optional copy that fails is dropped with a warning: $(head -c 200 "$T/b3.err")"

# No secret key in anything ferry printed during this test.
for sk in "$RGW_PRIMARY_SK" "$RGW_REPLICA_SK"; do
  if grep -rlF -- "$sk" "$T"/*.json "$T"/*.out "$T"/err "$T"/out 2>/dev/null | grep -v '/secret/'; then
    fail "a secret key appears in ferry's output"
  fi
done
ok "no secret key in any output of ferry"
