#!/usr/bin/env bash
# The extent-diff change source on a real XFS filesystem with reflink: a
# sparse 2 GiB image, mkfs.xfs -m reflink=1, loop-mounted, and the test_cbt
# unit program (FY_TEST_CBT) run with FY_CBT_XFS_DIR pointing into it.  In
# that mode its extent tests must run and pass; a skip there is a failure.
. "$(dirname "$0")/lib.sh"

: "${FY_TEST_CBT:=${FERRY_BUILD:-}/tests/test_cbt}"
[ -x "$FY_TEST_CBT" ] || fail "FY_TEST_CBT ($FY_TEST_CBT) is not the built test_cbt program"
need_root "mounting an XFS image"
command -v mkfs.xfs >/dev/null || skip "mkfs.xfs is missing (xfsprogs)"
grep -qw xfs /proc/filesystems || modprobe xfs 2>/dev/null || true
grep -qw xfs /proc/filesystems || skip "this kernel has no XFS"

truncate -s 2G "$T/xfs.img"
mkfs.xfs -q -m reflink=1 "$T/xfs.img" || fail "mkfs.xfs -m reflink=1 failed"
dev=$(new_loop "$T/xfs.img")
mkdir "$T/mnt"
mount -t xfs "$dev" "$T/mnt" || skip "cannot mount XFS from $dev here"
_mounts+=("$T/mnt")
mkdir "$T/mnt/cbt"

rc=0
FY_CBT_XFS_DIR="$T/mnt/cbt" "$FY_TEST_CBT" >"$T/out" 2>&1 || rc=$?
cat "$T/out"
[ "$rc" = 0 ] || fail "test_cbt on XFS exited $rc"
# Each extent test must have run and passed here: a skip is a failure.
for t in t_extents_random_writes t_extents_identical t_extents_holes t_extents_unsynced \
	 t_extents_grown t_extents_sparse_large; do
  grep -qF "[       OK ] $t" "$T/out" || fail "$t did not pass on XFS"
done
ok "extent-diff on XFS with reflink ($dev)"
