#!/usr/bin/env bash
# Creators of one file:// repository racing: six `ferry init` released at
# once, all past the check for a config.  Exactly one creates it; each other
# one exits 1 saying a repository already exists, and opens the winner's
# repository with its password; exactly one key object is left.  Likewise
# for copies (init --copy-of).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/race.sh"

N=6
R="$T/repo"
race_init $N "$T/race" --repo "$R"
[ "$RACE_WON" = 1 ] || { tail -n +1 "$T"/race/err.* >&2; fail "$RACE_WON of $N racing inits say they created the repository"; }
race_losers_ok $N "$T/race"
nkeys=$(find "$R/keys" -type f | wc -l)
[ "$nkeys" = 1 ] || fail "$nkeys key objects after the race, not 1"
prand $((2 << 20)) vol > "$T/vol.img"
for ((i = 0; i < N; i++)); do
  # each creator, winner or loser, uses the repository with its password
  $FERRY backup --repo "$R" --volume "v$i" "$T/vol.img" >/dev/null || fail "creator $i cannot use the repository"
done
$FERRY check --repo "$R" --read-data >/dev/null || fail "check after the race"
ok "$N racing inits: one created the repository, $((N - 1)) were told it exists and use it; one key object"

# Copies: the same race on init --copy-of.
C="$T/copy"
race_init $N "$T/race-copy" --repo "$C" --copy-of "$R"
[ "$RACE_WON" = 1 ] || { tail -n +1 "$T"/race-copy/err.* >&2; fail "$RACE_WON of $N racing copy inits won"; }
race_losers_ok $N "$T/race-copy"
[ "$(find "$C/keys" -type f | wc -l)" = 1 ] || fail "$(find "$C/keys" -type f | wc -l) key objects in the copy"
$FERRY copy --from "$R" --to "$C" >/dev/null || fail "copy to the raced copy"
$FERRY check --repo "$C" --read-data >/dev/null || fail "check of the raced copy"
ok "$N racing init --copy-of: one won, the copy works"
