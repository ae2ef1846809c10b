#!/usr/bin/env bash
# Incremental backup with real change: a 1 GiB volume image (ext4 with files)
# on XFS with reflinks; rounds of seeded random writes, a reflink clone after
# each; every clone backed up with each change source into its own
# repository; every snapshot restored and compared with its clone; `ferry
# diff` must cover every byte written between two rounds.
. "$(dirname "$0")/lib.sh"
need_root "loop-mounting an XFS image"
command -v mkfs.xfs >/dev/null || skip "mkfs.xfs missing (xfsprogs)"
PY=/usr/bin/python3
[ -x $PY ] || skip "Debian's python3 missing"

MB=1048576
truncate -s 8G "$T/xfs.img"
mkfs.xfs -q -m reflink=1 "$T/xfs.img" || skip "mkfs.xfs -m reflink=1 failed"
X="$T/xfs"
mkdir -p "$X"
mount -o loop "$T/xfs.img" "$X" || skip "cannot loop-mount XFS here"
_mounts+=("$X")

# The volume: ext4 with files (a 200 MiB file of random data among them).
d="$T/content"
mkdir -p "$d/docs" "$d/data"
cp -r /usr/share/doc/bash "$d/docs/" 2>/dev/null || true
prand $((200 * MB)) volume > "$d/data/random.dat"
seq 1 300000 | sed 's/^/record /' > "$d/data/records.txt"
truncate -s 1G "$X/vol.img"
mkfs.ext4 -q -F -d "$d" "$X/vol.img" >/dev/null
rm -rf "$d"

# write_round N: seeded random writes into the volume; the byte ranges go to
# $T/written-N (what really changed) and $T/ranges-N (a --changed-ranges file).
write_round() {
  $PY - "$X/vol.img" "$1" "$T/written-$1" <<'PYEOF'
import os, random, sys
path, rnd, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
r = random.Random(1000 + rnd)
fd = os.open(path, os.O_RDWR)
size = os.fstat(fd).st_size
ranges = []
for _ in range(40):
    n = r.randint(1, 96 * 1024)
    off = r.randrange(0, size - n)
    os.pwrite(fd, r.randbytes(n), off)
    ranges.append((off, n))
if rnd == 1:   # data where round 2 punches a hole
    off, n = 300 * 1048576, 4 * 1048576
    os.pwrite(fd, r.randbytes(n), off)
    ranges.append((off, n))
if rnd == 2:   # a hole punched where there was data: a change to zeros
    off, n = 300 * 1048576 + 12345, 3 * 1048576
    import ctypes, ctypes.util
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2
    if libc.fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, ctypes.c_long(off), ctypes.c_long(n)) != 0:
        sys.exit("punch hole failed")
    ranges.append((off, n))
if rnd == 3:   # the volume grows by 5 MiB and 123 bytes; its new tail is written
    grow = 5 * 1048576 + 123
    os.pwrite(fd, r.randbytes(grow), size)
    ranges.append((size, grow))
os.fsync(fd)
os.close(fd)
with open(out, "w") as f:
    for off, n in ranges:
        f.write(f"{off} {n}\n")
PYEOF
  cp "$T/written-$1" "$T/ranges-$1"
}

# covers WRITTEN DIFF: every written byte lies inside a diff range.
covers() {
  $PY - "$1" "$2" <<'PYEOF'
import sys
w = [tuple(map(int, l.split())) for l in open(sys.argv[1]) if l.strip()]
d = sorted(tuple(map(int, l.split())) for l in open(sys.argv[2]) if l.strip())
import bisect
starts = [o for o, _ in d]
for off, n in w:
    pos, end = off, off + n
    while pos < end:
        i = bisect.bisect_right(starts, pos) - 1
        if i < 0 or d[i][0] + d[i][1] <= pos:
            sys.exit(f"written byte {pos} (range {off} {n}) is not in the diff")
        pos = d[i][0] + d[i][1]
PYEOF
}

# auto: no change source given; the parent's source file is a reflink
# sibling, so the extent diff is chosen by itself.
SOURCES=${T_INCR_SOURCES:-"range-list extent-diff manifest-scan auto"}
for s in $SOURCES; do $FERRY init --repo "$T/repo-$s" -q; done
declare -A snap

ROUNDS=4
for r in $(seq 0 $ROUNDS); do
  [ "$r" = 0 ] || write_round "$r"
  cp --reflink=always "$X/vol.img" "$X/clone-$r.img"
  for s in $SOURCES; do
    args=()
    if [ "$r" -gt 0 ]; then
      case $s in
        range-list) args=(--changed-ranges "$T/ranges-$r" --parent "${snap[$s,$((r - 1))]}") ;;
        extent-diff) args=(--base-image "$X/clone-$((r - 1)).img") ;;
        manifest-scan) args=(--manifest-scan) ;;
      esac
    fi
    j=$($FERRY backup --repo "$T/repo-$s" --volume vol --json "${args[@]}" "$X/clone-$r.img")
    snap[$s,$r]=$(jq -r .snapshot_id <<<"$j")
    src=$(jq -r .change_source <<<"$j")
    if [ "$r" = 0 ]; then
      [ "$src" = full ] || fail "round 0 with $s: not a full backup: $j"
    else
      want=$s; [ "$s" != auto ] || want=extent-diff   # the parent's source is the base
      [ "$src" = "$want" ] || fail "round $r: asked for $s, got $src: $j"
      [ -z "$(jq -r .warning <<<"$j")" ] || fail "round $r with $s warned: $j"
      [ "$(jq -r .bytes_new <<<"$j")" -gt 0 ] || fail "round $r with $s stored nothing new: $j"
    fi
    if [ "$r" -gt 0 ] && [ "$s" != manifest-scan ]; then
      # Only changed blocks were read: at most 41 writes touch 2 blocks each, plus the grown tail.
      [ "$(jq -r .bytes_read <<<"$j")" -le $((100 * 4 * MB)) ] || fail "round $r with $s read too much: $j"
      [ "$(jq -r ".bytes_reused + .bytes_zero" <<<"$j")" -gt $((800 * MB)) ] || fail "round $r with $s reused too little: $j"
    fi
    ok "round $r $s: read $(($(jq -r .bytes_read <<<"$j") / MB)) MiB, stored $(($(jq -r .bytes_stored <<<"$j") / MB)) MiB, reused $(($(jq -r .bytes_reused <<<"$j") / MB)) MiB"
  done
  if [ "$r" -gt 0 ]; then
    for s in $SOURCES; do
      $FERRY diff --repo "$T/repo-$s" "${snap[$s,$((r - 1))]}" "${snap[$s,$r]}" > "$T/diff-$s-$r"
      covers "$T/written-$r" "$T/diff-$s-$r" || fail "round $r: ferry diff in the $s repository misses a written byte"
    done
    for s in $SOURCES; do cmp -s "$T/diff-$s-$r" "$T/diff-manifest-scan-$r" ||
      fail "round $r: the $s and manifest-scan repositories disagree on what changed"; done
    ok "round $r: ferry diff covers all $(wc -l < "$T/written-$r") written ranges ($(wc -l < "$T/diff-manifest-scan-$r") diff ranges), same in every repository"
  fi
done

# Every snapshot restores byte-identical to its clone.
for s in $SOURCES; do
  for r in $(seq 0 $ROUNDS); do
    $FERRY restore --repo "$T/repo-$s" "${snap[$s,$r]}" "$T/out.img"
    cmp "$X/clone-$r.img" "$T/out.img" || fail "$s round $r: restore differs from its clone"
    rm -f "$T/out.img"
  done
  $FERRY check --repo "$T/repo-$s" --read-data >/dev/null || fail "$s: check --read-data fails"
  ok "$s: all $((ROUNDS + 1)) snapshots restore byte-identical, check --read-data passes"
done

# A failing change source falls back to the manifest scan with a warning,
# never to a wrong backup.
prev=${snap[manifest-scan,$ROUNDS]}
printf '0 12\nnonsense here\n' > "$T/bad-ranges"
j=$($FERRY backup --repo "$T/repo-manifest-scan" --volume vol --json --changed-ranges "$T/bad-ranges" --parent "$prev" \
  "$X/clone-$ROUNDS.img" 2>"$T/err")
[ "$(jq -r .change_source <<<"$j")" = manifest-scan ] || fail "malformed ranges did not fall back: $j"
grep -q "warning: change source range-list failed.*line 2" "$T/err" || fail "no warning naming line 2: $(cat "$T/err")"
ok "malformed ranges file: $(cat "$T/err")"
# A base image modified after the parent read it: fall back, never trust its extents.
last=$X/clone-$ROUNDS.img
$FERRY backup --repo "$T/repo-extent-diff" --volume vol -q "$last" >/dev/null
cp --reflink=always "$last" "$X/next.img"
echo "changed after the backup" | dd of="$last" bs=1 seek=$((700 * MB)) conv=notrunc status=none
j=$($FERRY backup --repo "$T/repo-extent-diff" --volume vol --json --base-image "$last" "$X/next.img" 2>"$T/err")
[ "$(jq -r .change_source <<<"$j")" = manifest-scan ] || fail "modified base image did not fall back: $j"
grep -q "was replaced or modified after the parent read it" "$T/err" || fail "no warning about the base: $(cat "$T/err")"
$FERRY restore --repo "$T/repo-extent-diff" "$(jq -r .snapshot_id <<<"$j")" "$T/out.img"
cmp "$X/next.img" "$T/out.img" || fail "backup after a modified base restores wrong"
rm -f "$T/out.img"
ok "modified base image: $(cat "$T/err")"
# A base image that is not the parent's source: fall back.
j=$($FERRY backup --repo "$T/repo-extent-diff" --volume vol --json --base-image "$X/clone-0.img" \
  "$X/clone-$ROUNDS.img" 2>"$T/err")
[ "$(jq -r .change_source <<<"$j")" = manifest-scan ] || fail "wrong base image did not fall back: $j"
grep -q "is not .*the path the parent was read from" "$T/err" || fail "no warning about the base: $(cat "$T/err")"
ok "wrong base image: $(cat "$T/err")"
# On a filesystem without FIEMAP (tmpfs): fall back.  The parent is read
# from b.img, so the base image is right and FIEMAP itself must fail.
mount_tmpfs "$T/tmpfs" 64M
prand $((8 * MB)) tmpfs > "$T/tmpfs/b.img"
$FERRY init --repo "$T/repo-tmp" -q
$FERRY backup --repo "$T/repo-tmp" --volume t -q "$T/tmpfs/b.img" >/dev/null
cp "$T/tmpfs/b.img" "$T/tmpfs/a.img"
echo hi | dd of="$T/tmpfs/a.img" conv=notrunc status=none
j=$($FERRY backup --repo "$T/repo-tmp" --volume t --json --base-image "$T/tmpfs/b.img" "$T/tmpfs/a.img" 2>"$T/err")
[ "$(jq -r .change_source <<<"$j")" = manifest-scan ] || fail "tmpfs extent diff did not fall back: $j"
grep -q "warning: change source extent-diff failed" "$T/err" || fail "no extent-diff warning: $(cat "$T/err")"
$FERRY restore --repo "$T/repo-tmp" latest "$T/out.img"
cmp "$T/tmpfs/a.img" "$T/out.img" || fail "fallback backup on tmpfs restores wrong"
ok "tmpfs: $(cat "$T/err")"
