#!/usr/bin/env bash
# A flaky network between ferry and RGW: tests/s3/faultproxy.py fails 10% of
# requests with 503 SlowDown, resets 2% in mid-body and delays 5% by 3 s.
# The backup completes, counts its retries, restores byte-identical.  Then a
# backup killed in the middle of a multipart upload: the rerun completes and
# prune leaves no incomplete upload behind.  Also: PUT replies lost on the way
# back (the retry finds the object: 412, success), and a server without
# conditional writes (501: ferry falls back to HEAD + PUT).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/../s3/lib.sh"
# ferry signs as the primary user (awscli takes --profile)
export AWS_ACCESS_KEY_ID=$RGW_PRIMARY_AK AWS_SECRET_ACCESS_KEY=$RGW_PRIMARY_SK
S3P=$S3_RUN
start_faultproxy flaky --seed 7 --fail-rate 0.10 --reset-rate 0.02 --delay-rate 0.05 --delay-seconds 3
PX=$FP_URL

F="s3://ferry-primary/$S3P?endpoint=$PX&connections=4"
img=$T/vol.img
make_fs_image "$img" 128 11
prand $((40 << 20)) 12 | dd of="$img" bs=1M seek=70 conv=notrunc status=none

"$FERRY" init --repo "$F" >/dev/null
"$FERRY" backup --repo "$F" --volume vol --json "$img" >"$T/b.json" || fail "backup through the faults failed"
retries=$(json_get "$T/b.json" .retries)
"$FERRY" restore --repo "$F" latest "$T/r.img" >/dev/null
cmp "$img" "$T/r.img" || fail "restore through the faults differs"
"$FERRY" check --repo "$F" --read-data >/dev/null || fail "check --read-data through the faults"
s503=$(fp_stat fail_503)
sreset=$(fp_stat reset)
sdelay=$(fp_stat delayed)
[ "$s503" -gt 0 ] && [ "$sreset" -gt 0 ] || fail "the proxy injected too little: $(cat "$FP_STATS")"
[ "$retries" -gt 0 ] || fail "the backup reports no retries: $(cat "$T/b.json")"
ok "through $s503 injected 503s, $sreset resets, $sdelay delays: backup retried $retries times, restore identical, check passes"

# Lost replies: 30% of PUTs reach RGW and are stored, but their answer never
# comes back.  The retry is the same conditional PUT (If-None-Match: *): RGW
# answers 412, the object is there, and that is success.
start_faultproxy lossy --seed 3 --fail-rate 0 --reset-rate 0 --delay-rate 0 --lose-reply-rate 0.3
L="s3://ferry-primary/$S3P-lossy?endpoint=$FP_URL&connections=4"
"$FERRY" init --repo "s3://ferry-primary/$S3P-lossy?endpoint=$RGW_HTTP" >/dev/null
"$FERRY" backup --repo "$L" --volume vol --json "$img" >"$T/bl.json" || fail "backup with lost replies failed"
lost=$(fp_stat lost_reply)
s412=$(fp_stat status_412)
[ "$lost" -gt 0 ] && [ "$s412" -gt 0 ] || fail "expected lost replies answered 412 on retry: $(cat "$FP_STATS")"
"$FERRY" restore --repo "$L" latest "$T/rl.img" >/dev/null
cmp "$img" "$T/rl.img" || fail "restore after lost replies differs"
"$FERRY" check --repo "$L" --read-data >/dev/null || fail "check --read-data after lost replies"
ok "$lost lost PUT replies: the retries found $s412 object(s) already stored (412), restore identical, check passes"

# A server without conditional writes: the proxy answers 501 NotImplemented
# to If-None-Match.  ferry falls back to HEAD + PUT at the first refusal.
start_faultproxy nocond --fail-rate 0 --reset-rate 0 --delay-rate 0 --refuse-conditional
N="s3://ferry-primary/$S3P-nocond?endpoint=$FP_URL&connections=4"
"$FERRY" init --repo "s3://ferry-primary/$S3P-nocond?endpoint=$RGW_HTTP" >/dev/null
"$FERRY" backup --repo "$N" --volume vol --json "$img" >"$T/bn.json" || fail "backup without conditional writes failed"
refused=$(fp_stat refused_conditional)
s404=$(fp_stat status_404)
chunks=$(json_get "$T/bn.json" .chunks_new)
[ "$refused" -ge 1 ] && [ "$refused" -le 4 ] ||
  fail "expected 1 to 4 (the connections) refused conditional PUTs, then none: $(cat "$FP_STATS")"
[ "$s404" -ge "$chunks" ] || fail "expected a HEAD (404) before each of the $chunks chunks: $(cat "$FP_STATS")"
"$FERRY" restore --repo "$N" latest "$T/rn.img" >/dev/null
cmp "$img" "$T/rn.img" || fail "restore after the fallback differs"
ok "no conditional writes: $refused refused (501), then HEAD + PUT ($s404 HEADs found nothing), restore identical"

# Multipart: 16 MiB chunks go up in 5 MiB parts; the process dies after a part.
M="s3://ferry-primary/$S3P-mp?endpoint=$RGW_HTTP&multipart-threshold=5MiB&part-size=5MiB"
"$FERRY" init --repo "$M" --chunk-size 16M >/dev/null
rc=0
FERRY_TEST_KILL_IN_MULTIPART=1 "$FERRY" backup --repo "$M" --volume vol "$img" >/dev/null 2>&1 || rc=$?
[ "$rc" = 137 ] || fail "the backup killed mid-upload exited $rc, not 137"
uploads() { awsp primary s3api list-multipart-uploads --bucket ferry-primary --prefix "$S3P-mp/" --query 'Uploads[].UploadId' --output text | { grep -v '^None$' || true; } | wc -w; }
n=$(uploads)
[ "$n" -ge 1 ] || fail "no incomplete multipart upload after the kill"
"$FERRY" snapshots --repo "$M" --json | jq -e 'length == 0' >/dev/null || fail "the killed backup left a snapshot"
"$FERRY" backup --repo "$M" --volume vol "$img" >/dev/null 2>"$T/b2.err" || fail "rerun: $(cat "$T/b2.err")"
"$FERRY" prune --repo "$M" --json >"$T/p.json"
[ "$(json_get "$T/p.json" .uploads_aborted)" -ge 1 ] || fail "prune aborted no upload: $(cat "$T/p.json")"
n=$(uploads)
[ "$n" = 0 ] || fail "$n incomplete uploads left after prune"
"$FERRY" restore --repo "$M" latest "$T/r2.img" >/dev/null
cmp "$img" "$T/r2.img" || fail "restore of the multipart backup differs"
"$FERRY" check --repo "$M" --read-data >/dev/null || fail "check of the multipart repository"
ok "killed mid-multipart: the rerun completes, prune aborted $(json_get "$T/p.json" .uploads_aborted) incomplete upload(s), none left, restore identical"
