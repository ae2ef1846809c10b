#!/usr/bin/env bash
# The main job on the embedded default: a disk image with a real ext4
# filesystem and files on it, backed up to a local-directory repository,
# changed, backed up again; both snapshots restored and compared with cmp.
# Run as root (it mounts the image to change files).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/ferry ] || bash scripts/build.sh --release-only
FERRY=$PWD/build/ferry
W=${DEMO_DIR:-/var/tmp/ferry-demo}
MB=${DEMO_SIZE_MB:-1024}
export FERRY_PASSWORD=${FERRY_PASSWORD:-ferry demo password}
rm -rf "$W"; mkdir -p "$W/mnt"
trap 'umount "$W/mnt" 2>/dev/null || true' EXIT

# prand N SEED: N deterministic pseudo-random bytes (AES-CTR keystream).
prand() { openssl enc -aes-128-ctr -nosalt -pass "pass:$2" -in <(head -c "$1" /dev/zero) 2>/dev/null; }
say() { printf '\n== %s\n' "$*"; }

say "1. a ${MB} MiB disk image with an ext4 filesystem and files on it"
truncate -s "${MB}M" "$W/disk.img"
mkfs.ext4 -q -F "$W/disk.img"
mount -o loop "$W/disk.img" "$W/mnt"
cp -r /usr/share/doc "$W/mnt/doc"
mkdir "$W/mnt/data"
for i in 1 2 3 4; do
  prand $((32 << 20)) "demo$i" > "$W/mnt/data/blob$i.bin"
done
seq 1 3000000 | sed 's/^/record /' > "$W/mnt/data/records.txt"
umount "$W/mnt"
cp --sparse=always "$W/disk.img" "$W/disk-v1.img"
df_line() { du -h --apparent-size "$1" | cut -f1; }
echo "image: $(df_line "$W/disk.img") apparent, $(du -h "$W/disk.img" | cut -f1) allocated"

say "2. init a repository in $W/repo and back up (snapshot 1)"
$FERRY init --repo "file://$W/repo"
j1=$($FERRY backup --repo "$W/repo" --volume demo-disk --tag stage=initial --json "$W/disk.img")
echo "$j1" | jq .

say "3. change some files: append, rewrite one, add one, delete one"
mount -o loop "$W/disk.img" "$W/mnt"
seq 3000001 3100000 | sed 's/^/record /' >> "$W/mnt/data/records.txt"
prand $((8 << 20)) changed > "$W/mnt/data/blob2.bin"
echo "a new file" > "$W/mnt/data/new.txt"
rm "$W/mnt/data/blob4.bin"
umount "$W/mnt"
cp --sparse=always "$W/disk.img" "$W/disk-v2.img"

say "4. back up again (snapshot 2, parent = snapshot 1): unchanged blocks are not stored again"
j2=$($FERRY backup --repo "$W/repo" --volume demo-disk --tag stage=changed --json "$W/disk.img")
echo "$j2" | jq .

say "5. list, check every byte, restore both snapshots and compare"
$FERRY snapshots --repo "$W/repo"
$FERRY check --repo "$W/repo" --read-data
s1=$(jq -r .snapshot_id <<<"$j1"); s2=$(jq -r .snapshot_id <<<"$j2")
r1=$($FERRY restore --repo "$W/repo" --json "$s1" "$W/restore-v1.img")
r2=$($FERRY restore --repo "$W/repo" --json "$s2" "$W/restore-v2.img")
cmp "$W/disk-v1.img" "$W/restore-v1.img" && echo "snapshot 1: restored image is byte-identical"
cmp "$W/disk-v2.img" "$W/restore-v2.img" && echo "snapshot 2: restored image is byte-identical"

say "summary (vol MB/s: volume size over wall time; holes and zero blocks cost nothing)"
f() { jq -r "$1" <<<"$2"; }
h() { numfmt --to=iec-i --suffix=B "$1"; }
echo "(unchanged: blocks equal to the parent's or already in the repository, not stored again)"
printf '%-12s %10s %10s %10s %10s %10s %10s  %s\n' "" volume read stored zero unchanged "vol MB/s" "change source"
for n in 1 2; do
  j=$([ $n = 1 ] && echo "$j1" || echo "$j2")
  printf '%-12s %10s %10s %10s %10s %10s %10s  %s\n' "backup $n" "$(h "$(f .size "$j")")" "$(h "$(f .bytes_read "$j")")" \
    "$(h "$(f .bytes_stored "$j")")" "$(h "$(f .bytes_zero "$j")")" \
    "$(h "$(f '.bytes_dedup + .bytes_same + .bytes_reused' "$j")")" "$(f .throughput_mbps "$j")" "$(f .change_source "$j")"
done
for n in 1 2; do
  j=$([ $n = 1 ] && echo "$r1" || echo "$r2")
  printf '%-12s %10s %10s %10s %10s %10s %10s\n' "restore $n" "$(h "$(f .size "$j")")" "-" "-" "$(h "$(f .bytes_zero "$j")")" "-" "$(f .throughput_mbps "$j")"
done
echo "repository: $(du -sh "$W/repo" | cut -f1) on disk for two snapshots of a $(df_line "$W/disk.img") volume"
echo "demo OK (files in $W)"
