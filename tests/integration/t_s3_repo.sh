#!/usr/bin/env bash
# The repository on a real S3 server (Ceph RGW): a listing that cannot be
# trusted -- HTTP 500 after every retry, an answer that is not XML, a
# truncated page without a continuation token, a page that does not say
# whether more follow (tests/s3/faultproxy.py --spoil-listing) -- is an
# error for check, prune and backup, never an empty listing: nothing is
# deleted.  A repository whose snapshots are gone and whose chunks are not:
# prune refuses unless --allow-empty.  Creators racing: six `ferry init`
# released at once on one prefix; exactly one creates the repository (a
# conditional PUT of config), the others are told it exists and use it;
# one key object.  On an Object Lock bucket (RGW ignores the condition
# there) racing copies (init --copy-of) all end up with a working copy.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/../s3/lib.sh"
source "$(dirname "$0")/race.sh"
# ferry signs as the primary user (awscli takes --profile)
export AWS_ACCESS_KEY_ID=$RGW_PRIMARY_AK AWS_SECRET_ACCESS_KEY=$RGW_PRIMARY_SK
S3P=$S3_RUN
MiB=$((1024 * 1024))

# count PREFIX: objects under S3P/PREFIX in ferry-primary
count() {
  awsp primary s3api list-objects-v2 --bucket ferry-primary --prefix "$S3P/$1" --query 'length(Contents || `[]`)' --output text
}

P="s3://ferry-primary/$S3P?endpoint=$RGW_HTTP"
prand $((9 * MiB)) vol > "$T/vol.img"
"$FERRY" init --repo "$P" --chunk-size 1M >/dev/null
id=$("$FERRY" backup --repo "$P" --volume vol "$T/vol.img")
[ "$(count chunks/)" = 9 ] || fail "expected 9 chunk objects, found $(count chunks/)"

for folder in snapshots chunks; do
  for mode in 500 garbage truncated unsaid; do
    case $mode in
      500) why="HTTP 500 InternalError" ;;
      garbage | unsaid) why="not a whole S3 listing" ;;
      truncated) why="a truncated listing without a marker" ;;
    esac
    start_faultproxy "spoil-$folder-$mode" --fail-rate 0 --reset-rate 0 --delay-rate 0 \
      --spoil-listing "$mode" --spoil-match "$S3P%2F$folder%2F"
    X="s3://ferry-primary/$S3P?endpoint=$FP_URL&retries=2"
    for cmd in "check" "prune" "prune --dry-run" "prune --allow-empty" "backup --volume vol $T/vol.img"; do
      rc=0
      # shellcheck disable=SC2086
      "$FERRY" $cmd --repo "$X" >"$T/out" 2>"$T/err" || rc=$?
      [ $rc = 1 ] && [ "$(wc -l < "$T/err")" = 1 ] && grep -q "cannot list the $folder/ folder of" "$T/err" &&
        grep -q "$why" "$T/err" ||
        { cat "$T/err" >&2; fail "$cmd with the $folder/ listing spoiled ($mode): exit $rc"; }
    done
    [ "$(count chunks/)" = 9 ] && [ "$(count snapshots/)" = 1 ] || fail "with the $folder/ listing spoiled ($mode), objects were deleted"
    [ "$(fp_stat spoiled_listing)" -ge 5 ] || fail "the proxy spoiled too few listings: $(cat "$FP_STATS")"
    ok "$folder/ listing spoiled ($mode): check, prune, backup fail naming the folder: $(cat "$T/err")"
  done
done
"$FERRY" check --repo "$P" --read-data >/dev/null || fail "the repository does not check after the spoiled listings"

# Snapshots gone, chunks still there: prune refuses unless --allow-empty.
awsp primary s3 rm "s3://ferry-primary/$S3P/snapshots/$id" >/dev/null
rc=0; "$FERRY" prune --repo "$P" 2>"$T/err" || rc=$?
[ $rc = 1 ] && grep -q "holds 9 chunks and no snapshot.*--allow-empty" "$T/err" && [ "$(count chunks/)" = 9 ] ||
  fail "prune of chunks without a snapshot: exit $rc: $(cat "$T/err")"
"$FERRY" prune --repo "$P" --allow-empty --json >"$T/p.json"
[ "$(json_get "$T/p.json" .chunks_removed)" = 9 ] && [ "$(count chunks/)" = 0 ] ||
  fail "prune --allow-empty: $(cat "$T/p.json")"
ok "chunks and no snapshot: prune refuses ($(cat "$T/err")); --allow-empty deletes them"

# Racing creators on a plain bucket: the conditional PUT of config decides.
N=6
Q="s3://ferry-primary/$S3P-race?endpoint=$RGW_HTTP"
race_init $N "$T/race" --repo "$Q"
[ "$RACE_WON" = 1 ] || { tail -n +1 "$T"/race/err.* >&2; fail "$RACE_WON of $N racing inits created $Q"; }
race_losers_ok $N "$T/race"
nkeys=$(awsp primary s3api list-objects-v2 --bucket ferry-primary --prefix "$S3P-race/keys/" --query 'length(Contents || `[]`)' --output text)
[ "$nkeys" = 1 ] || fail "$nkeys key objects after the race on S3, not 1"
for ((i = 0; i < 3; i++)); do
  "$FERRY" backup --repo "$Q" --volume "v$i" "$T/vol.img" >/dev/null || fail "a creator cannot use the raced repository"
done
"$FERRY" check --repo "$Q" --read-data >/dev/null || fail "check of the raced repository"
ok "$N racing inits on S3: one created the repository, the others were told it exists and use it; one key object"

# Racing copies on an Object Lock bucket: not atomic there (HEAD, PUT, read
# back), and harmless: every copy has the primary's repository id and keys.
L="s3://ferry-lock/$S3P-race?endpoint=$RGW_HTTP&lock=compliance&lock-days=1"
race_init $N "$T/race-lock" --repo "$L" --copy-of "$Q"
[ "$RACE_WON" -ge 1 ] || { tail -n +1 "$T"/race-lock/err.* >&2; fail "no racing copy init won on the lock bucket"; }
race_losers_ok $N "$T/race-lock"
"$FERRY" copy --from "$Q" --to "$L" >/dev/null || fail "copy to the raced lock-bucket copy"
"$FERRY" check --repo "$L" --read-data >/dev/null || fail "check of the raced lock-bucket copy"
ok "$N racing init --copy-of on an Object Lock bucket: $RACE_WON reported creating it, the copy works"
