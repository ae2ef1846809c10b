#!/usr/bin/env bash
# A listing that cannot be trusted is an error, never an empty list: with the
# repository's snapshots/ (or chunks/) folder replaced by a dangling symlink
# (a mount that went away), a regular file, or missing, check, prune and
# backup each fail with one line naming the folder, and nothing is deleted.
# prune refuses to delete every chunk of a repository that holds chunks and
# no snapshot, unless --allow-empty; a repository made before init made its
# folders (no "folders" in its config) still works.
. "$(dirname "$0")/lib.sh"

R="$T/repo"
MiB=$((1024 * 1024))
$FERRY init --repo "$R" --chunk-size 1M >/dev/null
for d in keys chunks snapshots locks; do [ -d "$R/$d" ] || fail "init did not make the folder $d/"; done
ok "init makes keys/ chunks/ snapshots/ locks/"

prand $((13 * MiB)) vol > "$T/vol.img"
id=$($FERRY backup --repo "$R" --volume vol "$T/vol.img")
nchunks() { find "$R/chunks" -type f ! -name '.tmp-*' | wc -l; }
[ "$(nchunks)" = 13 ] || fail "expected 13 chunks, found $(nchunks)"

# one_line_fail WHAT FOLDER PATTERN CMD...: exit 1, one stderr line, naming the folder
one_line_fail() {
  local what=$1 folder=$2 pat=$3 rc=0; shift 3
  "$@" >"$T/out" 2>"$T/err" || rc=$?
  [ $rc = 1 ] || { cat "$T/err" >&2; fail "$what: exit $rc, not 1"; }
  [ "$(wc -l < "$T/err")" = 1 ] || { cat "$T/err" >&2; fail "$what: not one line on stderr"; }
  grep -q "the $folder/ folder of $R" "$T/err" || fail "$what: the line does not name $folder/: $(cat "$T/err")"
  grep -qE -- "$pat" "$T/err" || fail "$what: the line does not say /$pat/: $(cat "$T/err")"
  ok "$what: $(cat "$T/err")"
}

# chunk files wherever they are now (chunks/ may be set aside)
allchunks() { { find "$T/chunks.saved" "$R/chunks/" -type f 2>/dev/null || true; } | wc -l; }
for folder in snapshots chunks; do
  mv "$R/$folder" "$T/$folder.saved"
  for damage in dangling file missing; do
    case $damage in
      dangling) ln -s "$T/mount-that-went-away" "$R/$folder"; why="symlink to '$T/mount-that-went-away', which does not exist" ;;
      file) echo "not a folder" > "$R/$folder"; why="is not a directory" ;;
      missing) why="does not exist" ;;
    esac
    before=$(allchunks)
    one_line_fail "check, $folder/ $damage" "$folder" "$why" $FERRY check --repo "$R"
    one_line_fail "prune, $folder/ $damage" "$folder" "$why" $FERRY prune --repo "$R"
    one_line_fail "prune --dry-run, $folder/ $damage" "$folder" "$why" $FERRY prune --repo "$R" --dry-run
    one_line_fail "prune --allow-empty, $folder/ $damage" "$folder" "$why" $FERRY prune --repo "$R" --allow-empty
    one_line_fail "backup, $folder/ $damage" "$folder" "$why" $FERRY backup --repo "$R" --volume vol "$T/vol.img"
    one_line_fail "backup --parent none, $folder/ $damage" "$folder" "$why" \
      $FERRY backup --repo "$R" --volume vol --parent none "$T/vol.img"
    after=$(allchunks)
    [ "$before" = "$after" ] || fail "$folder/ $damage: $before chunk files before, $after after"
    [ ! -e "$R/$folder" ] || [ -L "$R/$folder" ] || [ -f "$R/$folder" ] || fail "$folder/ $damage: a command made the folder again"
    rm -f "$R/$folder"
  done
  mv "$T/$folder.saved" "$R/$folder"
done
$FERRY check --repo "$R" --read-data >/dev/null || fail "the repository is damaged after the refusals"
[ "$(nchunks)" = 13 ] || fail "chunks were lost: $(nchunks) left"
ok "dangling symlink, regular file, missing folder: check, prune, backup refuse; all 13 chunks kept"

# Chunks and no snapshot: prune refuses unless --allow-empty (the snapshot's
# manifest moved away, as every snapshot forgotten would leave it).
mv "$R/snapshots/$id" "$T/manifest.saved"
rc=0; $FERRY check --repo "$R" >"$T/out" 2>"$T/err" || rc=$?
[ $rc = 0 ] && grep -q "0 snapshots, 0 chunks referenced, 13 unreferenced" "$T/out" ||
  fail "check of an empty but sound snapshots/ folder: rc $rc: $(cat "$T/out" "$T/err")"
for dry in "" --dry-run; do
  rc=0; $FERRY prune --repo "$R" $dry >"$T/out" 2>"$T/err" || rc=$?
  [ $rc = 1 ] && [ "$(wc -l < "$T/err")" = 1 ] &&
    grep -q "holds 13 chunks and no snapshot: prune would delete every chunk.*--allow-empty" "$T/err" ||
    fail "prune $dry with chunks and no snapshot: rc $rc: $(cat "$T/err")"
  [ "$(nchunks)" = 13 ] || fail "prune $dry deleted chunks of a repository with no snapshot"
  ok "prune $dry with chunks and no snapshot: $(cat "$T/err")"
done
$FERRY prune --repo "$R" --dry-run --allow-empty --json > "$T/p.json"
[ "$(jq .chunks_removed "$T/p.json")" = 13 ] && [ "$(nchunks)" = 13 ] || fail "prune --dry-run --allow-empty: $(cat "$T/p.json")"
cp -a "$R" "$T/repo.before-empty"
$FERRY prune --repo "$R" --allow-empty --json > "$T/p.json"
[ "$(jq .chunks_removed "$T/p.json")" = 13 ] && [ "$(nchunks)" = 0 ] || fail "prune --allow-empty: $(cat "$T/p.json"), $(nchunks) left"
ok "prune --allow-empty deletes every chunk of a repository with no snapshot"
rm -rf "$R" && mv "$T/repo.before-empty" "$R" && mv "$T/manifest.saved" "$R/snapshots/$id"
$FERRY check --repo "$R" --read-data >/dev/null || fail "the restored repository does not check"

# A repository made before init made its folders: its config has no
# "folders", and a folder not made yet is an empty one.  prune's refusal
# still guards its chunks.
L="$T/legacy"
$FERRY init --repo "$L" --chunk-size 1M >/dev/null
/usr/bin/python3 "$(dirname "$0")/repo_tool.py" "$L" config-set folders=false
rmdir "$L/chunks" "$L/snapshots" "$L/locks"
$FERRY snapshots --repo "$L" --json | jq -e 'length == 0' >/dev/null || fail "legacy repository: snapshots"
$FERRY check --repo "$L" >/dev/null || fail "legacy repository without its folders: check"
$FERRY prune --repo "$L" >/dev/null || fail "legacy repository without its folders: prune"
lid=$($FERRY backup --repo "$L" --volume vol "$T/vol.img") || fail "legacy repository: first backup"
mv "$L/snapshots/$lid" "$T/legacy-manifest"
rmdir "$L/snapshots"
one=$(find "$L/chunks" -type f | wc -l)
rc=0; $FERRY prune --repo "$L" 2>"$T/err" || rc=$?
[ $rc = 1 ] && grep -q "no snapshot" "$T/err" && [ "$(find "$L/chunks" -type f | wc -l)" = "$one" ] ||
  fail "legacy repository with chunks and no snapshots/: prune rc $rc: $(cat "$T/err")"
ln -s "$T/gone" "$L/snapshots"
rc=0; $FERRY prune --repo "$L" --allow-empty 2>"$T/err" || rc=$?
[ $rc = 1 ] && grep -q "snapshots/ folder" "$T/err" || fail "legacy repository, dangling snapshots/: prune rc $rc"
ok "a repository made before init made its folders: missing ones are empty, broken ones are errors"
