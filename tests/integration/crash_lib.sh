# The kill -9 campaign shared by t_crash.sh (file:// repositories) and
# t_s3_crash.sh (a copy and its forget and prune on S3), sourced after lib.sh.
#
# Each round changes two volumes (8 MiB images of 1 MiB chunks, a random
# number of chunks rewritten with fresh random data, so the test knows how many
# chunks each backup must store) and runs backup, copy, forget and prune,
# killing the ones named in CRASH_KILL with SIGKILL after a store operation
# chosen at random: the test hook FERRY_TEST_KILL_AFTER_OPS (docs/store.md)
# counts the process's puts and deletes, so a kill lands anywhere, in the
# middle of prune's and forget's deletes too, which no sleep would reach.
# After each kill:
#   - check --read-data passes;
#   - every listed snapshot restores byte-identical to the image it was taken
#     from (each backup tags its snapshot img=NAME; the images are kept);
#   - the rerun completes: backup and copy store only what was missing, forget
#     and prune remove what the killed run had still to remove.
# The locks the killed processes leave are what a user would meet: on this
# host they are stale (their pid is gone), other commands ignore them, prune
# removes them and says so, and `ferry unlock` removes them; both are tested.
#
# The caller sets P (the repository backed up) and C (a copy of P, made with
# init --copy-of), CRASH_KILL (e.g. "backup copy forget prune"), CRASH_GC
# (P or C: the repository whose forget and prune are killed; the other one
# gets the same forget and prune, not killed) and CRASH_ROUNDS, then calls
# crash_campaign.  For an s3:// repository it defines s3_nlocks URL (the
# number of lock objects).  The seed is printed; FERRY_CRASH_SEED=N reruns
# the same kill points on the same data.

MiB=1048576
CRASH_BLOCKS=${CRASH_BLOCKS:-8}      # chunks per volume image
CRASH_KEEP=1                          # forget --keep-last, per volume
IMG=$T/img
mkdir -p "$IMG"

CRASH_SEED=${FERRY_CRASH_SEED:-$(( $(od -An -N4 -tu4 /dev/urandom) % 2147483647 ))}
RANDOM=$CRASH_SEED
echo "# seed $CRASH_SEED (FERRY_CRASH_SEED=$CRASH_SEED $(basename "$0") reruns these kill points)"
_crash_fail() { fail "$* [seed $CRASH_SEED]"; }

# rnd LO HI: a random integer in [LO, HI] into $R (no subshell: RANDOM's state
# must advance in this shell for a seed to reproduce the run).
rnd() { R=$(($1 + RANDOM % ($2 - $1 + 1))); }

declare -A kills=() mids=() cur=()

# objects DIR: the names of the objects under DIR of a file:// repository
# (none before the first is written).
objects() { [ ! -d "$1" ] || find "$1" -type f ! -name '.tmp-*' -printf '%f\n'; }
# nlocks URL: lock objects in the repository (stale ones included).
nlocks() {
  case $1 in
    s3://*) s3_nlocks "$1" ;;
    *) objects "$1/locks" | wc -l ;;
  esac
}
# dry REPO: prune --dry-run's counts into $T/dry.json (no lock taken).
# --allow-empty: a copy killed before its first manifest leaves chunks and no
# snapshot, which prune refuses to count otherwise (a dry run deletes nothing).
dry() { "$FERRY" prune --repo "$1" --dry-run --allow-empty --json >"$T/dry.json" || _crash_fail "prune --dry-run on $1"; }
# Chunk and snapshot objects: counted in the directory of a file:// repository
# (cheaper than a process), asked of ferry for S3.
nchunks() {
  case $1 in
    s3://*) dry "$1"; jq .chunks_present "$T/dry.json" ;;
    *) objects "$1/chunks" | wc -l ;;
  esac
}
snap_ids() {
  case $1 in
    s3://*) "$FERRY" snapshots --repo "$1" --json | jq -r '.[].id' ;;
    *) objects "$1/snapshots" ;;
  esac | LC_ALL=C sort | tr '\n' ' ' | sed 's/ $//'
}
nsnaps() { local s; s=$(snap_ids "$1"); wc -w <<<"$s"; }

# verify REPO WHAT: check --read-data passes and every listed snapshot
# restores byte-identical to the image named by its img tag.
verify() {
  local repo=$1 what=$2 id img n=0
  "$FERRY" check --repo "$repo" --read-data -q >"$T/check.out" 2>&1 ||
    { cat "$T/check.out" >&2; _crash_fail "$what: check --read-data fails"; }
  "$FERRY" snapshots --repo "$repo" --json >"$T/snaps.json" || _crash_fail "$what: snapshots fails"
  while read -r id img; do
    [ -f "$IMG/$img" ] || _crash_fail "$what: snapshot $id is of image '$img', which this test never backed up"
    rm -f "$T/out.img"
    "$FERRY" restore --repo "$repo" -q "$id" "$T/out.img" 2>"$T/restore.err" ||
      { cat "$T/restore.err" >&2; _crash_fail "$what: snapshot $id ($img) does not restore"; }
    cmp -s "$IMG/$img" "$T/out.img" || _crash_fail "$what: snapshot $id restores other bytes than image $img"
    n=$((n + 1))
  done < <(jq -r '.[] | "\(.id) \(.labels.img)"' "$T/snaps.json")
  rm -f "$T/out.img"
  VERIFIED=$n
}

# killed WHAT N CMD...: run CMD with the hook armed to kill it right after its
# Nth put or delete; it must die by SIGKILL (exit 137).  N never exceeds the
# operations the command makes, counted by the caller: a command that ends
# on its own means that count (or the command) is wrong.  Sets KILLED_PID.
killed() {
  local what=$1 n=$2 rc=0; shift 2
  FERRY_TEST_KILL_AFTER_OPS=any:$n "$@" >"$T/killed.out" 2>"$T/killed.err" &
  KILLED_PID=$!
  wait "$KILLED_PID" 2>/dev/null || rc=$? # (2>: no "Killed" notice from bash)
  if grep -q "AddressSanitizer\|runtime error" "$T/killed.err"; then
    cat "$T/killed.err" >&2; _crash_fail "$what: sanitizer report"
  fi
  [ "$rc" = 137 ] || { cat "$T/killed.err" >&2; _crash_fail "$what: exit $rc, not killed (137) after store operation $n"; }
  kills[${what%% *}]=$((${kills[${what%% *}]:-0} + 1))
}

# new_image VOL ROUND: the volume's next image into $IMG/VOL.rROUND, the last
# one with $K random chunks rewritten (every chunk of a first image); sets
# NAME and K.  Fresh random data never dedupes: each backup must store K chunks.
new_image() {
  local v=$1 r=$2 b blocks=() i
  NAME=$v.r$r
  if [ -z "${cur[$v]:-}" ]; then
    prand $((CRASH_BLOCKS * MiB)) "$CRASH_SEED.$NAME" >"$IMG/$NAME"
    K=$CRASH_BLOCKS
  else
    cp "$IMG/${cur[$v]}" "$IMG/$NAME"
    rnd $((CRASH_BLOCKS / 4)) $((CRASH_BLOCKS * 3 / 4)); K=$R
    for ((b = 0; b < CRASH_BLOCKS; b++)); do blocks+=("$b"); done
    for ((i = 0; i < K; i++)); do # K distinct blocks: a partial shuffle
      rnd "$i" $((CRASH_BLOCKS - 1))
      b=${blocks[$R]}; blocks[$R]=${blocks[$i]}; blocks[$i]=$b
      prand $MiB "$CRASH_SEED.$NAME.$b" | dd of="$IMG/$NAME" bs=1M seek="$b" conv=notrunc status=none
    done
  fi
  cur[$v]=$NAME
}

# The images no snapshot of P or C names any more (and not a volume's
# current one) are deleted: disk stays small over many rounds.
drop_images() {
  local keep f
  keep=" $("$FERRY" snapshots --repo "$P" --json | jq -r '.[].labels.img' | tr '\n' ' ')"
  keep+=" $("$FERRY" snapshots --repo "$C" --json | jq -r '.[].labels.img' | tr '\n' ' ') ${cur[*]} "
  for f in "$IMG"/*; do
    [[ $keep == *" ${f##*/} "* ]] || rm -f "$f"
  done
}

# --- backup of volume V to P: K new chunks; its store operations are its
# lock, K chunks, the manifest and the lock's removal (K + 3).
crash_backup() {
  local v=$1 r=$2 kill=$3 p0 p1 p2 n
  new_image "$v" "$r"
  p0=$(nchunks "$P")
  if [ "$kill" = kill ]; then
    rnd 1 $((K + 3)); n=$R
    killed "backup $NAME" "$n" "$FERRY" backup --repo "$P" --volume "$v" --tag "img=$NAME" -q "$IMG/$NAME"
    p1=$(nchunks "$P")
    [ $((p1 - p0)) -le "$K" ] || _crash_fail "backup $NAME: killed, it stored $((p1 - p0)) chunks of $K"
    verify "$P" "backup $NAME killed after operation $n of $((K + 3))"
    echo "ok - backup $NAME killed after store operation $n of $((K + 3)): $((p1 - p0)) of $K chunks stored, check passes, $VERIFIED snapshots restore"
  else
    p1=$p0
  fi
  "$FERRY" backup --repo "$P" --volume "$v" --tag "img=$NAME" --json "$IMG/$NAME" >"$T/b.json" ||
    _crash_fail "backup $NAME: the rerun fails"
  p2=$(nchunks "$P")
  [ "$(jq .chunks_new "$T/b.json")" = $((p2 - p1)) ] ||
    _crash_fail "backup $NAME: the rerun stored chunks the repository had: $(cat "$T/b.json")"
  [ $((p2 - p0)) = "$K" ] || _crash_fail "backup $NAME: $((p2 - p0)) new chunks in the repository, $K expected"
}

# --- copy P -> C.  C holds what it holds after the last round (C's chunks
# are P's then), so it lacks P's new chunks and snapshots; its store
# operations are a lock on each side, those chunks and manifests, and the
# locks' removal.
crash_copy() {
  local c0 c1 c2 s1 want_c want_s n m
  c0=$(nchunks "$C"); want_c=$(($(nchunks "$P") - c0)); want_s=$(($(nsnaps "$P") - $(nsnaps "$C")))
  m=$((4 + want_c + want_s))
  if [[ " $CRASH_KILL " == *" copy "* ]]; then
    rnd 1 "$m"; n=$R
    killed "copy r$1" "$n" "$FERRY" copy --from "$P" --to "$C" -q
    c1=$(nchunks "$C"); s1=$(nsnaps "$C")
    verify "$C" "copy killed after operation $n of $m"
    echo "ok - copy killed after store operation $n of $m: $((c1 - c0)) of $want_c chunks and $((s1 + want_s - $(nsnaps "$P"))) of $want_s snapshots sent, check passes, $VERIFIED snapshots restore"
  else
    c1=$c0; s1=$(nsnaps "$C")
  fi
  "$FERRY" copy --from "$P" --to "$C" --json >"$T/c.json" 2>"$T/c.err" ||
    { cat "$T/c.err" >&2; _crash_fail "copy: the rerun fails"; }
  c2=$(nchunks "$C")
  [ "$(jq .chunks_copied "$T/c.json")" = $((want_c - (c1 - c0))) ] && [ $((c2 - c0)) = "$want_c" ] ||
    _crash_fail "copy: the rerun sent other than the $((want_c - (c1 - c0))) missing chunks: $(cat "$T/c.json")"
  [ "$(jq .snapshots_copied "$T/c.json")" = $(($(nsnaps "$P") - s1)) ] ||
    _crash_fail "copy: the rerun sent other than the missing snapshots: $(cat "$T/c.json")"
  [ "$(snap_ids "$C")" = "$(snap_ids "$P")" ] || _crash_fail "copy: the copy has not P's snapshots after the rerun"
}

# --- forget --keep-last on G: D manifests to delete; its store operations
# are its lock, D deletes and the lock's removal.
crash_forget() {
  local g=$1 d s0 s1 n keep
  "$FERRY" forget --repo "$g" --keep-last $CRASH_KEEP --dry-run --json >"$T/fd.json" || _crash_fail "forget --dry-run"
  d=$(jq .removed "$T/fd.json")
  keep=$(jq -r '[.volumes[].keep[].id] | sort | join(" ")' "$T/fd.json")
  s0=$(nsnaps "$g")
  # Every other round the kill lands among the deletes (after the 1st to the
  # (D-1)th); otherwise anywhere, the lock's writing and removal included.
  if [ $(($2 % 2)) = 0 ] && [ "$d" -ge 2 ]; then rnd 2 "$d"; else rnd 1 $((d + 2)); fi
  n=$R
  killed "forget r$2" "$n" "$FERRY" forget --repo "$g" --keep-last $CRASH_KEEP -q
  s1=$(nsnaps "$g")
  [ $((s0 - s1)) -le "$d" ] || _crash_fail "forget: killed, it removed $((s0 - s1)) snapshots of $d"
  if [ $((s0 - s1)) -gt 0 ] && [ $((s0 - s1)) -lt "$d" ]; then
    mids[forget]=$((${mids[forget]:-0} + 1))
  elif [ $(($2 % 2)) = 0 ] && [ "$d" -ge 2 ]; then
    _crash_fail "forget killed after delete $((n - 1)) of $d: $((s0 - s1)) deleted (one at a time expected)"
  fi
  verify "$g" "forget killed after operation $n of $((d + 2))"
  echo "ok - forget killed after store operation $n of $((d + 2)): $((s0 - s1)) of $d snapshots removed, check passes, $VERIFIED snapshots restore"
  "$FERRY" forget --repo "$g" --keep-last $CRASH_KEEP --json >"$T/f.json" 2>"$T/f.err" ||
    { cat "$T/f.err" >&2; _crash_fail "forget: the rerun fails"; }
  [ "$(jq .removed "$T/f.json")" = $((d - (s0 - s1))) ] ||
    _crash_fail "forget: the rerun removed other than the $((d - (s0 - s1))) left: $(cat "$T/f.json")"
  [ "$(snap_ids "$g")" = "$keep" ] || _crash_fail "forget: after the rerun, not the snapshots the policy keeps"
}

# --- prune on G: D chunks to delete; its store operations are its lock, the
# removal of the L stale locks the killed commands left, D deletes and its
# lock's removal.  Every other round the user runs `ferry unlock` after the
# kill; otherwise the rerun itself removes the killed prune's stale lock.
crash_prune() {
  local g=$1 r=$2 d ref x0 x1 l n m
  if [ $((r % 2)) = 1 ]; then
    # Garbage to delete in plenty: a backup of 12 fresh chunks killed before
    # its manifest (its lock and 12 puts), so that some kills below land
    # among the deletes with more deletes after them than run at once.
    NAME=junk.r$r
    prand $((16 * MiB)) "$CRASH_SEED.$NAME" >"$IMG/$NAME"
    killed "junk $NAME" 13 "$FERRY" backup --repo "$g" --volume junk --tag "img=$NAME" -q "$IMG/$NAME"
  fi
  dry "$g"
  d=$(jq .chunks_removed "$T/dry.json"); ref=$(jq .chunks_referenced "$T/dry.json"); x0=$(jq .chunks_present "$T/dry.json")
  l=$(nlocks "$g")
  m=$((2 + l + d))
  # Every other round the kill lands after one of the first D - 8 chunk
  # deletes: up to 8 run at once (the stores' concurrency), and those in
  # flight complete, so at least one is left for the rerun.  Otherwise the
  # kill lands anywhere.
  if [ $((r % 2)) = 1 ]; then rnd $((2 + l)) $((1 + l + d - 8)); else rnd 1 "$m"; fi
  n=$R
  killed "prune r$r" "$n" "$FERRY" prune --repo "$g" -q
  x1=$(nchunks "$g")
  [ $((x0 - x1)) -le "$d" ] || _crash_fail "prune: killed, it removed $((x0 - x1)) chunks of $d"
  if [ $((x0 - x1)) -gt 0 ] && [ $((x0 - x1)) -lt "$d" ]; then
    mids[prune]=$((${mids[prune]:-0} + 1))
  elif [ $((r % 2)) = 1 ]; then
    _crash_fail "prune killed after chunk delete $((n - 1 - l)) of $d: $((x0 - x1)) deleted, more than 8 at once?"
  fi
  verify "$g" "prune killed after operation $n of $m"
  echo "ok - prune killed after store operation $n of $m ($l stale locks, $d chunks to delete): $((x0 - x1)) deleted, check passes, $VERIFIED snapshots restore"
  if [ $((r % 2)) = 0 ]; then
    "$FERRY" unlock --repo "$g" --json >"$T/u.json" || _crash_fail "unlock after a killed prune fails"
    [ "$(jq .kept "$T/u.json")" = 0 ] && [ "$(nlocks "$g")" = 0 ] ||
      _crash_fail "unlock left locks after a killed prune: $(cat "$T/u.json")"
    if [ "$n" -lt "$m" ]; then # killed before it removed its own lock
      jq -e --arg pid "$KILLED_PID" '[.locks[] | select(.removed and .stale and (.description | test("^prune \\(exclusive\\) on host .* pid " + $pid + " ")))] | length == 1' \
        "$T/u.json" >/dev/null || _crash_fail "unlock did not remove the killed prune's lock as stale: $(cat "$T/u.json")"
    fi
  fi
  "$FERRY" prune --repo "$g" --json >"$T/p.json" 2>"$T/p.err" || { cat "$T/p.err" >&2; _crash_fail "prune: the rerun fails"; }
  if [ $((r % 2)) = 1 ] && [ "$n" -lt "$m" ]; then
    grep -q "removed stale lock locks/[0-9a-f]*: prune (exclusive) on host .* pid $KILLED_PID .*(process $KILLED_PID is gone from this host)" "$T/p.err" ||
      _crash_fail "the rerun of prune did not report removing the killed prune's lock: $(cat "$T/p.err")"
  fi
  [ "$(jq .chunks_removed "$T/p.json")" = $((d - (x0 - x1))) ] ||
    _crash_fail "prune: the rerun removed other than the $((d - (x0 - x1))) chunks left: $(cat "$T/p.json")"
  dry "$g"
  [ "$(jq .chunks_removed "$T/dry.json")" = 0 ] && [ "$(jq .chunks_present "$T/dry.json")" = "$ref" ] ||
    _crash_fail "prune: after the rerun, the chunks are not those the snapshots name: $(cat "$T/dry.json")"
  [ "$(nlocks "$g")" = 0 ] || _crash_fail "prune: locks are left after the rerun"
}

# gc_plain G: forget and prune with the same policy, not killed.
gc_plain() {
  "$FERRY" forget --repo "$1" --keep-last $CRASH_KEEP -q || _crash_fail "forget on $1"
  "$FERRY" prune --repo "$1" -q 2>/dev/null || _crash_fail "prune on $1"
}

crash_campaign() {
  local r k other
  [ "$CRASH_GC" = P ] && other=$C || other=$P
  local g=${!CRASH_GC}
  for ((r = 1; r <= CRASH_ROUNDS; r++)); do
    # one volume's backup killed, the other's not, in turn
    if [[ " $CRASH_KILL " == *" backup "* ]] && [ $((r % 2)) = 1 ]; then k=kill; else k=; fi
    crash_backup a "$r" "$k"
    if [[ " $CRASH_KILL " == *" backup "* ]] && [ $((r % 2)) = 0 ]; then k=kill; else k=; fi
    crash_backup b "$r" "$k"
    crash_copy "$r"
    if [[ " $CRASH_KILL " == *" forget "* ]]; then crash_forget "$g" "$r"; else "$FERRY" forget --repo "$g" --keep-last $CRASH_KEEP -q; fi
    if [[ " $CRASH_KILL " == *" prune "* ]]; then crash_prune "$g" "$r"; else "$FERRY" prune --repo "$g" -q 2>/dev/null; fi
    gc_plain "$other"
    [ "$(snap_ids "$C")" = "$(snap_ids "$P")" ] || _crash_fail "round $r: P and its copy keep other snapshots"
    drop_images
  done
  verify "$P" "the end"
  verify "$C" "the end"
}

# crash_report WHAT...: every command named was killed in every round, and
# forget and prune at least once in the middle of their deletes.
crash_report() {
  local w
  for w in "$@"; do
    [ "${kills[$w]:-0}" -ge "$CRASH_ROUNDS" ] || _crash_fail "$w was killed ${kills[$w]:-0} times, not $CRASH_ROUNDS"
  done
  for w in forget prune; do
    [[ " $* " == *" $w "* ]] || continue
    [ "${mids[$w]:-0}" -ge 1 ] || _crash_fail "no kill of $w landed in the middle of its deletes"
  done
  local line="" k
  for k in "$@"; do line+=" $k ${kills[$k]:-0} (${mids[$k]:-0} mid-delete)"; done
  echo "ok - kills:$line; seed $CRASH_SEED"
}
