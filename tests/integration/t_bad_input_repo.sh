#!/usr/bin/env bash
# Bad input around the repository (issue 13 item 10), one clear line each:
# - an empty password: FERRY_PASSWORD='' is refused like an empty password file;
# - control characters (or bytes that are not UTF-8) in a volume name or a
#   tag are refused at backup, naming the option, nothing written;
# - a repository can hold anything (an old or hostile one): names, labels and
#   lock hosts read from it are printed escaped, so no row of `snapshots`,
#   `forget` or `unlock` can be forged and no terminal escape gets through;
#   --json stays valid JSON with the names as they are.
# (S3 URL parameters given twice or empty: tests/unit/test_s3.c.)
. "$(dirname "$0")/lib.sh"

TOOL="/usr/bin/python3 $(dirname "$0")/repo_tool.py"
R="$T/repo"
$FERRY init --repo "$R" >/dev/null
prand $((1024 * 1024)) vol > "$T/vol.img"

# one_line RC WHAT PATTERN CMD...: exit RC, one stderr line matching PATTERN
one_line() {
  local want=$1 what=$2 pat=$3 rc=0; shift 3
  "$@" >"$T/out" 2>"$T/err" || rc=$?
  [ "$rc" = "$want" ] || { cat "$T/err" >&2; fail "$what: exit $rc, not $want"; }
  [ "$(wc -l < "$T/err")" = 1 ] || { cat "$T/err" >&2; fail "$what: not one line on stderr"; }
  grep -qF -- "$pat" "$T/err" || fail "$what: stderr lacks '$pat': $(cat "$T/err")"
  ok "$what: $(cat "$T/err")"
}

# --- an empty password, from the environment as from a file
one_line 1 "init with FERRY_PASSWORD=''" "FERRY_PASSWORD is set but empty: a password cannot be empty" \
  env FERRY_PASSWORD= $FERRY init --repo "$T/r-empty"
[ ! -e "$T/r-empty" ] || fail "init with an empty password made something"
: > "$T/empty-pw"
one_line 1 "init with an empty password file" "password file $T/empty-pw is empty" \
  env -u FERRY_PASSWORD $FERRY init --repo "$T/r-empty" --password-file "$T/empty-pw"
[ ! -e "$T/r-empty" ] || fail "init with an empty password file made something"
one_line 1 "snapshots with FERRY_PASSWORD=''" "FERRY_PASSWORD is set but empty" \
  env FERRY_PASSWORD= $FERRY snapshots --repo "$R"

# --- control characters in names and tags: refused at backup, nothing written
nsnap() { find "$R/snapshots" -type f | wc -l; }
one_line 2 "a newline in --volume" "--volume 'pg\\x0a0bad 2001-01-01' holds a control character" \
  $FERRY backup --repo "$R" --volume $'pg\n0bad 2001-01-01' "$T/vol.img"
one_line 2 "an escape sequence in --volume" "--volume 'pg\\x1b[2J' holds a control character" \
  $FERRY backup --repo "$R" --volume $'pg\e[2J' "$T/vol.img"
one_line 2 "a C1 control in --volume" "--volume 'pg\\xc2\\x9b' holds a control character" \
  $FERRY backup --repo "$R" --volume $'pg\xc2\x9b' "$T/vol.img"
one_line 2 "bytes that are not UTF-8 in --volume" "--volume 'pg\\xff' holds a control character or bytes that are not UTF-8" \
  $FERRY backup --repo "$R" --volume $'pg\xff' "$T/vol.img"
one_line 2 "a control character in a tag value" "--tag 'app=x\\x0dy' holds a control character" \
  $FERRY backup --repo "$R" --volume pg --tag $'app=x\ry' "$T/vol.img"
one_line 2 "a control character in a tag key" "--tag 'a\\x09b=1' holds a control character" \
  $FERRY backup --repo "$R" --volume pg --tag $'a\tb=1' "$T/vol.img"
[ "$(nsnap)" = 0 ] || fail "a refused backup wrote a snapshot"
$FERRY backup --repo "$R" --volume 'pg-données ✓' --tag 'équipe=base de données' "$T/vol.img" >/dev/null ||
  fail "a UTF-8 name and tag were refused"
ok "printable UTF-8 names and tags are accepted"

# --- a hostile repository: every field read from it is printed escaped
U="$T/hostile"
env -u FERRY_PASSWORD $FERRY init --repo "$U" --insecure-no-encryption >/dev/null
vol=$'evil\nabcdef12 2001-01-01 00:00:00  forged                   1 B'
$TOOL "$U" add-manifest "$vol" $'app\e[2J=x' $'k\xc2\x9bk=v\x07' 'bad=INVALIDUTF8' >/dev/null
$TOOL "$U" add-lock $'host\e]0;pwned\a' >/dev/null
in=(--repo "$U" --insecure-no-encryption)
raw() { LC_ALL=C grep -c $'[\x01-\x08\x0b-\x1f\x7f]\|\xc2[\x80-\x9f]' "$1" || true; }

env -u FERRY_PASSWORD $FERRY snapshots "${in[@]}" > "$T/table"
[ "$(wc -l < "$T/table")" = 3 ] || { cat -A "$T/table" >&2; fail "the snapshots table is not a header, one row, a count"; }
[ "$(raw "$T/table")" = 0 ] || { cat -A "$T/table" >&2; fail "raw control characters in the snapshots table"; }
grep -qF 'evil\x0aabcdef12 2001-01-01' "$T/table" && grep -qF 'app\x1b[2J=x' "$T/table" &&
  grep -qF 'k\xc2\x9bk=v\x07' "$T/table" && grep -qF 'bad=\xff\xfe\xc0\x80invalid' "$T/table" ||
  { cat -A "$T/table" >&2; fail "the snapshots table does not show the fields escaped"; }
ok "snapshots table: $(sed -n 2p "$T/table")"

env -u FERRY_PASSWORD $FERRY snapshots "${in[@]}" --json > "$T/json"
jq -e --arg v "$vol" '.[0].volume == $v and .[0].labels["app\u001b[2J"] == "x" and .[0].labels["k\u009bk"] == "v\u0007"' \
  "$T/json" >/dev/null || { cat "$T/json" >&2; fail "--json does not give the names as they are"; }
jq -e '.[0].labels.bad | test("\ufffd")' "$T/json" >/dev/null || fail "--json: bytes that are not UTF-8 are not U+FFFD"
ok "snapshots --json: valid JSON, names as they are"

env -u FERRY_PASSWORD $FERRY forget "${in[@]}" --keep-last 1 --dry-run > "$T/forget"
[ "$(raw "$T/forget")" = 0 ] && grep -qF 'evil\x0aabcdef12' "$T/forget" ||
  { cat -A "$T/forget" >&2; fail "forget does not print the volume escaped"; }
env -u FERRY_PASSWORD $FERRY unlock "${in[@]}" > "$T/unlock"
[ "$(raw "$T/unlock")" = 0 ] && grep -qF 'on host host\x1b]0;pwned\x07' "$T/unlock" ||
  { cat -A "$T/unlock" >&2; fail "unlock does not print the lock's host escaped"; }
one_line 1 "prune under the hostile lock" 'repository is locked by backup (shared) on host host\x1b]0;pwned\x07' \
  env -u FERRY_PASSWORD $FERRY prune "${in[@]}"
[ "$(raw "$T/err")" = 0 ] || fail "raw control characters in prune's error"
ok "forget, unlock and prune print what the repository holds escaped"
