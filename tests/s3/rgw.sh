#!/usr/bin/env bash
# A throw-away single-node Ceph cluster with a RADOS gateway, for the S3 tests.
#
#   rgw.sh start DIR    fresh cluster under DIR (1 mon, 1 osd on a sparse
#                       bluestore file, no mgr, no cephx) + radosgw on 127.0.0.1
#                       with an HTTP and an HTTPS endpoint, two users and four
#                       buckets; writes DIR/env (see below).  A cluster already
#                       running in DIR is stopped and replaced.
#   rgw.sh stop DIR     kill every daemon of DIR by its pid file; idempotent.
#   rgw.sh status DIR   exit 0 if the gateway of DIR answers.
#
# DIR/env exports RGW_HTTP, RGW_HTTPS, RGW_CA, RGW_PRIMARY_AK, RGW_PRIMARY_SK,
# RGW_REPLICA_AK, RGW_REPLICA_SK, RGW_CREDS (AWS shared credentials file with
# profiles [primary] and [replica]), RGW_AWS_CONFIG (an AWS_CONFIG_FILE: path
# style, us-east-1), RGW_REGION and RGW_DIR.
#
# Environment: RGW_READY_SECONDS (bound of each readiness wait, 90),
# RGW_OSD_BYTES (size of the OSD's sparse bluestore file, 16 GiB: what the
# cluster can hold; the file fills up as objects are written).
#
# Exit status of start: 0 up, 77 the Ceph binaries are not installed (skip),
# anything else a failure (with the tail of the log of what did not come up).
set -euo pipefail

# Fixed test credentials (not secrets: the cluster lives on loopback for one test run).
PRIMARY_AK=FERRYPRIMARYAK000001
PRIMARY_SK=ferry-primary-secret-key-0000000000000001
REPLICA_AK=FERRYREPLICAAK000002
REPLICA_SK=ferry-replica-secret-key-0000000000000002
REGION=us-east-1
AWS=/usr/bin/aws
PY=/usr/bin/python3
READY_SECONDS=${RGW_READY_SECONDS:-90}   # bound of every readiness wait
OSD_BYTES=${RGW_OSD_BYTES:-17179869184}   # size of the OSD's sparse bluestore file (16 GiB)

MARKER=.ferry-rgw   # a DIR we made: only such a DIR is ever wiped

say() { echo "rgw.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

usage() { echo "usage: rgw.sh start|stop|status DIR" >&2; exit 2; }
[ $# = 2 ] || usage
cmd=$1
DIR=$(realpath -m -- "$2")
[ "$DIR" != / ] || die "refusing DIR=/"
case $DIR in *[[:space:]]*) die "DIR must not contain white space (it goes into ceph.conf)" ;; esac
[[ "$OSD_BYTES" =~ ^[1-9][0-9]*$ ]] && [ "$OSD_BYTES" -ge $((1 << 30)) ] ||
  die "RGW_OSD_BYTES must be a number of bytes, at least 1 GiB: '$OSD_BYTES'"
CONF=$DIR/ceph.conf

# ---------------------------------------------------------------- daemons

# pid_of NAME: the pid in DIR/run/NAME.pid if that process is alive and is one
# of this DIR's daemons (its command line names DIR's ceph.conf), else nothing.
pid_of() {
  local f=$DIR/run/$1.pid pid
  [ -s "$f" ] || return 0
  pid=$(tr -dc 0-9 < "$f")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 0
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$CONF" || return 0
  echo "$pid"
}

# kill_daemon NAME: SIGTERM, wait up to 15 s for the exit, then SIGKILL.
kill_daemon() {
  local name=$1 pid i
  pid=$(pid_of "$name")
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
      [ -d "/proc/$pid" ] || break
      # a zombie that is our own child (start failed) needs reaping; any other
      # zombie leader still has threads shutting down: keep polling
      if [ "$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" = Z ]; then
        wait "$pid" 2>/dev/null || true
      fi
      sleep 0.1 # poll interval of the exit check above
    done
    if [ -d "/proc/$pid" ]; then
      say "$name (pid $pid) did not exit within 15 s of SIGTERM: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do
        [ -d "/proc/$pid" ] || break
        sleep 0.1 # poll interval of the exit check above
      done
    fi
  fi
  rm -f "$DIR/run/$name.pid"
}

stop_all() {
  [ -d "$DIR/run" ] || return 0
  kill_daemon client.rgw
  kill_daemon osd.0
  kill_daemon mon.a
}

# spawn NAME CMD...: run a Ceph daemon in the foreground mode (-f) as a
# detached background process (own session, no tie to our stdout, so ctest
# does not wait for it), recording its pid at once.
spawn() {
  local name=$1; shift
  setsid "$@" -f -c "$CONF" </dev/null >>"$DIR/log/$name.out" 2>&1 &
  echo $! > "$DIR/run/$name.pid"
}

# log_tail NAME: the end of a daemon's logs, for an error report
log_tail() {
  local f
  for f in "$DIR/log/$1.out" "$DIR/log/$1.log"; do
    [ -s "$f" ] || continue
    echo "---- tail of $f" >&2
    tail -n 25 "$f" >&2
  done
}

# alive_or_die NAME: the daemon must still be running
alive_or_die() {
  [ -n "$(pid_of "$1")" ] && return 0
  log_tail "$1"
  die "$1 exited during start-up"
}

ceph_() { timeout 20 ceph -c "$CONF" --connect-timeout 10 "$@"; }

# wait_for WHAT NAME CHECK...: run CHECK until it succeeds, at most
# READY_SECONDS; NAME is the daemon whose log explains a failure.
wait_for() {
  local what=$1 name=$2; shift 2
  local t0=$SECONDS
  until "$@" >/dev/null 2>&1; do
    alive_or_die "$name"
    if ((SECONDS - t0 >= READY_SECONDS)); then
      log_tail "$name"
      die "$what: not ready within $READY_SECONDS s"
    fi
    sleep 0.5 # poll interval of the readiness check
  done
}

# ---------------------------------------------------------------- checks

gw_answers() {
  local port
  port=$(sed -n 's/^export RGW_HTTP=.*:\([0-9]*\)$/\1/p' "$DIR/env" 2>/dev/null)
  [ -n "$port" ] || return 1
  http_ok "http://127.0.0.1:$port/"
}
# http_ok URL [curl args]: the gateway answers an anonymous ListBuckets with 200
http_ok() {
  local url=$1 code; shift
  code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$@" "$url") || return 1
  [ "$code" = 200 ]
}
osd_up() { ceph_ osd stat -f json | grep -q '"num_up_osds":1'; }

# free_ports N: N distinct free TCP ports on 127.0.0.1 (held open together while chosen)
free_ports() {
  "$PY" -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
}

# ---------------------------------------------------------------- start

make_certs() {
  local d=$DIR/tls
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 30 \
    -subj "/CN=ferry test CA" -keyout "$d/ca.key" -out "$DIR/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>"$d/openssl.err"
  openssl req -new -newkey rsa:2048 -nodes -sha256 -subj "/CN=localhost" \
    -keyout "$d/server.key" -out "$d/server.csr" 2>>"$d/openssl.err"
  printf '%s\n' "basicConstraints=CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth" \
    "subjectAltName=IP:127.0.0.1,DNS:localhost" > "$d/server.ext"
  openssl x509 -req -sha256 -days 30 -in "$d/server.csr" -CA "$DIR/ca.pem" \
    -CAkey "$d/ca.key" -CAcreateserial -extfile "$d/server.ext" \
    -out "$d/server.crt" 2>>"$d/openssl.err"
  openssl verify -CAfile "$DIR/ca.pem" "$d/server.crt" >/dev/null
}

write_conf() {
  local fsid=$1 monport=$2 http=$3 https=$4 asok
  asok="$DIR/run/\$name.asok"
  # unix socket paths are limited to 107 bytes: no admin socket for a deep DIR
  [ ${#DIR} -le 80 ] || asok=""
  cat > "$CONF" <<CONF
# Generated by tests/s3/rgw.sh: a throw-away single-node test cluster.
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$monport
public addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc secure
keyring = $DIR/keyring
run dir = $DIR/run
pid file = $DIR/run/\$name.pid
admin socket = $asok
log file = $DIR/log/\$name.log
mon cluster log file = $DIR/log/cluster.log
crash dir = $DIR/crash
log to stderr = false
err to stderr = true
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
mon data avail warn = 2
mon data avail crit = 1

[mon]
mon data = $DIR/mon/\$cluster-\$id

[osd]
osd data = $DIR/osd/\$cluster-\$id
osd objectstore = bluestore
bluestore block create = true
bluestore block size = $OSD_BYTES
osd memory target = 536870912
osd memory base = 268435456
osd memory cache min = 67108864
osd op num shards = 2
osd op num threads per shard = 1

[client.rgw]
rgw data = $DIR/rgw
rgw frontends = beast endpoint=127.0.0.1:$http ssl_endpoint=127.0.0.1:$https ssl_certificate=$DIR/tls/server.crt ssl_private_key=$DIR/tls/server.key
rgw thread pool size = 64
ms mon client mode = crc secure
CONF
}

write_aws_files() {
  mkdir -p "$DIR/aws"
  cat > "$DIR/aws/credentials" <<CREDS
[primary]
aws_access_key_id = $PRIMARY_AK
aws_secret_access_key = $PRIMARY_SK

[replica]
aws_access_key_id = $REPLICA_AK
aws_secret_access_key = $REPLICA_SK
CREDS
  local p
  : > "$DIR/aws/config"
  for p in default "profile primary" "profile replica"; do
    printf '[%s]\nregion = %s\ncli_pager =\ns3 =\n    addressing_style = path\n\n' "$p" "$REGION" >> "$DIR/aws/config"
  done
}

# s3api PROFILE ARGS...: awscli against the HTTP endpoint, never ~/.aws
s3api() {
  local profile=$1; shift
  AWS_CONFIG_FILE=$DIR/aws/config AWS_SHARED_CREDENTIALS_FILE=$DIR/aws/credentials \
    AWS_EC2_METADATA_DISABLED=true AWS_PAGER="" \
    "$AWS" --profile "$profile" --endpoint-url "http://127.0.0.1:$HTTP_PORT" s3api "$@"
}

start() {
  local b
  for b in ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool ceph-authtool; do
    command -v "$b" >/dev/null || { echo "SKIP: $b is not installed (scripts/install-deps.sh installs Ceph)"; exit 77; }
  done
  for b in "$AWS" openssl curl "$PY"; do
    command -v "$b" >/dev/null || die "$b is not installed (scripts/install-deps.sh)"
  done

  if [ -e "$DIR" ] && [ ! -e "$DIR/$MARKER" ] && [ -n "$(ls -A "$DIR")" ]; then
    die "$DIR exists, is not empty and was not made by rgw.sh: refusing to wipe it"
  fi
  if [ -e "$DIR/$MARKER" ]; then
    # a cluster left running (or half-started) in DIR: replace it
    [ -z "$(pid_of mon.a)$(pid_of osd.0)$(pid_of client.rgw)" ] ||
      say "stopping the cluster already running in $DIR, to start a fresh one"
    stop_all
    rm -rf "$DIR"
  fi
  mkdir -p "$DIR"
  touch "$DIR/$MARKER"
  mkdir -p "$DIR/run" "$DIR/log" "$DIR/crash" "$DIR/mon" "$DIR/osd/ceph-0" "$DIR/rgw"
  # every daemon started from here on is stopped if start does not complete
  trap 'rc=$?; if [ $rc != 0 ]; then say "start failed: stopping what was started"; stop_all; fi' EXIT

  local t0=$SECONDS fsid monport ports
  fsid=$(cat /proc/sys/kernel/random/uuid)
  read -r monport HTTP_PORT HTTPS_PORT <<<"$(free_ports 3)"
  make_certs || die "openssl failed: $(tail -5 "$DIR/tls/openssl.err")"
  write_conf "$fsid" "$monport" "$HTTP_PORT" "$HTTPS_PORT"

  # monitor
  ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$monport]" "$DIR/monmap" >/dev/null
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/keyring" \
    >"$DIR/log/mon.a.mkfs" 2>&1 || { cat "$DIR/log/mon.a.mkfs" >&2; die "ceph-mon --mkfs failed"; }
  spawn mon.a ceph-mon -i a
  wait_for "monitor on 127.0.0.1:$monport" mon.a ceph_ mon stat
  say "mon.a up on 127.0.0.1:$monport ($((SECONDS - t0)) s)"

  # one OSD on a sparse bluestore file
  local uuid id
  uuid=$(cat /proc/sys/kernel/random/uuid)
  id=$(ceph_ osd new "$uuid") || die "ceph osd new failed"
  [ "$id" = 0 ] || die "ceph osd new gave id '$id', expected 0"
  ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$uuid" >"$DIR/log/osd.0.mkfs" 2>&1 ||
    { tail -20 "$DIR/log/osd.0.mkfs" >&2; die "ceph-osd --mkfs failed"; }
  spawn osd.0 ceph-osd -i 0
  wait_for "osd.0 up" osd.0 osd_up
  say "osd.0 up ($((SECONDS - t0)) s)"

  # the gateway (creates its pools on first start)
  spawn client.rgw radosgw -n client.rgw
  wait_for "radosgw on http://127.0.0.1:$HTTP_PORT" client.rgw http_ok "http://127.0.0.1:$HTTP_PORT/"
  wait_for "radosgw on https://127.0.0.1:$HTTPS_PORT" client.rgw \
    http_ok "https://127.0.0.1:$HTTPS_PORT/" --cacert "$DIR/ca.pem"
  say "radosgw answers on ports $HTTP_PORT and $HTTPS_PORT ($((SECONDS - t0)) s)"

  # users and buckets
  radosgw-admin -c "$CONF" user create --uid=primary --display-name="ferry primary" \
    --access-key="$PRIMARY_AK" --secret-key="$PRIMARY_SK" >"$DIR/log/user-primary.json" ||
    die "radosgw-admin user create primary failed"
  radosgw-admin -c "$CONF" user create --uid=replica --display-name="ferry replica" \
    --access-key="$REPLICA_AK" --secret-key="$REPLICA_SK" >"$DIR/log/user-replica.json" ||
    die "radosgw-admin user create replica failed"
  write_aws_files
  s3api primary create-bucket --bucket ferry-primary >/dev/null || die "create-bucket ferry-primary failed"
  s3api replica create-bucket --bucket ferry-replica >/dev/null || die "create-bucket ferry-replica failed"
  s3api primary create-bucket --bucket ferry-lock --object-lock-enabled-for-bucket >/dev/null ||
    die "create-bucket ferry-lock failed"
  s3api primary create-bucket --bucket ferry-nolock >/dev/null || die "create-bucket ferry-nolock failed"

  cat > "$DIR/env.tmp" <<ENV
# Written by tests/s3/rgw.sh start: source it.
export RGW_DIR=$DIR
export RGW_HTTP=http://127.0.0.1:$HTTP_PORT
export RGW_HTTPS=https://127.0.0.1:$HTTPS_PORT
export RGW_CA=$DIR/ca.pem
export RGW_REGION=$REGION
export RGW_PRIMARY_AK=$PRIMARY_AK
export RGW_PRIMARY_SK=$PRIMARY_SK
export RGW_REPLICA_AK=$REPLICA_AK
export RGW_REPLICA_SK=$REPLICA_SK
export RGW_CREDS=$DIR/aws/credentials
export RGW_AWS_CONFIG=$DIR/aws/config
ENV
  mv "$DIR/env.tmp" "$DIR/env"
  trap - EXIT

  local rss=0 n p
  for n in mon.a osd.0 client.rgw; do
    p=$(pid_of "$n")
    [ -n "$p" ] && rss=$((rss + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status")))
  done
  say "up in $((SECONDS - t0)) s, RSS $((rss / 1024)) MiB: $DIR/env (http $HTTP_PORT, https $HTTPS_PORT)"
}

case $cmd in
  start) start ;;
  stop) stop_all ;;
  status)
    [ -n "$(pid_of client.rgw)" ] || { say "no radosgw running in $DIR"; exit 1; }
    gw_answers || { say "radosgw of $DIR does not answer"; exit 1; }
    ;;
  *) usage ;;
esac
