#!/usr/bin/env bash
# Full backup and restore round trips on real image files and loop devices,
# compared with cmp: every I/O engine, a second (deduplicating) backup,
# holes kept as holes, tags, snapshot listing, check --read-data.
. "$(dirname "$0")/lib.sh"

R="$T/repo"
$FERRY init --repo "$R" >/dev/null
make_fs_image "$T/a.img" 96 1

# One backup per engine; all must restore byte-identical.
for eng in io_uring libaio psync; do
  id=$($FERRY backup --repo "file://$R" --volume vol-a --tag engine=$eng --io-engine $eng "$T/a.img")
  [ ${#id} = 32 ] || fail "backup with $eng printed '$id', not a snapshot id"
  $FERRY restore --repo "$R" "$id" "$T/out-$eng.img"
  cmp "$T/a.img" "$T/out-$eng.img" || fail "restore of the $eng backup differs"
  ok "engine $eng round trip"
done

# The second and third backups stored nothing new (the parent's blocks), and said so.
j=$($FERRY backup --repo "$R" --volume vol-a --json "$T/a.img")
[ "$(jq -r .bytes_new <<<"$j")" = 0 ] || fail "unchanged image stored new bytes: $j"
[ "$(jq -r .change_source <<<"$j")" = manifest-scan ] || fail "no manifest scan against the parent: $j"
[ "$(jq -r '.bytes_same + .bytes_zero' <<<"$j")" = "$(jq -r .size <<<"$j")" ] ||
  fail "unchanged image: not every block was the parent's: $j"
ok "unchanged backup stores nothing: $j"

# Dedupe across volumes: the same data under another volume name is stored once.
j=$($FERRY backup --repo "$R" --volume vol-b --json "$T/a.img")
[ "$(jq -r .parent_id <<<"$j")" = null ] || fail "first backup of vol-b has a parent: $j"
[ "$(jq -r .bytes_new <<<"$j")" = 0 ] || fail "same data as vol-a stored again: $j"
[ "$(jq -r .bytes_dedup <<<"$j")" -gt 0 ] || fail "no dedupe reported across volumes: $j"
$FERRY restore --repo "$R" "$(jq -r .snapshot_id <<<"$j")" "$T/out-b.img"
cmp "$T/a.img" "$T/out-b.img" || fail "restore of the deduplicated vol-b differs"
ok "dedupe across volumes"

# Holes are never read, never stored, and stay holes on restore.
truncate -s 1G "$T/sparse.img"
printf 'hello' | dd of="$T/sparse.img" bs=1 seek=$((512 * 1024 * 1024)) conv=notrunc status=none
j=$($FERRY backup --repo "$R" --volume sparse --json "$T/sparse.img")
[ "$(jq -r .bytes_read <<<"$j")" -le $((4 * 1024 * 1024)) ] || fail "holes were read: $j"
sid=$(jq -r .snapshot_id <<<"$j")
$FERRY restore --repo "$R" "${sid:0:8}" "$T/sparse-out.img"
cmp "$T/sparse.img" "$T/sparse-out.img" || fail "sparse restore differs"
used=$(du -k "$T/sparse-out.img" | cut -f1)
[ "$used" -le 8192 ] || fail "restored sparse file uses $used KiB: holes were filled"
ok "sparse 1 GiB image: read $(jq -r .bytes_read <<<"$j") bytes, restored file uses $used KiB"

# A volume whose size is not a multiple of the chunk size or of 4 KiB.
head -c $((5 * 1024 * 1024 + 1234)) /dev/urandom > "$T/odd.img"
id=$($FERRY backup --repo "$R" --volume odd "$T/odd.img")
$FERRY restore --repo "$R" "$id" "$T/odd-out.img"
cmp "$T/odd.img" "$T/odd-out.img" || fail "odd-sized restore differs"
ok "odd-sized volume"

# Listing and check.
$FERRY snapshots --repo "$R" --json > "$T/snaps.json"
[ "$(jq length "$T/snaps.json")" = 7 ] || fail "expected 7 snapshots, got $(jq length "$T/snaps.json")"
[ "$(jq -r '[.[] | select(.labels.engine == "libaio")] | length' "$T/snaps.json")" = 1 ] || fail "tag not recorded"
[ "$($FERRY snapshots --repo "$R" --volume odd --json | jq length)" = 1 ] || fail "--volume filter"
$FERRY snapshots --repo "$R" | grep -q "vol-a" || fail "table lacks vol-a"
$FERRY check --repo "$R" --read-data >/dev/null || fail "check --read-data failed on a good repository"
ok "snapshots and check --read-data"

# Other repository settings through the CLI: no encryption (only when asked),
# a raw key file, a password file, no compression, the smallest and largest chunks.
head -c 32 /dev/urandom > "$T/raw.key"
printf 'from a file\n' > "$T/pw.txt"
# case N: "init options | options to use the repository" (FERRY_PASSWORD unset throughout)
cases=(
  "--insecure-no-encryption|--insecure-no-encryption"
  "--key-file $T/raw.key|--key-file $T/raw.key"
  "--password-file $T/pw.txt --chunk-size 1M --compression none|--password-file $T/pw.txt"
  "--key-file $T/raw.key --chunk-size 16M --compression igzip:3|--key-file $T/raw.key"
)
i=0
for c in "${cases[@]}"; do
  i=$((i + 1))
  read -r -a init_opts <<<"${c%%|*}"
  read -r -a use_opts <<<"${c#*|}"
  env -u FERRY_PASSWORD "$FERRY" init --repo "$T/repo$i" "${init_opts[@]}" >/dev/null
  id=$(env -u FERRY_PASSWORD "$FERRY" backup --repo "$T/repo$i" "${use_opts[@]}" --volume odd "$T/odd.img")
  env -u FERRY_PASSWORD "$FERRY" restore --repo "$T/repo$i" "${use_opts[@]}" "$id" "$T/odd-$i.img"
  cmp "$T/odd.img" "$T/odd-$i.img" || fail "round trip with init options: ${c%%|*}"
  env -u FERRY_PASSWORD "$FERRY" check --repo "$T/repo$i" "${use_opts[@]}" --read-data >/dev/null || fail "check: ${c%%|*}"
  ok "init ${c%%|*}: round trip and check --read-data"
done
# unencrypted chunks hold the plain bytes (this is what the flag means); encrypted ones never do
if ! python3 - "$T/odd.img" "$T/repo1" "$T/repo2" <<'PY2'
import sys, os
data = open(sys.argv[1], 'rb').read(4096)[1000:1064]
def holds(d):
    for root, _, files in os.walk(os.path.join(d, 'chunks')):
        for f in files:
            if data in open(os.path.join(root, f), 'rb').read():
                return True
    return False
sys.exit(0 if holds(sys.argv[2]) and not holds(sys.argv[3]) else 1)
PY2
then fail "unencrypted repository should hold plain bytes, encrypted must not"; fi
ok "plain bytes visible only in the --insecure-no-encryption repository"

# Block devices: back up a loop device, restore onto another loop device.
need_root "loop devices"
src=$(new_loop "$T/a.img")
truncate -s 128M "$T/dst.img"
# fill the target with garbage so zero blocks must really be zeroed
prand $((128 * 1024 * 1024)) garbage > "$T/dst.img"
dst=$(new_loop "$T/dst.img")
j=$($FERRY backup --repo "$R" --volume vol-dev --json --verbose "$src" 2>"$T/verbose")
grep -q "I/O engine io_uring" "$T/verbose" || { cat "$T/verbose"; fail "verbose output does not say which engine"; }
id=$(jq -r .snapshot_id <<<"$j")
$FERRY restore --repo "$R" "$id" "$dst"
cmp -n $((96 * 1024 * 1024)) "$src" "$dst" || fail "loop device restore differs"
ok "loop device $src -> $dst (direct=$(jq -r .direct <<<"$j"))"

# Progress: shown on a terminal (script(1) gives a real pty), silent otherwise.
if command -v script >/dev/null; then
  script -qec "$FERRY backup --repo $R --volume tty $T/a.img" /dev/null > "$T/tty.out"
  # a progress line is drawn over itself (CR, erase line): its first one may
  # say "starting" only, when the backup ends before the next redraw
  grep -q $'\r\033\[Kbackup' "$T/tty.out" || { cat -v "$T/tty.out"; fail "no progress line on a terminal"; }
  grep -q "MB/s" "$T/tty.out" || fail "no throughput on a terminal"
  $FERRY backup --repo "$R" --volume notty "$T/a.img" 2>"$T/notty.err" >/dev/null
  [ ! -s "$T/notty.err" ] || { cat "$T/notty.err"; fail "stderr not quiet without a terminal"; }
  ok "progress on a terminal, quiet otherwise"
else
  echo "note: script(1) missing: progress display not tested"
fi
