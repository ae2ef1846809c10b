#!/usr/bin/env bash
# check --read-data-subset on a real S3 server (Ceph RGW): the slices 1..3 of
# 3 are disjoint and together read the chunk objects --read-data reads; a
# chunk object replaced by a copy with one byte flipped is found by
# --read-data and by exactly the slice that holds it (the same lines, exit 1),
# not by the others (exit 0); 100% reads every chunk.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/../s3/lib.sh"
export AWS_ACCESS_KEY_ID=$RGW_PRIMARY_AK AWS_SECRET_ACCESS_KEY=$RGW_PRIMARY_SK
S3P=$S3_RUN
P="s3://ferry-primary/$S3P?endpoint=$RGW_HTTP"

"$FERRY" init --repo "$P" --chunk-size 1M >/dev/null
make_fs_image "$T/fs.img" 32 s3
# 40 blocks of 1 MiB, distinct in their first 64 bytes: 40 cheap chunks more
/usr/bin/python3 - "$T/blocks.img" <<'PY'
import hashlib, sys
with open(sys.argv[1], 'wb') as f:
    for i in range(40):
        f.seek(i << 20)
        f.write(hashlib.sha512(b's3 block %d' % i).digest())
    f.truncate(40 << 20)
PY
"$FERRY" backup --repo "$P" --volume fs "$T/fs.img" >/dev/null || fail "backup of fs"
"$FERRY" backup --repo "$P" --volume blocks "$T/blocks.img" >/dev/null || fail "backup of blocks"
awsp primary s3api list-objects-v2 --bucket ferry-primary --prefix "$S3P/chunks/" --query 'Contents[].Key' \
  --output text | tr '\t' '\n' | sed 's|.*/||' | grep -E '^[0-9a-f]{64}$' | sort >"$T/present.ids"
total=$(wc -l <"$T/present.ids")
[ "$total" -ge 40 ] || fail "only $total chunk objects"

# run NAME ARGS...: as in t_check_subset.sh
run() {
  local name=$1 rc=0; shift
  "$FERRY" check --repo "$P" --verbose --json "$@" >"$T/$name.json" 2>"$T/$name.err" || rc=$?
  echo $rc >"$T/$name.rc"
  if grep -q "AddressSanitizer\|runtime error" "$T/$name.err"; then cat "$T/$name.err" >&2; fail "$name: sanitizer report"; fi
  sed -n 's/^ferry: read chunk \([0-9a-f]\{64\}\)$/\1/p' "$T/$name.err" | sort >"$T/$name.ids"
  grep -v '^ferry: read chunk ' "$T/$name.err" >"$T/$name.lines" || true
}
slice_of() { /usr/bin/python3 -c 'import sys; print(int(sys.argv[1][:16], 16) % int(sys.argv[2]) + 1)' "$1" "$2"; }

run all --read-data
[ "$(cat "$T/all.rc")" = 0 ] && cmp -s "$T/all.ids" "$T/present.ids" || fail "--read-data: $(cat "$T/all.err")"
run p100 --read-data-subset 100%
[ "$(cat "$T/p100.rc")" = 0 ] && cmp -s "$T/p100.ids" "$T/present.ids" || fail "100%: $(cat "$T/p100.err")"
: >"$T/union.ids"
for n in 1 2 3; do
  run "s$n" --read-data-subset "$n/3"
  [ "$(cat "$T/s$n.rc")" = 0 ] && [ -s "$T/s$n.ids" ] || fail "slice $n/3: $(cat "$T/s$n.err")"
  [ "$(json_get "$T/s$n.json" .chunks_selected)" = "$(wc -l <"$T/s$n.ids")" ] || fail "slice $n/3: $(cat "$T/s$n.json")"
  cat "$T/s$n.ids" >>"$T/union.ids"
done
sort "$T/union.ids" >"$T/union.sorted"
[ -z "$(uniq -d "$T/union.sorted")" ] && cmp -s "$T/union.sorted" "$T/present.ids" ||
  fail "slices 1..3 are not a partition of the $total chunks"
ok "S3: slices 1..3 of 3 read $(wc -l <"$T/s1.ids"), $(wc -l <"$T/s2.ids"), $(wc -l <"$T/s3.ids") of $total chunks: a partition; 100% reads all"

cid=$(sed -n "$((total / 2))p" "$T/present.ids")
key="$S3P/chunks/${cid:0:2}/$cid"
awsp primary s3api get-object --bucket ferry-primary --key "$key" "$T/chunk" >/dev/null || fail "get $key"
/usr/bin/python3 - "$T/chunk" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
b[len(b) // 2] ^= 0x01
open(p, 'wb').write(b)
PY
awsp primary s3api put-object --bucket ferry-primary --key "$key" --body "$T/chunk" >/dev/null || fail "put $key"
run bad-all --read-data
[ "$(cat "$T/bad-all.rc")" = 1 ] && grep -q "^ferry: chunk $cid is corrupt" "$T/bad-all.lines" ||
  fail "--read-data with a flipped byte: exit $(cat "$T/bad-all.rc"): $(cat "$T/bad-all.lines")"
for n in 1 2 3; do
  run "bad-$n" --read-data-subset "$n/3"
  if [ "$n" = "$(slice_of "$cid" 3)" ]; then
    [ "$(cat "$T/bad-$n.rc")" = 1 ] && cmp -s "$T/bad-all.lines" "$T/bad-$n.lines" ||
      fail "slice $n/3 holds $cid: exit $(cat "$T/bad-$n.rc"): $(cat "$T/bad-$n.lines")"
  else
    [ "$(cat "$T/bad-$n.rc")" = 0 ] && [ ! -s "$T/bad-$n.lines" ] ||
      fail "slice $n/3 does not hold $cid: exit $(cat "$T/bad-$n.rc"): $(cat "$T/bad-$n.lines")"
  fi
done
ok "S3: the flipped byte in $cid is found by --read-data and by slice $(slice_of "$cid" 3)/3 alone"
