#!/usr/bin/env bash
# docs/dr-runbook.md, run: the 3-2-1-1 setup of its section 0 on a real RGW
# (primary account, a copy in the replica account, an Object Lock copy), the
# weekly drills of section 1 (check, ferry drill of the far copy with fsck,
# recorded there, ferry status with RPO and RTO objectives, catching up a
# copy), then its scenarios in order: the node lost
# (restore onto a new loop device), the primary account lost (restore from
# the copy, rebuild a new primary that stays incremental), ransomware with
# every key (RGW refuses to delete the locked versions; the locked copy read
# as of before the attack, through the attacker's delete markers, read-only;
# then the markers removed and the copy restored as it is), and a damaged
# chunk (named by check and by a drill) repaired from a good copy.  Step numbers refer to the runbook.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/../s3/lib.sh"
need_root "loop devices (the new node's disk)"
# ferry signs as the primary user where a URL names no credentials
export AWS_ACCESS_KEY_ID=$RGW_PRIMARY_AK AWS_SECRET_ACCESS_KEY=$RGW_PRIMARY_SK
S3P=$S3_RUN

P="s3://ferry-primary/$S3P?endpoint=$RGW_HTTP"
R="s3://ferry-replica/$S3P?endpoint=$RGW_HTTP&credentials=$RGW_CREDS&profile=replica"
L="s3://ferry-lock/$S3P?endpoint=$RGW_HTTP&lock=compliance&lock-days=1" # cannot expire during the test

# rebuild STEP FROM NEW N: runbook 3.3 — a new primary NEW made a copy of FROM
# and filled from it: N snapshots, the same ids, every chunk verified.
rebuild() {
  local step=$1 from=$2 new=$3 n=$4
  "$FERRY" init --repo "$new" --copy-of "$from" >/dev/null
  "$FERRY" copy --from "$from" --to "$new" --json >"$T/rebuild.json"
  [ "$(json_get "$T/rebuild.json" .snapshots_copied)" = "$n" ] || fail "$step: copy to the new primary: $(cat "$T/rebuild.json")"
  "$FERRY" check --repo "$new" --read-data >/dev/null || fail "$step: check --read-data of the new primary"
  diff <("$FERRY" snapshots --repo "$from" --json | jq -r '.[].id') <("$FERRY" snapshots --repo "$new" --json | jq -r '.[].id') ||
    fail "$step: the new primary's snapshot ids differ"
}

# --- 0. the setup
img=$T/vol.img
make_fs_image "$img" 64 21
"$FERRY" init --repo "$P" >/dev/null
"$FERRY" init --repo "$R" --copy-of "$P" >/dev/null
"$FERRY" init --repo "$L" --copy-of "$P" >/dev/null
"$FERRY" backup --repo "$P" --copy-to "$R" --copy-to "$L" --volume pg-data --json "$img" >"$T/b1.json"
cp "$img" "$T/v1.img"
prand $((4 << 20)) 22 | dd of="$img" bs=1M seek=40 conv=notrunc status=none
"$FERRY" backup --repo "$P" --copy-to "$R" --copy-to "$L" --volume pg-data --json "$img" >"$T/b2.json"
id2=$(json_get "$T/b2.json" .snapshot_id)
[ "$(json_get "$T/b2.json" '[.targets[].ok] | all')" = true ] || fail "setup: a target failed: $(cat "$T/b2.json")"
ok "0: two snapshots, each on P, on R (replica account) and on L (Object Lock) in one pass"

# --- 1. weekly drills
"$FERRY" check --repo "$P" >/dev/null || fail "1.1: check P"
"$FERRY" check --repo "$R" --read-data >/dev/null || fail "1.1: check --read-data R"
"$FERRY" check --repo "$L" --read-data >/dev/null || fail "1.1: check --read-data L"
ok "1.1: every copy checks (R and L with --read-data)"

# 1.2: the drill of the far copy, with the runbook's check, recorded in R
# (--scratch-dir and --json for the test: nothing may be left there)
mkdir -p "$T/scratch"
"$FERRY" drill --repo "$R" --volume pg-data --check 'fsck -n -f {}' --record --scratch-dir "$T/scratch" --json \
  >"$T/drill.json" 2>"$T/drill.err" || { cat "$T/drill.err" >&2; fail "1.2: the drill of R failed"; }
jq -e --arg id "$id2" '.result == "ok" and .snapshot == $id and .restore_s > 0 and .throughput_mbps > 0 and
  .blocks_verified == .blocks and .check_status == 0 and .recorded == true' "$T/drill.json" >/dev/null ||
  fail "1.2: the drill's result: $(cat "$T/drill.json")"
rto=$(json_get "$T/drill.json" .restore_s)
[ -z "$(ls -A "$T/scratch")" ] || fail "1.2: the drill left $(ls -A "$T/scratch")"
! losetup -n -l -O BACK-FILE | grep -q "^$T/scratch/" || fail "1.2: a loop device stays bound to the drill's scratch"
ok "1.2: drill of R: latest of pg-data ($id2) restored in $rto s (RTO of the data), every block verified, fsck clean, recorded; nothing left"

# 1.3: RPO of every copy and RTO of R against objectives
"$FERRY" status --repo "$P" --copy "$R" --copy "$L" --volume pg-data --rpo 1d --json >"$T/status.json" ||
  fail "1.3: status --rpo 1d exited $?: $(cat "$T/status.json")"
jq -e '[.rows[] | .role] == ["primary", "copy", "copy"] and ([.rows[] | .rpo_s < 600] | all) and .breached == false' \
  "$T/status.json" >/dev/null || fail "1.3: RPO rows: $(cat "$T/status.json")"
rpo=$(jq -r '.rows[1].rpo_s' "$T/status.json")
"$FERRY" status --repo "$R" --volume pg-data --rto 1h --json >"$T/status2.json" || fail "1.3: status --rto 1h of R"
awk -v a="$(jq -r '.rows[0].rto_s' "$T/status2.json")" -v b="$rto" 'BEGIN { d = a - b; exit !(d < 0.002 && d > -0.002) }' ||
  fail "1.3: RTO of R is not the drill's restore time $rto: $(cat "$T/status2.json")"
rc=0
FERRY_TEST_NOW=$(( $(date +%s) + 2 * 86400 )) "$FERRY" status --repo "$P" --copy "$R" --copy "$L" --volume pg-data \
  --rpo 1d >/dev/null 2>"$T/status.err" || rc=$?
[ "$rc" = 3 ] && [ "$(grep -c 'RPO of volume pg-data on ' "$T/status.err")" = 3 ] ||
  fail "1.3: two days later the RPO objective should be breached on every copy: exit $rc: $(cat "$T/status.err")"
ok "1.3: RPO now $rpo s on R (objective 1d: met; two days on: breached, exit 3), RTO of R $rto s from its drill record"

# a backup that reached P only (an optional copy was down): copy catches R up
"$FERRY" backup --repo "$P" --volume pg-data --json "$img" >"$T/b3.json"
"$FERRY" copy --from "$P" --to "$R" --json >"$T/c1.json"
[ "$(json_get "$T/c1.json" .snapshots_copied)" = 1 ] || fail "1.4: copy P -> R: $(cat "$T/c1.json")"
"$FERRY" copy --from "$P" --to "$L" --json >"$T/c2.json"
[ "$(json_get "$T/c2.json" .snapshots_copied)" = 1 ] || fail "1.4: copy P -> L: $(cat "$T/c2.json")"
"$FERRY" copy --from "$P" --to "$R" --json >"$T/c3.json"
[ "$(json_get "$T/c3.json" .snapshots_copied)" = 0 ] && [ "$(json_get "$T/c3.json" .chunks_copied)" = 0 ] ||
  fail "1.4: a second copy sent something: $(cat "$T/c3.json")"
ok "1.4: copy caught R and L up with the snapshot they missed; a second copy sends nothing"

# --- 2. the node is lost: restore onto the new node's disk
"$FERRY" snapshots --repo "$P" --volume pg-data --json | jq -e 'length == 3' >/dev/null || fail "2.1: P lists 3 snapshots"
truncate -s 80M "$T/newdisk.img"
dev=$(new_loop "$T/newdisk.img")
"$FERRY" restore --repo "$P" "$id2" "$dev" >/dev/null || fail "2.2: restore onto $dev"
cmp -n "$(stat -c %s "$img")" "$img" "$dev" || fail "2.2: $dev differs from the volume"
e2fsck -n -f "$dev" >"$T/fsck2.out" 2>&1 || { cat "$T/fsck2.out" >&2; fail "2.3: fsck -n $dev"; }
losetup -d "$dev"
ok "2: snapshot $id2 restored onto a new loop device ($dev, larger than the volume), identical, fsck clean"

# --- 3. account A lost: everything under P is deleted with its keys
awsp primary s3 rm --recursive --only-show-errors "s3://ferry-primary/$S3P/" || fail "3: deleting P"
expect_fail "3: P is gone" "config" "$FERRY" snapshots --repo "$P"
"$FERRY" snapshots --repo "$R" --volume pg-data --json | jq -e 'length == 3' >/dev/null || fail "3.2: R lists 3 snapshots"
"$FERRY" restore --repo "$R" "$id2" "$T/r3.img" >/dev/null
cmp "$img" "$T/r3.img" || fail "3.2: restore from R differs"
P2="s3://ferry-primary/$S3P-p2?endpoint=$RGW_HTTP"
rebuild 3.3 "$R" "$P2" 3
"$FERRY" backup --repo "$P2" --copy-to "$R" --copy-to "$L" --volume pg-data --json "$img" >"$T/b4.json"
[ "$(json_get "$T/b4.json" '[.targets[].ok] | all')" = true ] || fail "3.4: a target failed: $(cat "$T/b4.json")"
[ "$(json_get "$T/b4.json" '[.targets[].chunks_new] | add')" = 0 ] ||
  fail "3.4: the first backup to the rebuilt primary sent chunks again: $(cat "$T/b4.json")"
ok "3: P deleted; restored from R (replica account); P2 rebuilt from R with the same ids, and its next backup sent no chunk"

# --- 4. ransomware with every key: P2 and R deleted, L attacked
t_before=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ) # the last write to L was before this
awsp primary s3 rm --recursive --only-show-errors "s3://ferry-primary/$S3P-p2/" || fail "4: deleting P2"
awsp replica s3 rm --recursive --only-show-errors "s3://ferry-replica/$S3P/" || fail "4: deleting R"
key=$(awsp primary s3api list-objects-v2 --bucket ferry-lock --prefix "$S3P/chunks/" --query 'Contents[0].Key' --output text)
ver=$(awsp primary s3api list-object-versions --bucket ferry-lock --prefix "$key" --query 'Versions[0].VersionId' --output text)
# (--version-id=ID: an id may begin with '-', which awscli would take for an option)
expect_s3_error "4: RGW refuses to delete the retained version $ver of $key" "403 AccessDenied" primary \
  s3api delete-object --bucket ferry-lock --key "$key" --version-id="$ver" >/dev/null
# a plain delete of every key is allowed: it only hides them behind delete markers
awsp primary s3 rm --recursive --only-show-errors "s3://ferry-lock/$S3P/" || fail "4: adding delete markers to L"
n=$("$FERRY" snapshots --repo "$L" --json 2>/dev/null | jq length) || n=none
[ "$n" != 3 ] && [ "$n" != 4 ] || fail "4: L still lists $n snapshots behind the delete markers"
# runbook 4.1, first way: read L as it was before the attack, read-only, through
# the delete markers (ferry picks each key's version by time)
LA="$L&as-of=$t_before"
"$FERRY" snapshots --repo "$LA" --volume pg-data --json | jq -e 'length == 4' >/dev/null ||
  fail "4.1a: L as of $t_before does not list its 4 snapshots"
"$FERRY" check --repo "$LA" --read-data >/dev/null || fail "4.1a: check --read-data of L as of $t_before"
"$FERRY" restore --repo "$LA" "$id2" "$T/r4a.img" >/dev/null || fail "4.1a: restore from L as of $t_before"
cmp "$img" "$T/r4a.img" || fail "4.1a: restore from L as of $t_before differs"
rm -f "$T/r4a.img"
# the view is read-only: a backup to it fails with one line and writes nothing
l_versions() {
  awsp primary s3api list-object-versions --bucket ferry-lock --prefix "$S3P/" \
    --query '[length(Versions || `[]`), length(DeleteMarkers || `[]`)]' --output text
}
nv=$(l_versions)
if "$FERRY" backup --repo "$LA" --volume pg-data "$img" >/dev/null 2>"$T/ro.err"; then
  fail "4.1a: a backup to the as-of view succeeded"
fi
grep -q "opened as of $t_before: a read-only view" "$T/ro.err" || fail "4.1a: no read-only error: $(cat "$T/ro.err")"
[ "$(wc -l <"$T/ro.err")" = 1 ] || fail "4.1a: more than one error line: $(cat "$T/ro.err")"
[ "$(l_versions)" = "$nv" ] || fail "4.1a: the read-only backup changed L: versions and markers $nv before, $(l_versions) after"
# before L existed there is nothing to read
if "$FERRY" snapshots --repo "$L&as-of=2001-01-01T00:00:00Z" >/dev/null 2>"$T/early.err"; then
  fail "4.1a: L as of 2001 lists snapshots"
fi
grep -q "no repository" "$T/early.err" || fail "4.1a: L as of 2001: $(cat "$T/early.err")"
# runbook 4.1, second way: remove the delete markers (deleting a marker is allowed), then restore
awsp primary s3api list-object-versions --bucket ferry-lock --prefix "$S3P/" \
  --query 'DeleteMarkers[].[Key,VersionId]' --output text >"$T/markers"
nm=0
while read -r k v; do
  [ -n "$k" ] && [ "$k" != None ] || continue
  awsp primary s3api delete-object --bucket ferry-lock --key "$k" --version-id="$v" >/dev/null || fail "4.1: removing the marker of $k"
  nm=$((nm + 1))
done <"$T/markers"
[ "$nm" -gt 0 ] || fail "4.1: no delete markers found"
"$FERRY" snapshots --repo "$L" --volume pg-data --json | jq -e 'length == 4' >/dev/null ||
  fail "4.1: L does not list its 4 snapshots after the markers were removed"
"$FERRY" check --repo "$L" --read-data >/dev/null || fail "4.2: check --read-data L"
"$FERRY" restore --repo "$L" "$id2" "$T/r4.img" >/dev/null
cmp "$img" "$T/r4.img" || fail "4.2: restore from L differs"
P3="s3://ferry-primary/$S3P-p3?endpoint=$RGW_HTTP"
rebuild 4.3 "$L" "$P3" 4
ok "4: RGW refused to delete a locked version; L as of before the attack read through the markers (check, restore identical, read-only); $nm delete markers removed; L restored identical; P3 rebuilt from L"

# --- 5. a damaged chunk in P3, repaired from L
ck=$(awsp primary s3api list-objects-v2 --bucket ferry-primary --prefix "$S3P-p3/chunks/" --query 'Contents[0].Key' --output text)
hexid=${ck##*/}
awsp primary s3 cp --only-show-errors "s3://ferry-primary/$ck" "$T/chunk.obj"
printf '\xff' | dd of="$T/chunk.obj" bs=1 seek=100 conv=notrunc status=none
awsp primary s3 cp --only-show-errors "$T/chunk.obj" "s3://ferry-primary/$ck"
rc=0
"$FERRY" check --repo "$P3" --read-data >/dev/null 2>"$T/check5.err" || rc=$?
[ "$rc" = 1 ] || fail "5: check --read-data of the damaged P3 exited $rc"
grep -q "$hexid" "$T/check5.err" || { cat "$T/check5.err" >&2; fail "5: check does not name chunk $hexid"; }
sid=$(grep -o 'named by snapshot [0-9a-f]*' "$T/check5.err" | head -1 | awk '{print $4}')
[ -n "$sid" ] || fail "5: check names no snapshot: $(cat "$T/check5.err")"
expect_fail "5: a drill of $sid from the damaged P3" "drill failed: chunk $hexid is corrupt: .*\(block [0-9]+" \
  "$FERRY" drill --repo "$P3" --snapshot "$sid" --scratch-dir "$T/scratch"
[ -z "$(ls -A "$T/scratch")" ] || fail "5: the failed drill left $(ls -A "$T/scratch")"
awsp primary s3 rm --only-show-errors "s3://ferry-primary/$ck"
"$FERRY" copy --from "$L" --to "$P3" "$sid" --json >"$T/c6.json"
[ "$(json_get "$T/c6.json" .chunks_copied)" = 1 ] && [ "$(json_get "$T/c6.json" .snapshots_copied)" = 0 ] ||
  fail "5.2: the repair should send exactly the one chunk: $(cat "$T/c6.json")"
"$FERRY" check --repo "$P3" --read-data >/dev/null || fail "5.2: check --read-data P3 after the repair"
"$FERRY" drill --repo "$P3" --snapshot "$sid" --scratch-dir "$T/scratch" >/dev/null || fail "5.2: drill of $sid from the repaired P3"
"$FERRY" restore --repo "$P3" "$id2" "$T/r5.img" >/dev/null
cmp "$img" "$T/r5.img" || fail "5.2: restore from the repaired P3 differs"
ok "5: check named the damaged chunk ${hexid:0:12}... of snapshot ${sid:0:8}; removed, sent again from L by 'copy $sid', check and restore pass"
