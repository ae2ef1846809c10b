#!/usr/bin/env bash
# Progress and summaries (issue 13, items 14 and 15): on a terminal, check
# --read-data, prune and copy draw a progress line as backup and restore do;
# without one, nothing of it.  A terminal comes from script(1) (util-linux).
# Summaries say "1 snapshot", not "1 snapshots".
. "$(dirname "$0")/lib.sh"
command -v script >/dev/null || skip "script (util-linux) is not installed"

R="$T/repo"
$FERRY init --repo "$R" --chunk-size 1M >/dev/null
prand $((24 * 1024 * 1024)) a > "$T/a.img"
id=$($FERRY backup --repo "$R" --volume a "$T/a.img")

# on_tty OUT CMD...: run CMD with a terminal as stdin/stdout/stderr; its output in OUT
on_tty() {
  local out=$1; shift
  script -q -e -c "$(printf '%q ' "$@")" /dev/null >"$out" </dev/null || fail "on a terminal: $* failed: $(tr '\r' '\n' <"$out" | tail -n 3)"
}
# progress OUT WHAT: OUT holds a progress line of WHAT (drawn after a line-clear)
progress() { grep -aq $'\r\033\\[K'"$2"'[ :]' "$1"; }
# quiet ERR: no progress line in ERR
no_progress() { ! grep -aq $'\033\\[K' "$1"; }

# --- check --read-data
on_tty "$T/tty" $FERRY check --repo "$R" --read-data
progress "$T/tty" check || fail "check --read-data drew no progress on a terminal: $(cat -v "$T/tty")"
grep -aq "1 snapshot, " "$T/tty" || fail "check's summary: $(tr '\r' '\n' <"$T/tty" | tail -n 1)"
ok "check --read-data on a terminal: $(tr '\r' '\n' <"$T/tty" | grep -a 'check' | head -n 3 | cat -v | tr '\n' '|')"
$FERRY check --repo "$R" --read-data >"$T/out" 2>"$T/err" || fail "check --read-data"
no_progress "$T/err" || fail "check --read-data drew progress without a terminal: $(cat -v "$T/err")"
grep -q "^1 snapshot, [0-9]* chunks referenced" "$T/out" || fail "check's summary: $(cat "$T/out")"
on_tty "$T/tty" $FERRY check --repo "$R" --read-data --quiet
no_progress "$T/tty" || fail "check --read-data --quiet drew progress"
ok "no progress without a terminal, nor with --quiet"

# --- copy
C="$T/copy"
$FERRY init --repo "$C" --copy-of "$R" >/dev/null
on_tty "$T/tty" $FERRY copy --from "$R" --to "$C"
progress "$T/tty" copy || fail "copy drew no progress on a terminal: $(cat -v "$T/tty")"
grep -aq "copied 1 snapshot (0 already there)" "$T/tty" || fail "copy's summary: $(tr '\r' '\n' <"$T/tty" | tail -n 1)"
$FERRY copy --from "$R" --to "$C" >"$T/out" 2>"$T/err"
no_progress "$T/err" || fail "copy drew progress without a terminal"
grep -q "copied 0 snapshots (1 already there), 0 chunks" "$T/out" || fail "copy's summary: $(cat "$T/out")"
ok "copy: progress on a terminal only"

# --- prune: a second volume, forgotten, its chunks deleted
prand $((16 * 1024 * 1024)) b > "$T/b.img"
$FERRY backup --repo "$R" --volume b "$T/b.img" >/dev/null
$FERRY forget --repo "$R" --volume b --keep-last 1 >/dev/null
$FERRY backup --repo "$R" --volume b --parent none "$T/a.img" >/dev/null  # a's data: b's first chunks go unreferenced
$FERRY forget --repo "$R" --volume b --keep-last 1 >/dev/null
on_tty "$T/tty" $FERRY prune --repo "$R"
progress "$T/tty" prune || fail "prune drew no progress on a terminal: $(cat -v "$T/tty")"
grep -aq "2 snapshots: kept [0-9]* chunks .*, removed 16 chunks" "$T/tty" || fail "prune's summary: $(tr '\r' '\n' <"$T/tty" | tail -n 1)"
$FERRY prune --repo "$R" >"$T/out" 2>"$T/err"
no_progress "$T/err" || fail "prune drew progress without a terminal"
grep -q "removed 0 chunks" "$T/out" || fail "prune's second summary: $(cat "$T/out")"
$FERRY check --repo "$R" --read-data >/dev/null || fail "check after prune"
ok "prune: progress on a terminal only"

# --- backup and restore still do
on_tty "$T/tty" $FERRY restore --repo "$R" "$id" "$T/r.img"
progress "$T/tty" restore || fail "restore drew no progress on a terminal"
cmp "$T/a.img" "$T/r.img" || fail "restore on a terminal differs"
ok "progress"
