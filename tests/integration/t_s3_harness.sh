#!/usr/bin/env bash
# The S3 test harness itself, with awscli only (no ferry): the gateway that
# tests/s3/rgw.sh started stores objects byte-identical over HTTP and HTTPS,
# checks signatures, keeps the two users apart, enforces COMPLIANCE Object
# Lock until retain-until and not after, and tests/s3/faultproxy.py injects
# the faults it is asked for while relaying signed requests intact.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../s3/lib.sh"

MiB=$((1024 * 1024))
export AWS_RETRY_MODE=standard

# --- put/get round trips, byte-identical
P="$S3_RUN/roundtrip"
prand $((3 * MiB + 12345)) rt1 > "$T/rt1"
awsp primary s3api put-object --bucket ferry-primary --key "$P/rt1" --body "$T/rt1" >/dev/null ||
  fail "put-object over HTTP"
awsp primary s3api get-object --bucket ferry-primary --key "$P/rt1" "$T/rt1.out" >/dev/null ||
  fail "get-object over HTTP"
cmp "$T/rt1" "$T/rt1.out" || fail "HTTP round trip differs"
ok "put-object/get-object over HTTP: 3 MiB byte-identical"

S3_ENDPOINT=$RGW_HTTPS awsp primary --ca-bundle "$RGW_CA" s3api get-object \
  --bucket ferry-primary --key "$P/rt1" "$T/rt1.tls" >/dev/null || fail "get-object over HTTPS"
cmp "$T/rt1" "$T/rt1.tls" || fail "HTTPS round trip differs"
code=$(curl -s -o /dev/null -w '%{http_code}' "$RGW_HTTPS/" || true)
[ "$code" = 000 ] || fail "HTTPS without the test CA answered $code: the certificate was not checked"
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$RGW_CA" "https://localhost:${RGW_HTTPS##*:}/")
[ "$code" = 200 ] || fail "HTTPS by the name localhost answered $code"
ok "HTTPS with the private CA (IP and localhost names), refused without it"

# multipart through awscli (12 MiB: 8 MiB parts)
prand $((12 * MiB + 7)) rt2 > "$T/rt2"
awsp primary s3 cp --only-show-errors "$T/rt2" "s3://ferry-primary/$P/rt2" || fail "multipart upload"
awsp primary s3 cp --only-show-errors "s3://ferry-primary/$P/rt2" "$T/rt2.out" || fail "download"
cmp "$T/rt2" "$T/rt2.out" || fail "multipart round trip differs"
etag=$(awsp primary s3api head-object --bucket ferry-primary --key "$P/rt2" --query ETag --output text)
case $etag in *-2\") ;; *) fail "12 MiB object has ETag $etag, not that of a 2-part upload" ;; esac
ok "multipart upload of 12 MiB: byte-identical, ETag $etag"

# --- signatures and users
P="$S3_RUN/auth"
echo secret > "$T/small"
awsp primary s3api put-object --bucket ferry-primary --key "$P/obj" --body "$T/small" >/dev/null
AWS_ACCESS_KEY_ID=$RGW_PRIMARY_AK AWS_SECRET_ACCESS_KEY="${RGW_PRIMARY_SK}x" \
  expect_s3_error "wrong secret key" "403 SignatureDoesNotMatch" - \
  s3api get-object --bucket ferry-primary --key "$P/obj" "$T/nope"
AWS_ACCESS_KEY_ID=FERRYNOSUCHKEY000000 AWS_SECRET_ACCESS_KEY=$RGW_PRIMARY_SK \
  expect_s3_error "unknown access key" "403 InvalidAccessKeyId" - \
  s3api list-objects-v2 --bucket ferry-primary
expect_s3_error "replica reads ferry-primary" "403 AccessDenied" replica \
  s3api get-object --bucket ferry-primary --key "$P/obj" "$T/nope"
expect_s3_error "replica lists ferry-primary" "403 AccessDenied" replica \
  s3api list-objects-v2 --bucket ferry-primary
expect_s3_error "primary writes ferry-replica" "403 AccessDenied" primary \
  s3api put-object --bucket ferry-replica --key "$P/obj" --body "$T/small"
awsp replica s3api put-object --bucket ferry-replica --key "$P/obj" --body "$T/small" >/dev/null ||
  fail "replica cannot write its own bucket"
ok "replica writes ferry-replica"
[ -z "$(ls -A "$T/nope" 2>/dev/null)" ] || fail "a refused get-object wrote data"

# --- Object Lock: COMPLIANCE holds until retain-until, then lets go.
# Two objects, so that no check depends on how fast this machine is: the one
# whose deletion must be refused is held for a day (it cannot expire while
# the test runs, however loaded the machine), and the expiry is watched on
# another, held for 2 s, by polling the clock and then the gateway.
P="$S3_RUN/lock"
until_epoch=$(($(date -u +%s) + 86400))
until_iso=$(date -u -d "@$until_epoch" +%Y-%m-%dT%H:%M:%SZ)
awsp primary s3api put-object --bucket ferry-lock --key "$P/obj" --body "$T/small" \
  --object-lock-mode COMPLIANCE --object-lock-retain-until-date "$until_iso" > "$T/put.json" ||
  fail "put-object with COMPLIANCE retention"
vid=$(jq -r .VersionId "$T/put.json")
[ -n "$vid" ] && [ "$vid" != null ] || fail "ferry-lock put-object returned no VersionId: $(cat "$T/put.json")"
awsp primary s3api head-object --bucket ferry-lock --key "$P/obj" > "$T/head.json"
[ "$(jq -r .ObjectLockMode "$T/head.json")" = COMPLIANCE ] || fail "head-object: $(cat "$T/head.json")"
case $(jq -r .ObjectLockRetainUntilDate "$T/head.json") in
  "${until_iso%Z}"*) ;;
  *) fail "retain-until $(jq -r .ObjectLockRetainUntilDate "$T/head.json"), expected $until_iso" ;;
esac
ok "head-object: COMPLIANCE until $until_iso"

# A version id may begin with '-': pass it as --version-id=ID, or awscli
# takes it for an option and fails before asking the gateway anything.
expect_s3_error "delete of the retained version" "403 AccessDenied" primary \
  s3api delete-object --bucket ferry-lock --key "$P/obj" --version-id="$vid"

# a delete without a version id only adds a delete marker, which hides the key
awsp primary s3api delete-object --bucket ferry-lock --key "$P/obj" > "$T/del.json" ||
  fail "delete-object without a version id"
[ "$(jq -r .DeleteMarker "$T/del.json")" = true ] || fail "no delete marker: $(cat "$T/del.json")"
n=$(awsp primary s3api list-objects-v2 --bucket ferry-lock --prefix "$P/" --query 'length(Contents || `[]`)' --output text)
[ "$n" = 0 ] || fail "list-objects-v2 still shows $n key(s) under a delete marker"
awsp primary s3api list-object-versions --bucket ferry-lock --prefix "$P/" > "$T/versions.json"
[ "$(jq -r '.Versions[0].VersionId' "$T/versions.json")" = "$vid" ] ||
  fail "the retained version is not listed: $(cat "$T/versions.json")"
expect_s3_error "delete of the retained version under a delete marker" "403 AccessDenied" primary \
  s3api delete-object --bucket ferry-lock --key "$P/obj" --version-id="$vid"
ok "delete without version id: a delete marker, the key is hidden, the version stays"

# after retain-until the version can be deleted: a second object, held 2 s.
# The gateway refuses a retain-until already past when the request lands
# (awscli may take seconds to start on a loaded machine): then try again,
# holding twice as long, until a put is taken.
hold=2
svid=
while [ -z "$svid" ]; do
  ((hold <= 1024)) || fail "put-object with a short COMPLIANCE retention refused up to a hold of 1024 s: $(cat "$T/put2.err")"
  short_epoch=$(($(date -u +%s) + hold))
  if awsp primary s3api put-object --bucket ferry-lock --key "$P/short" --body "$T/small" \
    --object-lock-mode COMPLIANCE --object-lock-retain-until-date "$(date -u -d "@$short_epoch" +%Y-%m-%dT%H:%M:%SZ)" \
    > "$T/put2.json" 2>"$T/put2.err"; then
    svid=$(jq -r .VersionId "$T/put2.json")
  else
    hold=$((hold * 2))
  fi
done
deadline=$((short_epoch + 300))
while (($(date -u +%s) <= short_epoch)); do
  sleep 0.2 # poll interval of the clock
done
deleted=0
while (($(date -u +%s) < deadline)); do
  if awsp primary s3api delete-object --bucket ferry-lock --key "$P/short" --version-id="$svid" \
    >/dev/null 2>"$T/del.err"; then
    deleted=1
    break
  fi
  sleep 1 # poll interval: the gateway may see the time a little later than we do
done
((deleted)) || fail "the version could still not be deleted 300 s after retain-until: $(cat "$T/del.err")"
n=$(awsp primary s3api list-object-versions --bucket ferry-lock --prefix "$P/short" --query 'length(Versions || `[]`)' --output text)
[ "$n" = 0 ] || fail "the expired version is still listed after its deletion"
ok "after retain-until the version is deleted ($(($(date -u +%s) - short_epoch)) s after)"
# ... while the day-long one is still refused
expect_s3_error "delete of the day-long version, after the short one went" "403 AccessDenied" primary \
  s3api delete-object --bucket ferry-lock --key "$P/obj" --version-id="$vid"

# an immutable object cannot be put to a bucket without Object Lock
expect_s3_error "COMPLIANCE put to ferry-nolock" "400 InvalidRequest" primary \
  s3api put-object --bucket ferry-nolock --key "$P/obj" --body "$T/small" \
  --object-lock-mode COMPLIANCE --object-lock-retain-until-date "$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)"
awsp primary s3api get-object-lock-configuration --bucket ferry-lock > "$T/olc.json"
[ "$(jq -r .ObjectLockConfiguration.ObjectLockEnabled "$T/olc.json")" = Enabled ] ||
  fail "ferry-lock object lock configuration: $(cat "$T/olc.json")"
expect_s3_error "object lock configuration of ferry-nolock" \
  "404 ObjectLockConfigurationNotFoundError" primary \
  s3api get-object-lock-configuration --bucket ferry-nolock

# --- the fault proxy
P="$S3_RUN/faults"
start_faultproxy fp --seed 11 --fail-rate 0.25 --reset-rate 0.15 --delay-rate 0.15 --delay-seconds 0.2
# plain requests first (a deterministic sequence of draws): anonymous GETs and
# PUTs with bodies, with and without Expect: 100-continue
prand 200000 fp > "$T/fp.body"
for ((i = 0; i < 16; i++)); do
  curl -s -o /dev/null -m 30 "$FP_URL/" || true
  curl -s -o /dev/null -m 30 -X PUT --data-binary @"$T/fp.body" "$FP_URL/ferry-primary/$P/anon" || true
  curl -s -o /dev/null -m 30 -X PUT -H "Expect: 100-continue" --data-binary @"$T/fp.body" \
    "$FP_URL/ferry-primary/$P/anon" || true
done
# signed requests survive the relay.  awscli retries most faults itself but
# gives up on a reset in mid-download after a few tries: retry it from here
# (bounded), as a client of a flaky store must.
export AWS_MAX_ATTEMPTS=25
# retry N CMD...: run CMD until it succeeds, at most N times
retry() {
  local n=$1 i; shift
  for ((i = 1; i <= n; i++)); do
    "$@" 2>"$T/retry.err" && return 0
  done
  cat "$T/retry.err" >&2
  return 1
}
for n in 1 2 3; do
  prand $((n * 700000)) "fp$n" > "$T/fp$n"
  S3_ENDPOINT=$FP_URL retry 10 awsp primary s3api put-object --bucket ferry-primary --key "$P/o$n" \
    --body "$T/fp$n" >/dev/null || fail "put-object $n through the fault proxy"
  S3_ENDPOINT=$FP_URL retry 10 awsp primary s3 cp --only-show-errors "s3://ferry-primary/$P/o$n" "$T/fp$n.out" ||
    fail "download $n through the fault proxy"
  cmp "$T/fp$n" "$T/fp$n.out" || fail "object $n differs after the fault proxy"
done
unset AWS_MAX_ATTEMPTS
kill -TERM "$FP_PID"
rc=0; wait "$FP_PID" || rc=$?
[ $rc = 0 ] || fail "faultproxy exited $rc on SIGTERM"
cat "$FP_STATS"
for c in requests forwarded fail_503 reset reset_request reset_response delayed; do
  (($(fp_stat $c) > 0)) || fail "faultproxy counted no $c: $(cat "$FP_STATS")"
done
(($(fp_stat errors) == 0)) || fail "faultproxy errors: $(cat "$FP_STATS")"
(($(fp_stat requests) == $(fp_stat forwarded) + $(fp_stat fail_503) + $(fp_stat reset_request) + $(fp_stat refused_conditional) + $(fp_stat errors))) ||
  fail "requests != forwarded + fail_503 + reset_request + refused_conditional + errors: $(cat "$FP_STATS")"
(($(fp_stat reset) == $(fp_stat reset_request) + $(fp_stat reset_response))) ||
  fail "reset != reset_request + reset_response: $(cat "$FP_STATS")"
ok "fault proxy: 503s, resets and delays injected, counts add up, signed objects intact"

# --- the proxy's lost replies and refused conditional writes, with curl
# (SigV4 by curl itself, payload SHA-256 signed): a PUT whose reply is lost is
# stored all the same; If-None-Match then gets RGW's 412 through the proxy,
# and 501 from a proxy that refuses conditional writes.
# (curl sends Expect: 100-continue with these bodies; "Expect:" to drop it
# would still be signed, empty, and RGW would refuse the signature)
sigput() { # URL FILE [extra curl args]: print the last HTTP status (000 or 100: no final answer)
  local url=$1 f=$2; shift 2
  curl -s -o /dev/null -w '%{http_code}' -m 30 --aws-sigv4 "aws:amz:$RGW_REGION:s3" \
    --user "$RGW_PRIMARY_AK:$RGW_PRIMARY_SK" -H "x-amz-content-sha256: $(sha256sum "$f" | cut -d' ' -f1)" \
    "$@" -T "$f" "$url" || true
}
start_faultproxy lose --fail-rate 0 --reset-rate 0 --delay-rate 0 --lose-reply-rate 1
got=$(sigput "$FP_URL/ferry-primary/$P/lost" "$T/fp1")
case $got in 000 | 100) ;; *) fail "a PUT through --lose-reply-rate 1 got an answer: $got" ;; esac
awsp primary s3 cp --only-show-errors "s3://ferry-primary/$P/lost" "$T/lost.out" || fail "the PUT with a lost reply was not stored"
cmp "$T/fp1" "$T/lost.out" || fail "the PUT with a lost reply stored other bytes"
[ "$(fp_stat lost_reply)" = 1 ] || fail "lost_reply != 1: $(cat "$FP_STATS")"
start_faultproxy nocond --fail-rate 0 --reset-rate 0 --delay-rate 0 --refuse-conditional
got=$(sigput "$FP_URL/ferry-primary/$P/lost" "$T/fp2" -H "If-None-Match: *")
[ "$got" = 501 ] || fail "a conditional PUT through --refuse-conditional: $got, expected 501"
got=$(sigput "$RGW_HTTP/ferry-primary/$P/lost" "$T/fp2" -H "If-None-Match: *")
[ "$got" = 412 ] || fail "RGW answered a conditional PUT of an existing key with $got, expected 412"
got=$(sigput "$FP_URL/ferry-primary/$P/fresh" "$T/fp2")
[ "$got" = 200 ] || fail "a plain PUT through --refuse-conditional: $got"
[ "$(fp_stat refused_conditional)" = 1 ] && [ "$(fp_stat status_200)" = 1 ] ||
  fail "refused_conditional/status_200 != 1/1: $(cat "$FP_STATS")"
ok "fault proxy: a lost PUT reply leaves the object stored; If-None-Match gets RGW's 412, or 501 from a proxy that refuses it"
