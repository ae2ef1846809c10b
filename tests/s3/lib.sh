# Shared by the S3 integration tests (tests/integration/t_s3_*.sh), sourced
# after tests/integration/lib.sh.  ctest gives them RGW_DIR, the directory of
# the cluster that the s3/rgw_start fixture started (tests/s3/rgw.sh).
#
# After sourcing: the variables of $RGW_DIR/env (RGW_HTTP, RGW_HTTPS, RGW_CA,
# RGW_PRIMARY_AK/SK, RGW_REPLICA_AK/SK, RGW_CREDS, RGW_AWS_CONFIG, RGW_REGION),
# awscli pointed at them (never at ~/.aws), and the helpers below.

S3_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
AWS=/usr/bin/aws

: "${RGW_DIR:?RGW_DIR must name the directory of tests/s3/rgw.sh start (ctest sets it)}"
if [ ! -s "$RGW_DIR/env" ]; then
  command -v radosgw >/dev/null || skip "Ceph RGW is not installed (scripts/install-deps.sh)"
  fail "no $RGW_DIR/env: the s3/rgw_start fixture did not run, or failed"
fi
. "$RGW_DIR/env"
bash "$S3_DIR/rgw.sh" status "$RGW_DIR" || fail "the radosgw of $RGW_DIR does not answer"
[ -x "$AWS" ] || fail "$AWS (awscli) is not installed (scripts/install-deps.sh)"

export AWS_CONFIG_FILE=$RGW_AWS_CONFIG
export AWS_SHARED_CREDENTIALS_FILE=$RGW_CREDS
export AWS_EC2_METADATA_DISABLED=true
export AWS_PAGER=""
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE AWS_DEFAULT_PROFILE

# A key prefix unique to this run of this test: tests share the buckets, and
# the objects of ferry-lock cannot always be deleted afterwards.
S3_RUN="$(basename "$0" .sh).$(date -u +%Y%m%dT%H%M%S).$$"

# awsp PROFILE ARGS...: awscli as user PROFILE (primary, replica) against
# S3_ENDPOINT (default RGW_HTTP), without the progress chatter.
awsp() {
  local p=$1; shift
  "$AWS" --profile "$p" --endpoint-url "${S3_ENDPOINT:-$RGW_HTTP}" "$@"
}

# s3_error PROFILE ARGS...: run an awscli command that must fail and print
# "STATUS CODE" of the S3 error it got (e.g. "403 AccessDenied").  The answer
# is read from --debug: awscli 2.9 crashes on RGW's error bodies with an empty
# <Message> instead of printing the code.  For PROFILE "-" the credentials
# come from the environment.
s3_error() {
  local p=$1; shift
  local rc=0 out status code
  out=$T/s3_error.$$.log
  if [ "$p" = - ]; then
    "$AWS" --debug --endpoint-url "${S3_ENDPOINT:-$RGW_HTTP}" "$@" >/dev/null 2>"$out" || rc=$?
  else
    "$AWS" --debug --profile "$p" --endpoint-url "${S3_ENDPOINT:-$RGW_HTTP}" "$@" >/dev/null 2>"$out" || rc=$?
  fi
  [ "$rc" != 0 ] || fail "aws $*: succeeded, expected an S3 error"
  # the last answer: urllib3 logs '"METHOD /path HTTP/1.1" STATUS LENGTH'
  status=$(grep -oE '" [0-9]{3} ([0-9]+|None)$' "$out" | tail -1 | cut -d' ' -f2)
  code=$(grep -oE '<Code>[^<]*</Code>' "$out" | tail -1 | sed 's/<[^>]*>//g')
  echo "${status:-none} ${code:-none}"
}

# expect_s3_error "what" "STATUS CODE" PROFILE ARGS...
expect_s3_error() {
  local what=$1 want=$2; shift 2
  local got
  got=$(s3_error "$@")
  [ "$got" = "$want" ] || fail "$what: got '$got', expected '$want'"
  ok "$what: $got"
}

# Fault proxies started by start_faultproxy, stopped at exit.
_s3_proxies=()
_s3_cleanup() {
  local p
  for p in "${_s3_proxies[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${_s3_proxies[@]}"; do wait "$p" 2>/dev/null || true; done
  cleanup
}
trap _s3_cleanup EXIT

# start_faultproxy NAME [faultproxy options]: a tests/s3/faultproxy.py in
# front of RGW_HTTP.  Sets FP_PID, FP_PORT, FP_URL (http://127.0.0.1:PORT) and
# FP_STATS (its stats file).
start_faultproxy() {
  local name=$1; shift
  local pf=$T/$name.port i
  FP_STATS=$T/$name.stats
  rm -f "$pf"
  /usr/bin/python3 "$S3_DIR/faultproxy.py" --listen 127.0.0.1:0 \
    --upstream "${RGW_HTTP#http://}" --port-file "$pf" --stats-file "$FP_STATS" \
    "$@" 2>"$T/$name.err" &
  FP_PID=$!
  _s3_proxies+=("$FP_PID")
  for ((i = 0; i < 200; i++)); do
    [ -s "$pf" ] && break
    kill -0 "$FP_PID" 2>/dev/null || { cat "$T/$name.err" >&2; fail "faultproxy $name exited"; }
    sleep 0.05 # poll interval of the port file above
  done
  [ -s "$pf" ] || fail "faultproxy $name did not listen within 10 s"
  FP_PORT=$(cat "$pf")
  FP_URL=http://127.0.0.1:$FP_PORT
}

# fp_stat NAME: one counter of the stats file of the last started proxy
# (0 for a counter never incremented, e.g. status_412)
fp_stat() { /usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], 0))' "$FP_STATS" "$1"; }
