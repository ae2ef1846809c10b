#!/usr/bin/env bash
# run.sh TEST_FILE.py: run one CSI test program (tests/csi/test_*.py) against
# `ferry agent`, as tests/integration/t_csi_*.sh do.
#
# The scene: a sparse 4 GiB image formatted XFS with reflink and loop-mounted
# (the agents' state directories live in it), a directory standing for
# kubelet's, a scratch directory on another filesystem (sockets, logs,
# repositories), and the CSI client stubs generated from proto/csi.proto.
# Everything is undone at exit, whatever happened: agents still running are
# killed (by the pids csilib recorded), publish mounts under the kubelet
# directory and the state filesystem are unmounted, and the loop devices
# backed by files of this run (found by backing file) are detached.
#
# Exit: 0 pass, 1 fail, 77 skip (not root, or no XFS with reflink here).
set -euo pipefail

: "${FERRY:?FERRY must name the ferry binary (ctest sets it)}"
SRC=${FERRY_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
PY=/usr/bin/python3
test_file=${1:?usage: run.sh TEST_FILE.py [unittest args]}
shift

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || skip "needs root (loop devices, mounts)"
[ -x "$FERRY" ] || fail "FERRY ($FERRY) is not executable"
[ -f "$SRC/tests/csi/$test_file" ] || fail "no test program tests/csi/$test_file"
command -v mkfs.xfs >/dev/null || skip "mkfs.xfs is missing (xfsprogs)"
grep -qw xfs /proc/filesystems || modprobe xfs 2>/dev/null || true
grep -qw xfs /proc/filesystems || skip "this kernel has no XFS"
"$PY" -c 'import grpc' 2>/dev/null || fail "$PY has no grpc module (python3-grpcio)"

T=$(mktemp -d /var/tmp/ferry-csi.XXXXXX)

# Mount points under $1, deepest first.
mounts_under() {
  awk -v p="$1/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

py=
cleanup() {
  local rc=$? pid rest l f m tries
  set +e
  # 0. The test program, if a signal cut the run short.
  if [ -n "$py" ] && kill -0 "$py" 2>/dev/null; then
    kill -TERM "$py" 2>/dev/null
    for tries in $(seq 100); do kill -0 "$py" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$py" 2>/dev/null
  fi
  # 1. Agents csilib started and that are still running.
  if [ -f "$T/work/agent.pids" ]; then
    while read -r pid rest; do
      [ -d "/proc/$pid" ] || continue
      grep -qa -- "$T/" "/proc/$pid/cmdline" 2>/dev/null || continue   # only ours
      echo "cleanup: killing agent $pid still running"
      kill -KILL "$pid" 2>/dev/null
      for tries in $(seq 100); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    done < "$T/work/agent.pids"
  fi
  # 2. Publish mounts (kubelet dir) and anything mounted inside the state fs.
  for m in $(mounts_under "$T/kubelet") $(mounts_under "$T/work") $(mounts_under "$T/state"); do
    echo "cleanup: unmounting $m"
    umount "$m" 2>/dev/null || umount -l "$m"
  done
  # 3. Loop devices over files of the state fs (volumes the agent attached).
  losetup -n -l -O NAME,BACK-FILE 2>/dev/null | while read -r l f; do
    case "$f" in "$T/state/"*)
      echo "cleanup: detaching $l ($f)"; losetup -d "$l" ;;
    esac
  done
  # 4. The state fs and its own loop device.
  if mountpoint -q "$T/state" 2>/dev/null; then
    umount "$T/state" 2>/dev/null || umount -l "$T/state"
  fi
  for l in $(losetup -j "$T/state.img" -O NAME -n 2>/dev/null); do losetup -d "$l"; done
  rm -rf "$T"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$T/state" "$T/kubelet" "$T/work"
chmod 0750 "$T/kubelet"
truncate -s 4G "$T/state.img"
mkfs.xfs -q -m reflink=1 "$T/state.img" 2>"$T/mkfs.err" || skip "mkfs.xfs -m reflink=1 failed: $(cat "$T/mkfs.err")"
mount -t xfs -o loop "$T/state.img" "$T/state" 2>"$T/mount.err" || skip "cannot loop-mount XFS here: $(cat "$T/mount.err")"

bash "$SRC/tests/csi/gen_stubs.sh" "$T/stubs"

export CSI_STUBS="$T/stubs" CSI_STATE_ROOT="$T/state" CSI_KUBELET_ROOT="$T/kubelet" CSI_WORK="$T/work"
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$SRC/tests/csi"
echo "ferry: $FERRY"
echo "scene: $T (state XFS on $(losetup -j "$T/state.img" -O NAME -n))"
# In the background, so that a signal to this script (ctest's timeout, ^C)
# runs the cleanup at once rather than after the program ends.
"$PY" -u "$SRC/tests/csi/$test_file" -v "$@" &
py=$!
rc=0
wait "$py" || rc=$?
py=
if [ "$rc" != 0 ]; then
  # The agents' logs, for the report (they go away with $T).
  for f in "$T"/work/*.log; do
    [ -f "$f" ] || continue
    echo "---- $(basename "$f") (last 60 lines)"
    tail -n 60 "$f"
  done
  exit 1
fi
