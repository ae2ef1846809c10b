# Shared by the integration tests: run by ctest with FERRY (the binary) set.
# A test exits 0 pass, 1 fail, 77 skip (after printing why).
set -euo pipefail

: "${FERRY:?FERRY must name the ferry binary (ctest sets it)}"
export FERRY_PASSWORD=${FERRY_PASSWORD:-correct horse battery staple}
export FERRY_SCRYPT_LOG2N=${FERRY_SCRYPT_LOG2N:-12}   # a cheaper KDF for tests
unset FERRY_REPO

T=$(mktemp -d /var/tmp/ferry-test.XXXXXX)
_mounts=()
cleanup() {
  local m l
  for m in "${_mounts[@]}"; do umount -l "$m" 2>/dev/null || true; done
  # new_loop runs in $(...), a subshell: find our loop devices by backing path.
  if [ "$(id -u)" = 0 ]; then
    losetup -n -l -O NAME,BACK-FILE 2>/dev/null | while read -r l f; do
      case "$f" in "$T"/*) losetup -d "$l" 2>/dev/null || true ;; esac
    done
  fi
  rm -rf "$T"
}
trap cleanup EXIT

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok - $*"; }

# proc_state PID: the process state letter (R, S, T, D, Z...) from
# /proc/PID/stat, or "gone"
proc_state() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1 || echo gone; }
# wait_state PID STATE: until PID is in STATE (0), or it ended or 120 s
# passed (1): a condition observed, bounded generously for a loaded host
wait_state() {
  local i s
  for ((i = 0; i < 2400; i++)); do
    s=$(proc_state "$1")
    [ "$s" = "$2" ] && return 0
    case "$s" in Z | gone | "") return 1 ;; esac
    sleep 0.05 # poll interval of the condition above, not a synchronisation
  done
  return 1
}
# wait_stopped PID [WHAT]: wait_state PID T, or fail naming WHAT
wait_stopped() { wait_state "$1" T || fail "${2:+$2: }process $1 did not stop (state $(proc_state "$1"))"; }

need_root() { [ "$(id -u)" = 0 ] || skip "needs root ($1)"; }

# new_loop IMG -> prints the loop device (detached at exit)
new_loop() {
  need_root "loop devices"
  local dev
  dev=$(losetup --find --show --direct-io=on "$1" 2>/dev/null) || skip "losetup cannot attach a loop device here"
  echo "$dev"
}

# mount_tmpfs DIR SIZE
mount_tmpfs() {
  need_root "mounting a small filesystem"
  mkdir -p "$1"
  mount -t tmpfs -o "size=$2" tmpfs "$1" 2>/dev/null || skip "cannot mount tmpfs here"
  _mounts+=("$1")
}

# expect_fail "what" PATTERN cmd...: the command must fail (exit 1), with one
# stderr line matching PATTERN.
expect_fail() {
  local what=$1 pat=$2; shift 2
  local rc=0
  "$@" >"$T/out" 2>"$T/err" || rc=$?
  [ "$rc" != 0 ] || fail "$what: succeeded, expected failure"
  grep -qE -- "$pat" "$T/err" || { cat "$T/err" >&2; fail "$what: stderr does not match /$pat/"; }
  if grep -q "AddressSanitizer\|runtime error" "$T/err"; then cat "$T/err" >&2; fail "$what: sanitizer report"; fi
  ok "$what: $(head -c 300 "$T/err" | tr '\n' ' ')"
}

# prand N SEED: N deterministic pseudo-random bytes (AES-CTR keystream).
prand() { openssl enc -aes-128-ctr -nosalt -pass "pass:$2" -in <(head -c "$1" /dev/zero) 2>/dev/null; }

# A deterministic test image: an ext4 filesystem populated with files, no mount needed.
# make_fs_image IMG SIZE_MB SEED
make_fs_image() {
  local img=$1 mb=$2 seed=$3
  local d="$T/fsdir.$seed"
  mkdir -p "$d/docs" "$d/bin"
  cp -r /usr/share/doc/libc6 /usr/share/doc/bash "$d/docs/" 2>/dev/null || true
  prand $((3 * 1024 * 1024)) "$seed" > "$d/bin/random.dat"
  seq 1 200000 | sed "s/^/line $seed /" > "$d/docs/lines.txt"
  truncate -s "${mb}M" "$img"
  mkfs.ext4 -q -F -d "$d" "$img" >/dev/null
  rm -rf "$d"
}

# json_get FILE EXPR: a value from a JSON document (jq).
json_get() { jq -r "$2" "$1"; }
