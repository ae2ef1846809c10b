#!/usr/bin/env bash
# A tampered config must not downgrade new backups to plaintext.  Whoever can
# write to the store replaces `config` with an unencrypted one and adds a key
# object without KDF (a master key of their choosing, in the clear): with
# FERRY_PASSWORD set, backup (and every other command) refuses with one line
# and writes nothing.  An unencrypted repository opens only with
# --insecure-no-encryption, given every time, and never with a password.
. "$(dirname "$0")/lib.sh"

TOOL="/usr/bin/python3 $(dirname "$0")/repo_tool.py"
MiB=$((1024 * 1024))
prand $((3 * MiB)) vol > "$T/vol.img"
# state DIR: every file of the repository with its size and content hash
state() { (cd "$1" && find . -type f -printf '%p %s\n' | sort && find . -type f -exec sha256sum {} + | sort); }

# refuse WHAT PATTERN CMD...: exit 1, one line on stderr matching PATTERN
refuse() {
  local what=$1 pat=$2 rc=0; shift 2
  "$@" >"$T/out" 2>"$T/err" || rc=$?
  [ $rc = 1 ] || { cat "$T/err" >&2; fail "$what: exit $rc, not 1"; }
  [ "$(wc -l < "$T/err")" = 1 ] || { cat "$T/err" >&2; fail "$what: not one line on stderr"; }
  grep -qE -- "$pat" "$T/err" || fail "$what: stderr does not match /$pat/: $(cat "$T/err")"
  ok "$what: $(cat "$T/err")"
}

for secret in password key; do
  R="$T/repo-$secret"
  if [ $secret = key ]; then
    head -c 32 /dev/urandom > "$T/raw.key"
    use=(--key-file "$T/raw.key")
    run() { env -u FERRY_PASSWORD "$@"; }
  else
    use=()
    run() { "$@"; }
  fi
  run $FERRY init --repo "$R" "${use[@]}" --chunk-size 1M >/dev/null
  id=$(run $FERRY backup --repo "$R" "${use[@]}" --volume vol "$T/vol.img")

  # The attack, exactly: an unencrypted config, a key object without KDF.
  $TOOL "$R" config-set encryption=NONE
  $TOOL "$R" add-plain-key >/dev/null
  state "$R" > "$T/before"
  pat="repository $R is not encrypted, yet a password or key was given: refusing to open it"
  refuse "$secret, tampered config: backup" "$pat" run $FERRY backup --repo "$R" "${use[@]}" --volume vol "$T/vol.img"
  refuse "$secret, tampered config: backup --parent none" "$pat" \
    run $FERRY backup --repo "$R" "${use[@]}" --volume vol --parent none "$T/vol.img"
  refuse "$secret, tampered config: snapshots" "$pat" run $FERRY snapshots --repo "$R" "${use[@]}"
  refuse "$secret, tampered config: restore" "$pat" run $FERRY restore --repo "$R" "${use[@]}" "$id" "$T/r.img"
  refuse "$secret, tampered config: check" "$pat" run $FERRY check --repo "$R" "${use[@]}"
  refuse "$secret, tampered config: prune" "$pat" run $FERRY prune --repo "$R" "${use[@]}"
  refuse "$secret, tampered config: forget" "$pat" run $FERRY forget --repo "$R" "${use[@]}" --keep-last 1
  state "$R" > "$T/after"
  cmp -s "$T/before" "$T/after" || { diff "$T/before" "$T/after" >&2; fail "$secret: a refused command wrote to the repository"; }
  [ ! -e "$T/r.img" ] || fail "$secret: a refused restore wrote its target"
  ok "$secret: the tampered repository is refused by every command, nothing written"
done

# An unencrypted repository on purpose: the flag every time, never a secret.
U="$T/plain"
env -u FERRY_PASSWORD $FERRY init --repo "$U" --insecure-no-encryption >/dev/null
refuse "unencrypted, no flag" "repository $U is not encrypted: opening it needs --insecure-no-encryption" \
  env -u FERRY_PASSWORD $FERRY backup --repo "$U" --volume vol "$T/vol.img"
refuse "unencrypted, FERRY_PASSWORD set" "is not encrypted, yet a password or key was given" \
  $FERRY snapshots --repo "$U"
uid=$($FERRY backup --repo "$U" --insecure-no-encryption --volume vol "$T/vol.img") ||
  fail "backup with --insecure-no-encryption (FERRY_PASSWORD set, not read)"
$FERRY restore --repo "$U" --insecure-no-encryption "$uid" "$T/u.img" && cmp "$T/vol.img" "$T/u.img" ||
  fail "restore with --insecure-no-encryption"
$FERRY check --repo "$U" --insecure-no-encryption --read-data >/dev/null || fail "check with --insecure-no-encryption"
ok "unencrypted repository: opens with --insecure-no-encryption only"
printf 'pw\n' > "$T/pw"
rc=0; $FERRY snapshots --repo "$U" --insecure-no-encryption --password-file "$T/pw" 2>"$T/err" || rc=$?
[ $rc = 2 ] && grep -q "insecure-no-encryption is for a repository without a password: drop --password-file" "$T/err" ||
  fail "--insecure-no-encryption with --password-file: rc $rc: $(cat "$T/err")"
rc=0; $FERRY init --repo "$T/plain2" --insecure-no-encryption --key-file "$T/raw.key" 2>"$T/err" || rc=$?
[ $rc = 2 ] && [ ! -e "$T/plain2" ] || fail "init --insecure-no-encryption --key-file: rc $rc: $(cat "$T/err")"
ok "--insecure-no-encryption with a password or key file: bad usage (exit 2)"
$FERRY init --repo "$T/enc" >/dev/null
refuse "encrypted repository opened with --insecure-no-encryption" \
  "repository $T/enc is encrypted: give its password or key, not --insecure-no-encryption" \
  $FERRY snapshots --repo "$T/enc" --insecure-no-encryption
# A copy of an unencrypted repository: the flag says the original is one.
env -u FERRY_PASSWORD $FERRY init --repo "$T/plain-copy" --copy-of "$U" --insecure-no-encryption >/dev/null ||
  fail "init --copy-of an unencrypted repository"
env -u FERRY_PASSWORD $FERRY copy --from "$U" --to "$T/plain-copy" --insecure-no-encryption >/dev/null ||
  fail "copy between unencrypted repositories"
ok "init --copy-of and copy of an unencrypted repository with --insecure-no-encryption"
