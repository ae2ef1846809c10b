#!/usr/bin/env bash
# check --read-data-subset on a file:// repository made by `ferry backup` of
# real images (ext4 filesystems, and an image of 240 distinct blocks):
# 1. over M = 1..5, the slices N = 1..M are disjoint, each holds a fair share,
#    their union is exactly what --read-data reads, a chunk's slice is the
#    leading 64 bits of its id mod M, and it stays there when a backup adds
#    chunks and when prune removes some;
# 2. a flipped byte in a chunk is found by --read-data and by exactly the one
#    slice that holds it (the same lines, exit 1), not by the others (exit 0);
# 3. 100% reads everything; 20% reads between 5% and 40% of the chunks, a new
#    sample each run;
# 4. every bad SPEC, and --read-data with --read-data-subset: exit 2, one line.
# Which chunks a run read: its --verbose lines ("read chunk ID").
. "$(dirname "$0")/lib.sh"

R="$T/repo"
MiB=$((1024 * 1024))
$FERRY init --repo "$R" --chunk-size 1M >/dev/null
make_fs_image "$T/fs1.img" 48 one
make_fs_image "$T/fs2.img" 48 two
# 240 blocks of 1 MiB, each distinct in its first 64 bytes and zero after:
# 240 chunks that are cheap to store and to read.
/usr/bin/python3 - "$T/blocks.img" <<'PY'
import hashlib, sys
with open(sys.argv[1], 'wb') as f:
    for i in range(240):
        f.seek(i << 20)
        f.write(hashlib.sha512(b'block %d' % i).digest())
    f.truncate(240 << 20)
PY
for v in fs1 fs2 blocks; do
  $FERRY backup --repo "$R" --volume $v "$T/$v.img" >/dev/null || fail "backup of $v"
done

# run NAME ARGS...: check -v --json ARGS; NAME.json, NAME.err, NAME.ids (the
# sorted ids of the chunks read), NAME.rc
run() {
  local name=$1 rc=0; shift
  $FERRY check --repo "$R" --verbose --json "$@" >"$T/$name.json" 2>"$T/$name.err" || rc=$?
  echo $rc >"$T/$name.rc"
  if grep -q "AddressSanitizer\|runtime error" "$T/$name.err"; then cat "$T/$name.err" >&2; fail "$name: sanitizer report"; fi
  sed -n 's/^ferry: read chunk \([0-9a-f]\{64\}\)$/\1/p' "$T/$name.err" | sort >"$T/$name.ids"
  [ "$(sort -u "$T/$name.ids" | wc -l)" = "$(wc -l <"$T/$name.ids")" ] || fail "$name: a chunk was read twice"
}
# The slice the test expects: the id's leading 64 bits (16 hex digits) mod M, plus 1.
slice_of() { /usr/bin/python3 -c 'import sys; print(int(sys.argv[1][:16], 16) % int(sys.argv[2]) + 1)' "$1" "$2"; }

run all --read-data
[ "$(cat "$T/all.rc")" = 0 ] || fail "check --read-data of the fresh repository: $(cat "$T/all.err")"
total=$(wc -l <"$T/all.ids")
ls "$R"/chunks/*/ | grep -E '^[0-9a-f]{64}$' | sort >"$T/present.ids"
cmp -s "$T/all.ids" "$T/present.ids" || fail "--read-data did not read every chunk of the store"
[ "$total" -ge 240 ] || fail "only $total chunks: the statistical bounds below need 240 or more"
[ "$(json_get "$T/all.json" .chunks_selected)" = "$total" ] && [ "$(json_get "$T/all.json" .chunks_read)" = "$total" ] &&
  [ "$(json_get "$T/all.json" .subset)" = all ] || fail "--read-data --json: $(cat "$T/all.json")"
ok "--read-data reads all $total chunks"

# --- 1. slices partition the chunks
# slices M: check every slice N/M; leaves slice-M-N.ids
slices() {
  local m=$1 n
  : >"$T/union.ids"
  for n in $(seq 1 "$m"); do
    run "slice-$m-$n" --read-data-subset "$n/$m"
    [ "$(cat "$T/slice-$m-$n.rc")" = 0 ] || fail "slice $n/$m: exit $(cat "$T/slice-$m-$n.rc"): $(cat "$T/slice-$m-$n.err")"
    local got
    got=$(wc -l <"$T/slice-$m-$n.ids")
    [ "$(json_get "$T/slice-$m-$n.json" .subset)" = "$n/$m" ] &&
      [ "$(json_get "$T/slice-$m-$n.json" .chunks_selected)" = "$got" ] &&
      [ "$(json_get "$T/slice-$m-$n.json" .chunks_read)" = "$got" ] &&
      [ "$(json_get "$T/slice-$m-$n.json" .chunks_referenced)" = "$(wc -l <"$T/present.ids")" ] &&
      [ "$(json_get "$T/slice-$m-$n.json" .problems)" = 0 ] || fail "slice $n/$m: --json says otherwise: $(cat "$T/slice-$m-$n.json")"
    # a fair share: between half and twice 1/M of the chunks (binomial: far outside 6 sigma)
    [ $((2 * got * m)) -ge "$(wc -l <"$T/present.ids")" ] && [ $((got * m)) -le $((2 * $(wc -l <"$T/present.ids"))) ] ||
      fail "slice $n/$m read $got chunks of $(wc -l <"$T/present.ids"): not a fair share"
    cat "$T/slice-$m-$n.ids" >>"$T/union.ids"
  done
  sort "$T/union.ids" >"$T/union.sorted"
  [ -z "$(uniq -d "$T/union.sorted")" ] || fail "slices of $m overlap: $(uniq -d "$T/union.sorted" | head -n 3 | tr '\n' ' ')"
  cmp -s "$T/union.sorted" "$T/present.ids" || fail "slices 1..$m together did not read exactly what --read-data reads"
}
for m in 1 2 3 4 5; do
  slices $m
  ok "M = $m: slices 1..$m are disjoint, fair, and together read what --read-data reads"
done
for n in 1 2 3 4 5; do
  for id in $(head -n 4 "$T/slice-5-$n.ids"); do
    [ "$(slice_of "$id" 5)" = "$n" ] || fail "chunk $id read by slice $n/5, but its leading 64 bits say slice $(slice_of "$id" 5)"
  done
done
ok "a chunk's slice is its id's leading 64 bits mod M (spot-checked)"
for n in 1 2 3 4 5; do cp "$T/slice-5-$n.ids" "$T/before-5-$n.ids"; done

# A new backup adds chunks; a forget and prune then removes chunks: every chunk
# that stays keeps its slice.  (fs3 goes in as volume fs1's second snapshot.)
make_fs_image "$T/fs3.img" 48 three
$FERRY backup --repo "$R" --volume fs1 "$T/fs3.img" >/dev/null || fail "backup of fs3"
ls "$R"/chunks/*/ | grep -E '^[0-9a-f]{64}$' | sort >"$T/present.ids"
[ "$(wc -l <"$T/present.ids")" -gt "$total" ] || fail "the new backup added no chunks"
slices 5
for n in 1 2 3 4 5; do
  [ -z "$(comm -23 "$T/before-5-$n.ids" "$T/slice-5-$n.ids")" ] || fail "after a backup, chunks left slice $n/5"
  cp "$T/slice-5-$n.ids" "$T/mid-5-$n.ids"
done
ok "after a backup added $(( $(wc -l <"$T/present.ids") - total )) chunks, every old chunk kept its slice"
mid=$(wc -l <"$T/present.ids")
$FERRY forget --repo "$R" --volume fs1 --keep-last 1 >/dev/null || fail "forget"
$FERRY prune --repo "$R" >/dev/null || fail "prune"
ls "$R"/chunks/*/ | grep -E '^[0-9a-f]{64}$' | sort >"$T/present.ids"
[ "$(wc -l <"$T/present.ids")" -lt "$mid" ] || fail "forget and prune removed no chunks"
slices 5
for n in 1 2 3 4 5; do
  [ -z "$(comm -23 "$T/slice-5-$n.ids" "$T/mid-5-$n.ids")" ] || fail "after prune, a chunk moved into slice $n/5"
done
ok "after prune removed $((mid - $(wc -l <"$T/present.ids"))) chunks, every remaining chunk kept its slice"
total=$(wc -l <"$T/present.ids")

# --- 2. a flipped byte: found by --read-data and by the one slice that holds it
cid=$(sed -n "$((total / 2))p" "$T/present.ids")
chunk=$(ls "$R"/chunks/*/"$cid")
/usr/bin/python3 - "$chunk" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
b[len(b) // 2] ^= 0x01
open(p, 'wb').write(b)
PY
run bad-all --read-data
[ "$(cat "$T/bad-all.rc")" = 1 ] && grep -q "^ferry: chunk $cid is corrupt" "$T/bad-all.err" ||
  fail "--read-data with a flipped byte in $cid: exit $(cat "$T/bad-all.rc"): $(cat "$T/bad-all.err")"
grep -v '^ferry: read chunk ' "$T/bad-all.err" >"$T/bad-all.lines"
for m in 1 2 3 4 5; do
  found=0
  for n in $(seq 1 $m); do
    run "bad-$m-$n" --read-data-subset "$n/$m"
    grep -v '^ferry: read chunk ' "$T/bad-$m-$n.err" >"$T/bad-$m-$n.lines" || true
    if [ "$n" = "$(slice_of "$cid" $m)" ]; then
      [ "$(cat "$T/bad-$m-$n.rc")" = 1 ] || fail "slice $n/$m holds $cid but exits $(cat "$T/bad-$m-$n.rc")"
      cmp -s "$T/bad-all.lines" "$T/bad-$m-$n.lines" ||
        fail "slice $n/$m reports otherwise than --read-data: $(cat "$T/bad-$m-$n.lines") / $(cat "$T/bad-all.lines")"
      [ "$(json_get "$T/bad-$m-$n.json" .problems)" = 1 ] || fail "slice $n/$m: --json: $(cat "$T/bad-$m-$n.json")"
      found=$((found + 1))
    else
      [ "$(cat "$T/bad-$m-$n.rc")" = 0 ] && [ ! -s "$T/bad-$m-$n.lines" ] ||
        fail "slice $n/$m does not hold $cid, yet exits $(cat "$T/bad-$m-$n.rc"): $(cat "$T/bad-$m-$n.lines")"
    fi
  done
  [ $found = 1 ] || fail "M = $m: $found slices found the flipped byte"
done
ok "the flipped byte in $cid: --read-data and exactly one slice of each M report it ($(head -n 1 "$T/bad-all.lines"))"
# The summary line, without --json, names the slice.
rc=0; $FERRY check --repo "$R" --read-data-subset "$(slice_of "$cid" 3)/3" >"$T/out" 2>"$T/err" || rc=$?
[ $rc = 1 ] && grep -q "slice $(slice_of "$cid" 3)/3: [0-9]* of $total chunks (.* of .* stored) chosen, .*: PROBLEMS FOUND" "$T/out" ||
  fail "summary of the slice with the flipped byte: rc $rc: $(cat "$T/out" "$T/err")"
ok "summary: $(cat "$T/out")"
/usr/bin/python3 - "$chunk" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
b[len(b) // 2] ^= 0x01
open(p, 'wb').write(b)
PY

# --- 3. percentages
run p100 --read-data-subset 100%
[ "$(cat "$T/p100.rc")" = 0 ] && cmp -s "$T/p100.ids" "$T/present.ids" && [ "$(json_get "$T/p100.json" .subset)" = 100% ] ||
  fail "100% did not read every chunk: $(cat "$T/p100.json")"
ok "100% reads all $total chunks"
for i in 1 2; do
  run "p20-$i" --read-data-subset 20%
  got=$(wc -l <"$T/p20-$i.ids")
  [ "$(cat "$T/p20-$i.rc")" = 0 ] && [ "$(json_get "$T/p20-$i.json" .chunks_selected)" = "$got" ] &&
    [ "$(json_get "$T/p20-$i.json" .subset)" = 20% ] && [ "$(json_get "$T/p20-$i.json" .seed)" != null ] ||
    fail "20%: $(cat "$T/p20-$i.json")"
  [ $((got * 20)) -ge "$total" ] && [ $((got * 5)) -le $((2 * total)) ] ||
    fail "20% read $got of $total chunks: outside 5%..40%"
  [ -z "$(comm -23 "$T/p20-$i.ids" "$T/present.ids")" ] || fail "20% read a chunk no snapshot names"
done
! cmp -s "$T/p20-1.ids" "$T/p20-2.ids" || fail "two 20% runs read the same sample"
[ "$(json_get "$T/p20-1.json" .seed)" != "$(json_get "$T/p20-2.json" .seed)" ] || fail "two runs, one seed"
ok "20% read $(wc -l <"$T/p20-1.ids") and $(wc -l <"$T/p20-2.ids") of $total chunks, two different samples"
run p2.5 --read-data-subset 2.5%
[ "$(cat "$T/p2.5.rc")" = 0 ] && [ "$(json_get "$T/p2.5.json" .subset)" = 2.5% ] &&
  [ "$(wc -l <"$T/p2.5.ids")" -le $((total / 4)) ] || fail "2.5%: $(cat "$T/p2.5.json")"
$FERRY check --repo "$R" --read-data-subset 2.5% >"$T/out" || fail "2.5% without --json"
grep -q "sample 2.5%: [0-9]* of $total chunks (.* stored) chosen, .*: no problems" "$T/out" || fail "summary of 2.5%: $(cat "$T/out")"
ok "summary: $(cat "$T/out")"

# --- 4. bad usage: exit 2, one line that echoes what was typed
usage2() {
  local what=$1 pat=$2 rc=0; shift 2
  "$@" >/dev/null 2>"$T/err" || rc=$?
  [ $rc = 2 ] || fail "$what: exit $rc, not 2: $(cat "$T/err")"
  [ "$(wc -l <"$T/err")" = 1 ] || fail "$what: not one line on stderr: $(cat "$T/err")"
  grep -qF -- "$pat" "$T/err" || fail "$what: stderr does not say '$pat': $(cat "$T/err")"
  ok "$what: $(cat "$T/err")"
}
for spec in 0/5 6/5 1/0 0/0 0% 0.0% 101% 100.01% abc 1/2/3 '' -1/5 1/-5 -5% /5 1/ / % 5 . .% 1..5% \
  1e2% nan% inf% ' 1/5' '1/5 ' '5 %' 0x10% 18446744073709551616/18446744073709551617 \
  1/99999999999999999999999 99999999999999999999999999999999999999999%; do
  usage2 "SPEC '$spec'" "--read-data-subset: '$spec' is " $FERRY check --repo "$R" --read-data-subset "$spec"
done
usage2 "SPEC with =" "'7/5' is no slice" $FERRY check --repo "$R" --read-data-subset=7/5
usage2 "--read-data and --read-data-subset" "--read-data reads every chunk, --read-data-subset 1/7 some: give one" \
  $FERRY check --repo "$R" --read-data --read-data-subset 1/7
usage2 "--read-data-subset and --read-data" "give one" $FERRY check --repo "$R" --read-data-subset 50% --read-data
usage2 "no SPEC" "option --read-data-subset wants a value" $FERRY check --repo "$R" --read-data-subset
# the largest slice numbers that fit are a slice (M = 2^64 - 1: almost surely empty)
$FERRY check --repo "$R" --read-data-subset 18446744073709551615/18446744073709551615 --json >"$T/big.json" ||
  fail "slice 2^64-1 of 2^64-1: $(cat "$T/big.json")"
$FERRY check --repo "$R" --read-data-subset 0.001% --json >"$T/small.json" || fail "0.001%"
ok "the extremes that are valid run: $(json_get "$T/big.json" .subset) $(json_get "$T/small.json" .subset)"
$FERRY check --help | grep -q -- "--read-data-subset N/M" || fail "check --help does not name --read-data-subset"
