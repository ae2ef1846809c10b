#!/usr/bin/env bash
# kill -9 campaign on file:// repositories (crash_lib.sh says what is done and
# checked): backup, copy, forget and prune each killed in every one of
# CRASH_ROUNDS rounds at a store operation chosen at random (seed printed;
# FERRY_CRASH_SEED reproduces a run, FERRY_CRASH_ROUNDS sets the rounds),
# then check --read-data, a byte-identical restore of every snapshot and a
# rerun that finishes the job.  Then a prune killed on another host: its lock
# is live for 30 minutes, and what the docs tell the user to do about it.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/crash_lib.sh"

P=$T/repo
C=$T/copy
"$FERRY" init --repo "$P" --chunk-size 1M -q
"$FERRY" init --repo "$C" --copy-of "$P" -q
CRASH_KILL="backup copy forget prune"
CRASH_GC=P
CRASH_ROUNDS=${FERRY_CRASH_ROUNDS:-20}
crash_campaign
crash_report backup copy forget prune

# --- A prune killed on another host (a pod killed on one node, the next run
# on another): its lock names a host where this host cannot see the pid, so
# it stays live until it is 30 minutes old.  Backups meanwhile fail naming it
# and saying to run 'ferry unlock'; unlock keeps a live lock and says
# --remove-all removes it; with it removed, prune and backup run again.
[ "$(id -u)" = 0 ] && unshare --uts true 2>/dev/null || { echo "ok - # SKIP prune killed on another host (needs root for a UTS namespace)"; exit 0; }
"$FERRY" forget --repo "$P" --keep-last 1 --volume a -q
new_image a other
"$FERRY" backup --repo "$P" --volume a --tag "img=$NAME" -q "$IMG/$NAME" >/dev/null
"$FERRY" forget --repo "$P" --keep-last 1 -q
dry "$P"; d=$(jq .chunks_removed "$T/dry.json")
[ "$d" -ge 1 ] || fail "nothing for prune to delete"
# killed after its first store operation, the writing of its lock
killed "prune on another host" 1 unshare --uts sh -c 'hostname ferry-other-node && exec "$@"' sh \
  "$FERRY" prune --repo "$P" -q
[ "$(nlocks "$P")" = 1 ] || fail "the killed prune left $(nlocks "$P") locks, not 1"
verify "$P" "prune killed on another host"
expect_fail "backup while a prune from another host holds its lock" \
  "repository is locked by prune \(exclusive\) on host ferry-other-node .*run 'ferry unlock'" \
  "$FERRY" backup --repo "$P" --volume a -q "$IMG/$NAME"
"$FERRY" unlock --repo "$P" >"$T/u.out" || fail "unlock fails"
grep -q "^kept live lock locks/[0-9a-f]*: prune (exclusive) on host ferry-other-node" "$T/u.out" &&
  grep -q "ferry unlock --remove-all' removes live ones" "$T/u.out" || fail "unlock: $(cat "$T/u.out")"
[ "$(nlocks "$P")" = 1 ] || fail "unlock removed a live lock"
"$FERRY" unlock --repo "$P" --remove-all -q || fail "unlock --remove-all fails"
[ "$(nlocks "$P")" = 0 ] || fail "unlock --remove-all left a lock"
"$FERRY" prune --repo "$P" --json >"$T/p.json" || fail "prune after unlock --remove-all fails"
[ "$(jq .chunks_removed "$T/p.json")" = "$d" ] || fail "prune removed other than $d chunks: $(cat "$T/p.json")"
verify "$P" "prune after unlock --remove-all"
"$FERRY" backup --repo "$P" --volume a -q --tag "img=$NAME" "$IMG/$NAME" >/dev/null || fail "backup after unlock --remove-all"
ok "prune killed on another host: its lock blocks backups (naming it) until 'ferry unlock --remove-all'; then prune removed the $d chunks left"
