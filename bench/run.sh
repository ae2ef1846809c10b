#!/usr/bin/env bash
# bench/run.sh — ferry throughput harness: the machine ceiling, ferry, restic and
# borg on the same generated image, in one run; incremental backups on a
# reflink XFS; and backups to S3 (a Ceph RGW on loopback). See bench/README.md.
#
# usage: bench/run.sh [--size 4G] [--runs 3] [--out bench/out] [--ferry PATH]
#                     [--codec-bench PATH] [--seed N] [--skip-peers] [--quick]
#                     [--only SET[,SET...]]
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")

SIZE=""
RUNS=""
OUT="$HERE/out"
FERRY="$ROOT/build/ferry"
CODEC="$ROOT/build/bench/codec_bench"
SEED=1
SKIP_PEERS=0
QUICK=0
ONLY=all
SETS_KNOWN="all ceiling ferry peers memory incremental s3 csi"
PASSWORD="ferry-bench-password"
GEN_VERSION=1          # bump when gen_mixed.c changes its output: invalidates cached images

usage() {
	cat <<EOF
usage: bench/run.sh [options]
  --size SIZE          image size, K/M/G/T suffixes (default 4G; 256M with --quick)
  --runs N             timed runs per configuration (default 3; 1 with --quick)
  --out DIR            output directory (default bench/out)
  --ferry PATH         ferry binary (default $ROOT/build/ferry)
  --codec-bench PATH   codec_bench binary (default $ROOT/build/bench/codec_bench)
  --seed N             image generator seed (default 1)
  --skip-peers         do not run restic and borg
  --quick              small and fast: --size 256M --runs 1 unless given
  --only SET[,SET...]  run only these sets of rows (default all):
                         ceiling      fio read, fio write, codec_bench
                         ferry        ferry backup (tmpfs and same-disk repo), restore
                         peers        restic and borg backup and restore
                         memory       ferry backup of sparse 1 GiB and 64 GiB images
                         incremental  incremental backups on a reflink XFS, restic's
                                      incremental, 100 GiB no-change incremental, diff
                         s3           a Ceph RGW on loopback: its ingest ceiling (curl),
                                      ferry backup to S3 with 1 and 3 targets, restic
                         csi          the agent: the cut inside CreateSnapshot (1 GiB and
                                      100 GiB volumes), GetMetadataDelta on 100 GiB with
                                      1000 changed ranges (bench/csi.py)
  -h, --help           this text
Must run as root (drop_caches, tmpfs and loop mounts, the Ceph daemons).
EOF
}

die() { echo "run.sh: error: $*" >&2; exit 2; }
say() { echo "== $*" >&2; }

while [ $# -gt 0 ]; do
	case "$1" in
	--size) [ $# -ge 2 ] || die "--size needs a value"; SIZE=$2; shift 2 ;;
	--runs) [ $# -ge 2 ] || die "--runs needs a value"; RUNS=$2; shift 2 ;;
	--out) [ $# -ge 2 ] || die "--out needs a value"; OUT=$2; shift 2 ;;
	--ferry) [ $# -ge 2 ] || die "--ferry needs a value"; FERRY=$2; shift 2 ;;
	--codec-bench) [ $# -ge 2 ] || die "--codec-bench needs a value"; CODEC=$2; shift 2 ;;
	--seed) [ $# -ge 2 ] || die "--seed needs a value"; SEED=$2; shift 2 ;;
	--skip-peers) SKIP_PEERS=1; shift ;;
	--quick) QUICK=1; shift ;;
	--only) [ $# -ge 2 ] || die "--only needs a value"; ONLY=$2; shift 2 ;;
	-h|--help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done
if [ "$QUICK" = 1 ]; then
	SIZE=${SIZE:-256M}
	RUNS=${RUNS:-1}
fi
SIZE=${SIZE:-4G}
RUNS=${RUNS:-3}
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer, got '$RUNS'"
[[ "$SEED" =~ ^[0-9]+$ ]] || die "--seed must be a non-negative integer, got '$SEED'"
IFS=, read -r -a SETS <<<"$ONLY"
[ ${#SETS[@]} -gt 0 ] || die "--only needs at least one set"
for s in "${SETS[@]}"; do
	[[ " $SETS_KNOWN " == *" $s "* ]] || die "--only: unknown set '$s' (known: $SETS_KNOWN)"
done
# has SET: is SET among the rows to run?
has() { [[ ",$ONLY," == *",all,"* || ",$ONLY," == *",$1,"* ]]; }
MAIN=0                 # any of the throughput sets (ceiling, ferry, peers, memory)
for s in ceiling ferry peers memory; do has "$s" && MAIN=1; done
RUN_PEERS=0
if has peers && [ "$SKIP_PEERS" = 0 ]; then RUN_PEERS=1; fi
INCR=0
has incremental && INCR=1
S3=0
has s3 && S3=1
CSI=0
has csi && CSI=1

# ---------------------------------------------------------------- prerequisites
missing=()
need() { # need CMD HINT
	command -v "$1" >/dev/null 2>&1 || missing+=("$1 ($2)")
}
[ "$(id -u)" = 0 ] || missing+=("root privileges (needed for /proc/sys/vm/drop_caches, the tmpfs and loop mounts: run with sudo)")
need fio "apt-get install -y fio"
need jq "apt-get install -y jq"
need numfmt "coreutils"
need mountpoint "util-linux"
if [ ! -x /usr/bin/time ] || ! /usr/bin/time --version 2>&1 | grep -q GNU; then
	missing+=("/usr/bin/time, GNU time (apt-get install -y time)")
fi
[ -x /usr/bin/python3 ] || missing+=("/usr/bin/python3 (apt-get install -y python3)")
if [ "$SKIP_PEERS" = 0 ] && { [ "$RUN_PEERS" = 1 ] || [ "$INCR" = 1 ] || [ "$S3" = 1 ]; }; then
	need restic "apt-get install -y restic, or pass --skip-peers"
fi
[ "$RUN_PEERS" = 0 ] || need borg "apt-get install -y borgbackup, or pass --skip-peers"
if [ "$INCR" = 1 ]; then
	need mkfs.xfs "apt-get install -y xfsprogs"
	need losetup "util-linux"
	need cmp "diffutils"
fi
if [ "$S3" = 1 ]; then
	need curl "apt-get install -y curl"
	need sha256sum "coreutils"
	need cmp "diffutils"
	need radosgw "apt-get install -y radosgw ceph-mon ceph-osd (scripts/install-deps.sh)"
	need radosgw-admin "apt-get install -y radosgw"
	[ -x /usr/bin/aws ] || missing+=("/usr/bin/aws, awscli v2 (scripts/install-deps.sh)")
fi
if [ ${#missing[@]} -gt 0 ]; then
	echo "run.sh: missing prerequisites:" >&2
	printf '  - %s\n' "${missing[@]}" >&2
	exit 2
fi
if ! /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
	echo "run.sh: warning: /usr/bin/python3 has no matplotlib (apt-get install -y python3-matplotlib): no chart" >&2
fi

SIZE_BYTES=$(numfmt --from=iec "${SIZE%B}" 2>/dev/null) || die "bad --size '$SIZE'"
if [ "$SIZE_BYTES" -lt $((1 << 20)) ] || [ $((SIZE_BYTES % (1 << 20))) != 0 ]; then
	die "--size must be a positive multiple of 1 MiB, got '$SIZE'"
fi
NPROC=$(nproc)

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
CACHE="$OUT/cache"            # kept between runs: the generated image
SCRATCH="$OUT/scratch"        # same disk as the image; removed at exit
TMPFS="$OUT/tmpfs"            # tmpfs mount for the in-memory repository
LOGS="$OUT/logs"              # every tool's stdout/stderr/time, per run
RAW="$OUT/raw.jsonl"
XFS_FILE="$SCRATCH/xfs.img"    # sparse backing file of the incremental rows' XFS
XFS="$SCRATCH/xfs"            # its mount point
RGW_DIR="$SCRATCH/rgw"         # the s3 set's Ceph cluster (tests/s3/rgw.sh)
RGW_SH="$ROOT/tests/s3/rgw.sh"
mkdir -p "$CACHE"
export FERRY_PASSWORD=$PASSWORD

# Unmount the reflink XFS and detach every loop device backed by its file. Safe to
# call at any point: nothing mounted, nothing attached, or half set up.
xfs_teardown() {
	local dev
	if mountpoint -q "$XFS" 2>/dev/null; then
		umount "$XFS" 2>/dev/null || { sleep 1; umount "$XFS" 2>/dev/null; } || umount -l "$XFS"
	fi
	if [ -e "$XFS_FILE" ]; then
		for dev in $(losetup -l -n -O NAME -j "$XFS_FILE" 2>/dev/null); do
			losetup -d "$dev" 2>/dev/null || echo "run.sh: warning: could not detach $dev" >&2
		done
	fi
}

# Stop the s3 set's Ceph daemons (by their pid files, tests/s3/rgw.sh stop).
rgw_teardown() {
	if [ -e "$RGW_DIR/ceph.conf" ]; then
		bash "$RGW_SH" stop "$RGW_DIR" >>"$LOGS/rgw.log" 2>&1 ||
			echo "run.sh: warning: rgw.sh stop $RGW_DIR failed (see $LOGS/rgw.log)" >&2
	fi
}

cleanup() {
	local rc=$?
	set +e
	rgw_teardown
	if mountpoint -q "$TMPFS" 2>/dev/null; then
		umount "$TMPFS" 2>/dev/null || umount -l "$TMPFS"
	fi
	rmdir "$TMPFS" 2>/dev/null
	xfs_teardown
	if mountpoint -q "$XFS" 2>/dev/null; then
		echo "run.sh: warning: $XFS is still mounted: leaving $SCRATCH in place" >&2
	else
		rm -rf "$SCRATCH"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'echo "run.sh: interrupted" >&2; exit 130' INT
trap 'echo "run.sh: terminated" >&2; exit 143' TERM

# A previous run killed hard may have left its tmpfs or its XFS mounted, or its
# Ceph daemons running.
if mountpoint -q "$TMPFS" 2>/dev/null; then umount "$TMPFS"; fi
xfs_teardown
mkdir -p "$LOGS"
rgw_teardown
! mountpoint -q "$XFS" 2>/dev/null || die "$XFS is still mounted from an earlier run: unmount it first"
rm -rf "$SCRATCH" "$LOGS"
mkdir -p "$SCRATCH" "$LOGS"
: >"$RAW"

# Disk budget on the output filesystem. Throughput sets: image + one repository + one
# restored copy (or the fio scratch file) at a time. Incremental set: the XFS's
# sparse backing file, which may fill up to its size (3x the image: the volume and
# its clones, a ferry and a restic repository), + one restored copy outside it.
# S3 set: the OSD's sparse bluestore file, which may fill up to its size (it holds
# up to four repositories of the image at once: the three targets of a fan-out and
# the locked copy of the round before, which cannot be deleted sooner), + the
# ceiling's file repository of the image + one restored copy.
# The sets run one after the other, so the largest counts.
IMG="$CACHE/mixed-v$GEN_VERSION-$SIZE_BYTES-s$SEED.img"
XFS_BYTES=$((SIZE_BYTES * 3))
[ "$XFS_BYTES" -ge $((1 << 30)) ] || XFS_BYTES=$((1 << 30))
OSD_BYTES=$((SIZE_BYTES * 3))
[ "$OSD_BYTES" -ge $((16 << 30)) ] || OSD_BYTES=$((16 << 30))
need_bytes=0
[ "$MAIN" = 0 ] || need_bytes=$((SIZE_BYTES * 2 + SIZE_BYTES / 2))
if [ "$INCR" = 1 ] && [ $((XFS_BYTES + SIZE_BYTES)) -gt "$need_bytes" ]; then
	need_bytes=$((XFS_BYTES + SIZE_BYTES))
fi
if [ "$S3" = 1 ] && [ $((OSD_BYTES + SIZE_BYTES * 2)) -gt "$need_bytes" ]; then
	need_bytes=$((OSD_BYTES + SIZE_BYTES * 2))
fi
need_bytes=$((need_bytes + (1 << 30)))
[ -f "$IMG" ] || need_bytes=$((need_bytes + SIZE_BYTES))
avail=$(($(df -P -k "$OUT" | awk 'NR==2 {print $4}') * 1024))
[ "$avail" -ge "$need_bytes" ] ||
	die "not enough free space in $OUT: need ~$(numfmt --to=iec $need_bytes), have $(numfmt --to=iec $avail)"

# ---------------------------------------------------------------- helpers
drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
}

# timed ROW RUN CWD SYNCPATH CMD...
# Runs CMD in CWD under GNU time; when SYNCPATH is set, the timed part also includes
# `sync -f SYNCPATH` (flushing what the tool wrote), the same for every tool.
# Sets T_RC T_WALL T_USER T_SYS T_RSS (KiB); output goes to $LOGS/ROW.RUN.{out,err,time}.
timed() {
	local row=$1 run=$2 cwd=$3 syncp=$4
	shift 4
	local base="$LOGS/$row.$run"
	T_RC=0
	# shellcheck disable=SC2016 # the inner script expands its own "$@" and $SYNCP
	(cd "$cwd" && SYNCP="$syncp" exec /usr/bin/time -f '%e %U %S %M' -o "$base.time" \
		bash -c '"$@" || exit $?; if [ -n "$SYNCP" ]; then sync -f "$SYNCP"; fi' timed "$@") \
		>"$base.out" 2>"$base.err" || T_RC=$?
	T_WALL=null T_USER=null T_SYS=null T_RSS=null
	if [ -s "$base.time" ]; then
		read -r T_WALL T_USER T_SYS T_RSS < <(tail -n 1 "$base.time") || true
	fi
	[[ "$T_WALL" =~ ^[0-9.]+$ ]] || T_WALL=null
	[[ "$T_USER" =~ ^[0-9.]+$ ]] || T_USER=null
	[[ "$T_SYS" =~ ^[0-9.]+$ ]] || T_SYS=null
	[[ "$T_RSS" =~ ^[0-9]+$ ]] || T_RSS=null
}

# Last lines of a run's stderr, for the record of a failure.
errtail() { tail -n 3 "$LOGS/$1.$2.err" 2>/dev/null | tr '\n' ' ' | cut -c1-300; }

mbps_of() { # BYTES WALL -> decimal MB/s
	awk -v b="$1" -v w="$2" 'BEGIN { if (w > 0) printf "%.1f", b / w / 1e6; else print "null" }'
}

# record ROW RUN STATUS MBPS STORED EXTRA_JSON ERROR  (timing from the last `timed`)
record() {
	local row=$1 run=$2 status=$3 mbps=${4:-null} stored=${5:-null} extra=${6:-null} err=${7:-}
	jq -nc --arg row "$row" --argjson run "$run" --arg status "$status" \
		--argjson wall_s "$T_WALL" --argjson user_s "$T_USER" --argjson sys_s "$T_SYS" \
		--argjson rss_kib "$T_RSS" --argjson mbps "$mbps" --argjson stored_bytes "$stored" \
		--argjson extra "$extra" --arg error "$err" \
		'{row: $row, run: $run, status: $status, wall_s: $wall_s, user_s: $user_s,
		  sys_s: $sys_s, rss_kib: $rss_kib, mbps: $mbps, stored_bytes: $stored_bytes,
		  extra: $extra, error: (if $error == "" then null else $error end)}' >>"$RAW"
}

record_missing() { # ROW REASON
	T_WALL=null T_USER=null T_SYS=null T_RSS=null
	record "$1" 0 missing null null null "$2"
}

stored_of() { du -sb "$1" | cut -f1; }

# The last JSON object a tool printed on stdout (pretty-printed or one per line).
json_of() {
	local f=$1
	jq -sc 'map(objects) | last // empty' "$f" 2>/dev/null ||
		grep -E '^\{.*\}$' "$f" | tail -n 1 | jq -c . 2>/dev/null || true
}

# verify_restore ROW RUN DIR_OR_FILE [ORIGINAL]: compare the restored image with the
# original (default: the generated image).
verify_restore() {
	local f=$3 orig=${4:-$IMG}
	if [ -d "$f" ]; then
		f=$(find "$f" -type f -name "$(basename "$orig")" | head -n 1)
	fi
	if [ -n "$f" ] && [ -f "$f" ] && cmp -s "$orig" "$f"; then
		echo true
	else
		echo "run.sh: warning: $1 run $2: restored data differs from the image (or is missing)" >&2
		echo false
	fi
}

# ---------------------------------------------------------------- the image
find_gen() {
	local src="$HERE/gen_mixed.c" built="$ROOT/build/bench/gen_mixed" own="$CACHE/gen_mixed"
	if [ -x "$built" ] && [ "$built" -nt "$src" ]; then
		echo "$built"
		return
	fi
	if [ ! -x "$own" ] || [ "$src" -nt "$own" ]; then
		local cc=${CC:-cc}
		command -v "$cc" >/dev/null || die "no C compiler ($cc) to build bench/gen_mixed.c; build the project first"
		"$cc" -std=c11 -O2 -D_GNU_SOURCE -o "$own" "$src" || die "building bench/gen_mixed.c failed"
	fi
	echo "$own"
}

if [ -f "$IMG" ] && [ "$(stat -c %s "$IMG")" = "$SIZE_BYTES" ]; then
	say "image: reusing $IMG"
else
	GEN=$(find_gen)
	say "image: generating $(numfmt --to=iec "$SIZE_BYTES") (seed $SEED) with $GEN"
	"$GEN" --size "$SIZE_BYTES" --seed "$SEED" --out "$IMG.tmp"
	mv "$IMG.tmp" "$IMG"
fi

# ---------------------------------------------------------------- tools present?
FERRY_MISSING=""
if [ ! -x "$FERRY" ]; then
	FERRY_MISSING="ferry not found at $FERRY (pass --ferry PATH)"
else
	FERRY=$(readlink -f "$FERRY")
	if ! "$FERRY" init --repo "$SCRATCH/probe-repo" \
		>"$LOGS/ferry-probe.out" 2>"$LOGS/ferry-probe.err"; then
		FERRY_MISSING="ferry init failed: $(head -c 200 "$LOGS/ferry-probe.err" | head -n 1)"
	fi
	rm -rf "$SCRATCH/probe-repo"
fi
CODEC_MISSING=""
if [ ! -x "$CODEC" ]; then
	CODEC_MISSING="codec_bench not found at $CODEC (pass --codec-bench PATH)"
else
	CODEC=$(readlink -f "$CODEC")
fi
[ -z "$FERRY_MISSING" ] || say "ferry: missing — $FERRY_MISSING"
[ -z "$CODEC_MISSING" ] || say "codec_bench: missing — $CODEC_MISSING"

version_of() { "$@" 2>&1 | head -n 1 | cut -c1-120 || true; }
FIO_VER=$(version_of fio --version)
RESTIC_VER="" BORG_VER=""
if [ "$SKIP_PEERS" = 0 ] && { [ "$RUN_PEERS" = 1 ] || [ "$INCR" = 1 ] || [ "$S3" = 1 ]; }; then
	RESTIC_VER=$(version_of restic version)
fi
[ "$RUN_PEERS" = 0 ] || BORG_VER=$(version_of borg --version)
FERRY_VER=""
[ -n "$FERRY_MISSING" ] || FERRY_VER=$(version_of "$FERRY" --version)

jq -n --arg date "$(date -Is)" --arg host "$(hostname)" --arg kernel "$(uname -r)" \
	--argjson nproc "$NPROC" --argjson size_bytes "$SIZE_BYTES" --argjson seed "$SEED" \
	--argjson runs "$RUNS" --arg image "$IMG" --arg out "$OUT" \
	--argjson quick "$QUICK" --argjson skip_peers "$SKIP_PEERS" \
	--argjson sets "$(printf '%s\n' "${SETS[@]}" | jq -R . | jq -sc .)" \
	--arg ferry "$FERRY" --arg ferry_missing "$FERRY_MISSING" --arg ferry_version "$FERRY_VER" \
	--arg codec "$CODEC" --arg codec_missing "$CODEC_MISSING" \
	--arg fio "$FIO_VER" --arg restic "$RESTIC_VER" --arg borg "$BORG_VER" \
	--arg cpu "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)" \
	'{date: $date, host: $host, kernel: $kernel, cpu: $cpu, nproc: $nproc,
	  size_bytes: $size_bytes, seed: $seed, runs: $runs, image: $image, out: $out,
	  quick: ($quick == 1), skip_peers: ($skip_peers == 1), sets: $sets,
	  ferry: {path: $ferry, version: $ferry_version, missing: $ferry_missing},
	  codec_bench: {path: $codec, missing: $codec_missing},
	  versions: {fio: $fio, restic: $restic, borg: $borg}}' >"$OUT/meta.json"

if [ -z "$FERRY_MISSING" ] && { has ferry || has memory; }; then
	# The repository needs at most about the image size; the sparse images need little.
	tmpfs_mib=$((SIZE_BYTES / 1048576 + 1024))
	mkdir -p "$TMPFS"
	mount -t tmpfs -o "size=${tmpfs_mib}m,mode=0700" ferry-bench "$TMPFS"
fi

# ---------------------------------------------------------------- warm-up
# The first buffered read after idle is slow on this shared host, and O_DIRECT
# speed drifts: one untimed buffered pass and one untimed direct pass first.
warm_up() { # FILE NAME
	cat "$1" >/dev/null
	drop_caches
	fio --name=warmup --filename="$1" --readonly --rw=read --bs=1M --iodepth=8 \
		--ioengine=io_uring --direct=1 --size="$SIZE_BYTES" --output-format=json \
		>"$LOGS/warmup.$2.fio.json" 2>"$LOGS/warmup.$2.fio.err" ||
		die "fio warm-up failed: $(cat "$LOGS/warmup.$2.fio.err")"
}
if [ "$MAIN" = 1 ] || [ "$S3" = 1 ]; then
	say "warm-up: buffered and O_DIRECT reads of the image (untimed)"
	warm_up "$IMG" image
fi

# ---------------------------------------------------------------- configurations
run_fio_read() {
	local r=$1
	drop_caches
	timed fio_read "$r" "$OUT" "" fio --name=seqread --filename="$IMG" --readonly \
		--rw=read --bs=1M --iodepth=8 --ioengine=io_uring --direct=1 \
		--size="$SIZE_BYTES" --output-format=json
	local bw
	bw=$(jq -r '.jobs[0].read.bw_bytes // empty' "$LOGS/fio_read.$r.out" 2>/dev/null || true)
	if [ "$T_RC" = 0 ] && [ -n "$bw" ]; then
		record fio_read "$r" ok "$(awk -v b="$bw" 'BEGIN {printf "%.1f", b / 1e6}')" null \
			"{\"fio_bw_bytes\": $bw}"
	else
		record fio_read "$r" failed null null null "$(errtail fio_read "$r")"
	fi
}

run_fio_write() {
	local r=$1 f="$SCRATCH/fio-write.dat"
	rm -f "$f"
	drop_caches
	timed fio_write "$r" "$OUT" "" fio --name=seqwrite --filename="$f" \
		--rw=write --bs=1M --iodepth=8 --ioengine=io_uring --direct=1 --end_fsync=1 \
		--size="$SIZE_BYTES" --output-format=json
	local bw
	bw=$(jq -r '.jobs[0].write.bw_bytes // empty' "$LOGS/fio_write.$r.out" 2>/dev/null || true)
	rm -f "$f"
	if [ "$T_RC" = 0 ] && [ -n "$bw" ]; then
		record fio_write "$r" ok "$(awk -v b="$bw" 'BEGIN {printf "%.1f", b / 1e6}')" null \
			"{\"fio_bw_bytes\": $bw}"
	else
		record fio_write "$r" failed null null null "$(errtail fio_write "$r")"
	fi
}

# codec_bench measures CPU: the image is read into the page cache first so the
# disk does not bound it.
run_codec() {
	local r=$1
	if [ -n "$CODEC_MISSING" ]; then
		[ "$r" != 1 ] || record_missing codec "$CODEC_MISSING"
		return
	fi
	cat "$IMG" >/dev/null
	timed codec "$r" "$OUT" "" "$CODEC" --json --threads "$NPROC" --level 1 "$IMG"
	local j mbps
	j=$(json_of "$LOGS/codec.$r.out")
	mbps=$(jq -r '.mbps // empty' <<<"${j:-null}" 2>/dev/null || true)
	if [ "$T_RC" = 0 ] && [[ "$mbps" =~ ^[0-9.eE+-]+$ ]]; then
		record codec "$r" ok "$mbps" null "$j"
	else
		record codec "$r" failed null null "${j:-null}" "rc=$T_RC $(errtail codec "$r")"
	fi
}

# ferry_backup ROW RUN REPO: fresh repository, cold cache, timed backup of IMAGE.
# Echoes the snapshot id on success.
ferry_backup() {
	local row=$1 r=$2 repo=$3 image=${4:-$IMG} bytes=${5:-$SIZE_BYTES}
	rm -rf "$repo"
	if ! "$FERRY" init --repo "$repo" \
		>"$LOGS/$row.$r.init.out" 2>"$LOGS/$row.$r.init.err"; then
		T_WALL=null T_USER=null T_SYS=null T_RSS=null
		record "$row" "$r" failed null null null "init: $(tail -n 2 "$LOGS/$row.$r.init.err" | tr '\n' ' ')"
		return 1
	fi
	drop_caches
	timed "$row" "$r" "$OUT" "$repo" \
		"$FERRY" backup --repo "$repo" --volume bench --json "$image"
	local j snap stored
	j=$(json_of "$LOGS/$row.$r.out")
	snap=$(jq -r '.snapshot_id // empty' <<<"${j:-null}" 2>/dev/null || true)
	if [ "$T_RC" != 0 ] || [ -z "$snap" ]; then
		record "$row" "$r" failed null null "${j:-null}" "rc=$T_RC $(errtail "$row" "$r")"
		return 1
	fi
	stored=$(stored_of "$repo")
	record "$row" "$r" ok "$(mbps_of "$bytes" "$T_WALL")" "$stored" "$j"
	echo "$snap"
}

# touch_tmpfs: write and delete a file of the image's size on the tmpfs (untimed), so
# that the pages the next repository gets are backed by the host.
touch_tmpfs() {
	dd if=/dev/zero of="$TMPFS/touch" bs=1M count=$((SIZE_BYTES / 1048576)) status=none ||
		echo "run.sh: warning: touching the tmpfs's pages failed" >&2
	rm -f "$TMPFS/touch"
}

run_ferry() {
	local r=$1
	if [ -n "$FERRY_MISSING" ]; then
		if [ "$r" = 1 ]; then
			local row
			for row in ferry_backup_tmpfs_cold ferry_backup_tmpfs ferry_backup_disk ferry_restore; do
				record_missing "$row" "$FERRY_MISSING"
			done
		fi
		return
	fi
	# The tmpfs twice: as it comes, then with its pages touched just before. On a
	# VM whose balloon reports free pages (virtio-balloon free page reporting), a
	# page the guest freed a while ago is given back to the host, and the first
	# write to it costs a fault and a zeroing in the host: seconds of system time
	# for a 2 GB repository, which is the VM's, not the data path's (the codec
	# ceiling fills its buffer before its clock starts). The target is checked on
	# the second row; the first is shown beside it.
	ferry_backup ferry_backup_tmpfs_cold "$r" "$TMPFS/repo" >/dev/null || true
	rm -rf "$TMPFS/repo"
	touch_tmpfs
	ferry_backup ferry_backup_tmpfs "$r" "$TMPFS/repo" >/dev/null || true
	rm -rf "$TMPFS/repo"

	local repo="$SCRATCH/ferry-repo" target="$SCRATCH/ferry-restore.img" snap
	if ! snap=$(ferry_backup ferry_backup_disk "$r" "$repo"); then
		T_WALL=null T_USER=null T_SYS=null T_RSS=null
		record ferry_restore "$r" failed null null null "no snapshot: same-disk backup failed"
		rm -rf "$repo"
		return
	fi
	rm -f "$target"
	drop_caches
	timed ferry_restore "$r" "$OUT" "$SCRATCH" \
		"$FERRY" restore --repo "$repo" "$snap" "$target"
	if [ "$T_RC" = 0 ]; then
		local extra=null
		[ "$r" != 1 ] || extra="{\"verified\": $(verify_restore ferry_restore "$r" "$target")}"
		record ferry_restore "$r" ok "$(mbps_of "$SIZE_BYTES" "$T_WALL")" null "$extra"
	else
		record ferry_restore "$r" failed null null null "rc=$T_RC $(errtail ferry_restore "$r")"
	fi
	rm -rf "$repo" "$target"
}

run_restic() {
	local r=$1 repo="$SCRATCH/restic-repo" target="$SCRATCH/restic-restore"
	export RESTIC_PASSWORD=$PASSWORD RESTIC_CACHE_DIR="$SCRATCH/restic-cache"
	rm -rf "$repo" "$target" "$RESTIC_CACHE_DIR"
	if ! restic init --repo "$repo" >"$LOGS/restic.$r.init.out" 2>"$LOGS/restic.$r.init.err"; then
		T_WALL=null T_USER=null T_SYS=null T_RSS=null
		record restic_backup "$r" failed null null null "init: $(tail -n 2 "$LOGS/restic.$r.init.err" | tr '\n' ' ')"
		return
	fi
	drop_caches
	timed restic_backup "$r" "$OUT" "$repo" restic --repo "$repo" backup "$IMG"
	if [ "$T_RC" != 0 ]; then
		record restic_backup "$r" failed null null null "rc=$T_RC $(errtail restic_backup "$r")"
		rm -rf "$repo" "$RESTIC_CACHE_DIR"
		return
	fi
	record restic_backup "$r" ok "$(mbps_of "$SIZE_BYTES" "$T_WALL")" "$(stored_of "$repo")"
	mkdir -p "$target"
	drop_caches
	timed restic_restore "$r" "$OUT" "$target" restic --repo "$repo" restore latest --target "$target"
	if [ "$T_RC" = 0 ]; then
		local extra=null
		[ "$r" != 1 ] || extra="{\"verified\": $(verify_restore restic_restore "$r" "$target")}"
		record restic_restore "$r" ok "$(mbps_of "$SIZE_BYTES" "$T_WALL")" null "$extra"
	else
		record restic_restore "$r" failed null null null "rc=$T_RC $(errtail restic_restore "$r")"
	fi
	rm -rf "$repo" "$target" "$RESTIC_CACHE_DIR"
}

run_borg() {
	local r=$1 repo="$SCRATCH/borg-repo" target="$SCRATCH/borg-restore"
	export BORG_PASSPHRASE=$PASSWORD BORG_BASE_DIR="$SCRATCH/borg-base"
	export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
	rm -rf "$repo" "$target" "$BORG_BASE_DIR"
	if ! borg init -e repokey "$repo" >"$LOGS/borg.$r.init.out" 2>"$LOGS/borg.$r.init.err"; then
		T_WALL=null T_USER=null T_SYS=null T_RSS=null
		record borg_backup "$r" failed null null null "init: $(tail -n 2 "$LOGS/borg.$r.init.err" | tr '\n' ' ')"
		return
	fi
	drop_caches
	timed borg_backup "$r" "$OUT" "$repo" borg create --compression lz4 "$repo::a" "$IMG"
	if [ "$T_RC" != 0 ]; then
		record borg_backup "$r" failed null null null "rc=$T_RC $(errtail borg_backup "$r")"
		rm -rf "$repo" "$BORG_BASE_DIR"
		return
	fi
	record borg_backup "$r" ok "$(mbps_of "$SIZE_BYTES" "$T_WALL")" "$(stored_of "$repo")"
	mkdir -p "$target"
	drop_caches
	timed borg_restore "$r" "$target" "$target" borg extract "$repo::a"
	if [ "$T_RC" = 0 ]; then
		local extra=null
		[ "$r" != 1 ] || extra="{\"verified\": $(verify_restore borg_restore "$r" "$target")}"
		record borg_restore "$r" ok "$(mbps_of "$SIZE_BYTES" "$T_WALL")" null "$extra"
	else
		record borg_restore "$r" failed null null null "rc=$T_RC $(errtail borg_restore "$r")"
	fi
	rm -rf "$repo" "$target" "$BORG_BASE_DIR"
}

# Memory: the same few MiB of data in a 1 GiB and a 64 GiB sparse image must back
# up in the same resident memory.
SPARSE_PIECE="$SCRATCH/sparse-piece.bin"
make_sparse() { # PATH SIZE_BYTES
	local f=$1 size=$2 mib off
	rm -f "$f"
	truncate -s "$size" "$f"
	mib=$((size >> 20))
	for off in 0 $((mib / 3)) $((2 * mib / 3)) $((mib - 4)); do
		dd if="$SPARSE_PIECE" of="$f" bs=1M seek="$off" conv=notrunc,fsync status=none
	done
}

run_sparse() {
	local r=$1 row
	if [ -n "$FERRY_MISSING" ]; then
		if [ "$r" = 1 ]; then
			for row in ferry_sparse_1g ferry_sparse_64g; do record_missing "$row" "$FERRY_MISSING"; done
		fi
		return
	fi
	local gib f
	for gib in 1 64; do
		row=ferry_sparse_${gib}g
		f="$SCRATCH/sparse-${gib}g.img"
		[ -f "$f" ] || make_sparse "$f" $((gib << 30))
		ferry_backup "$row" "$r" "$TMPFS/repo-sparse" "$f" $((gib << 30)) >/dev/null || true
		rm -rf "$TMPFS/repo-sparse"
	done
}

# ---------------------------------------------------------------- incremental
# A reflink XFS in a sparse file under OUT/scratch (same disk), loop-mounted. In it:
# vol.img, a copy of the image (the volume); base.img, a reflink clone of it taken
# before the change (what the full backup reads); the change, written into vol.img;
# new.img, a reflink clone taken after it (what every incremental reads). The same
# for a 100 GiB sparse volume: big-a.img (full), big-b.img (no change), big-c.img
# (a few blocks changed).
INCR_BLOCK=$((4 << 20))        # ferry's default block size (ferry init --chunk-size)
INCR_WRITE=$((64 << 10))       # bytes written into each changed block
BIG_BYTES=$((100 << 30))       # the no-change and diff rows' sparse volume
BIG_CHANGED=4                  # blocks changed in it for the diff row
INCR_MISSING=""                # why the incremental rows cannot run, if they cannot
LOOP_DEV=""
LOOP_DIO=""

# write_changes FILE N SEED RANGES BLOCKS: into each of N distinct seeded blocks
# (INCR_BLOCK bytes) of FILE, write INCR_WRITE seeded pseudo-random bytes at a seeded
# 4 KiB-aligned offset that keeps them inside the block; fsync. RANGES gets the
# written 'OFFSET LENGTH' lines (a --changed-ranges file), BLOCKS the block numbers.
write_changes() {
	/usr/bin/python3 - "$@" "$INCR_BLOCK" "$INCR_WRITE" <<'PY'
import os, random, sys
path, n, seed, ranges, blocks, bs, wlen = sys.argv[1:8]
n, seed, bs, wlen = int(n), int(seed), int(bs), int(wlen)
size = os.stat(path).st_size
rng = random.Random(seed)
chosen = sorted(rng.sample(range((size + bs - 1) // bs), n))
out = []
with open(path, "r+b") as f:
    for b in chosen:
        start = b * bs
        span = min(bs, size - start)
        ln = min(wlen, span)
        off = start + 4096 * rng.randrange((span - ln) // 4096 + 1)
        f.seek(off)
        f.write(rng.randbytes(ln))
        out.append((off, ln))
    f.flush()
    os.fsync(f.fileno())
with open(ranges, "w") as f:
    f.writelines(f"{o} {ln}\n" for o, ln in out)
with open(blocks, "w") as f:
    f.writelines(f"{b}\n" for b in chosen)
PY
}

# incr_step WHAT CMD...: one setup step, its output in logs/incr-setup.log; on
# failure INCR_MISSING says which step and why.
incr_step() {
	local what=$1
	shift
	echo "+ $*" >>"$LOGS/incr-setup.log"
	if ! "$@" >>"$LOGS/incr-setup.log" 2>&1; then
		INCR_MISSING="incremental setup: $what failed: $(tail -n 1 "$LOGS/incr-setup.log" | cut -c1-200)"
		return 1
	fi
}

incr_setup() {
	local nblocks nchg t0 copy_s
	say "incremental: reflink XFS of $(numfmt --to=iec "$XFS_BYTES") (sparse file $XFS_FILE)"
	mkdir -p "$XFS"
	incr_step "truncate" truncate -s "$XFS_BYTES" "$XFS_FILE" || return 1
	# Direct I/O on the loop device: the XFS's reads reach the disk without a second
	# copy in the page cache (one for the XFS file, one for the backing file).
	if LOOP_DEV=$(losetup -f --show --direct-io=on "$XFS_FILE" 2>>"$LOGS/incr-setup.log"); then
		LOOP_DIO=on
	else
		LOOP_DIO=off
		say "incremental: loop device without direct I/O (see logs/incr-setup.log)"
		LOOP_DEV=$(losetup -f --show "$XFS_FILE" 2>>"$LOGS/incr-setup.log") || {
			INCR_MISSING="incremental setup: losetup failed: $(tail -n 1 "$LOGS/incr-setup.log" | cut -c1-200)"
			return 1
		}
	fi
	incr_step "mkfs.xfs -m reflink=1" mkfs.xfs -q -m reflink=1 "$LOOP_DEV" || return 1
	incr_step "mount" mount "$LOOP_DEV" "$XFS" || return 1

	say "incremental: copying the image in, cloning, changing 1% of the blocks"
	t0=$(date +%s.%N)
	incr_step "copying the image" cp --sparse=never "$IMG" "$XFS/vol.img" || return 1
	incr_step "sync" sync -f "$XFS/vol.img" || return 1
	copy_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
	incr_step "reflink base.img" cp --reflink=always "$XFS/vol.img" "$XFS/base.img" || return 1
	nblocks=$(((SIZE_BYTES + INCR_BLOCK - 1) / INCR_BLOCK))
	nchg=$(((nblocks + 50) / 100))
	[ "$nchg" -ge 1 ] || nchg=1
	incr_step "writing the change" write_changes "$XFS/vol.img" "$nchg" "$SEED" \
		"$XFS/changed.ranges" "$XFS/changed.blocks" || return 1
	incr_step "reflink new.img" cp --reflink=always "$XFS/vol.img" "$XFS/new.img" || return 1

	say "incremental: 100 GiB sparse volume and its clones"
	incr_step "100 GiB sparse image" make_sparse "$XFS/big-vol.img" "$BIG_BYTES" || return 1
	incr_step "reflink big-a.img" cp --reflink=always "$XFS/big-vol.img" "$XFS/big-a.img" || return 1
	incr_step "reflink big-b.img" cp --reflink=always "$XFS/big-a.img" "$XFS/big-b.img" || return 1
	incr_step "writing the 100 GiB change" write_changes "$XFS/big-vol.img" "$BIG_CHANGED" \
		$((SEED + 1)) "$XFS/big.ranges" "$XFS/big.blocks" || return 1
	incr_step "reflink big-c.img" cp --reflink=always "$XFS/big-vol.img" "$XFS/big-c.img" || return 1
	cp "$XFS/changed.ranges" "$XFS/big.ranges" "$LOGS/"

	local inc
	inc=$(jq -n --argjson xfs_bytes "$XFS_BYTES" --arg loop_direct_io "$LOOP_DIO" \
		--argjson block_bytes "$INCR_BLOCK" --argjson blocks "$nblocks" \
		--argjson changed_blocks "$nchg" --argjson write_bytes "$INCR_WRITE" \
		--argjson big_bytes "$BIG_BYTES" --argjson big_changed_blocks "$BIG_CHANGED" \
		--argjson copy_s "$copy_s" \
		'{xfs_bytes: $xfs_bytes, loop_direct_io: ($loop_direct_io == "on"),
		  block_bytes: $block_bytes, blocks: $blocks, changed_blocks: $changed_blocks,
		  write_bytes: $write_bytes, changed_bytes: ($changed_blocks * $write_bytes),
		  big_bytes: $big_bytes, big_changed_blocks: $big_changed_blocks,
		  image_copy_s: $copy_s}')
	jq --argjson inc "$inc" '. + {incremental: $inc}' "$OUT/meta.json" >"$OUT/meta.json.tmp" &&
		mv "$OUT/meta.json.tmp" "$OUT/meta.json"

	say "incremental warm-up: buffered and O_DIRECT reads of new.img (untimed)"
	warm_up "$XFS/new.img" new
}

no_input() { # ROW RUN WHY: a row that could not start because what it needs failed
	T_WALL=null T_USER=null T_SYS=null T_RSS=null
	record "$1" "$2" failed null null null "$3"
}

# ferry_incr ROW RUN WANT FULL_REPO IMAGE BYTES ORIGINAL [BACKUP_ARGS...]
# A copy (reflinked) of FULL_REPO, which holds the full backup only; cold cache;
# timed incremental backup of IMAGE. The row fails unless ferry used the change
# source WANT without a warning (a fallback is a failure, not a slow pass). On run 1,
# when ORIGINAL is set, the new snapshot is restored and compared with it.
# stored_bytes = what the incremental added to the repository (du -sb growth).
ferry_incr() {
	local row=$1 r=$2 want=$3 full=$4 image=$5 bytes=$6 orig=$7
	shift 7
	local repo="$XFS/repo-incr" j snap src warn stored extra
	rm -rf "$repo"
	if ! cp -a --reflink=auto "$full" "$repo" 2>"$LOGS/$row.$r.copy.err"; then
		no_input "$row" "$r" "copying the repository: $(head -n 1 "$LOGS/$row.$r.copy.err")"
		rm -rf "$repo"
		return 1
	fi
	drop_caches
	timed "$row" "$r" "$OUT" "$repo" \
		"$FERRY" backup --repo "$repo" --volume bench --json "$@" "$image"
	j=$(json_of "$LOGS/$row.$r.out")
	snap=$(jq -r '.snapshot_id // empty' <<<"${j:-null}" 2>/dev/null || true)
	if [ "$T_RC" != 0 ] || [ -z "$snap" ]; then
		record "$row" "$r" failed null null "${j:-null}" "rc=$T_RC $(errtail "$row" "$r")"
		rm -rf "$repo"
		return 1
	fi
	src=$(jq -r '.change_source // empty' <<<"$j")
	warn=$(jq -r '.warning // empty' <<<"$j")
	stored=$(($(stored_of "$repo") - $(stored_of "$full")))
	if [ "$src" != "$want" ] || [ -n "$warn" ]; then
		record "$row" "$r" failed "$(mbps_of "$bytes" "$T_WALL")" "$stored" "$j" \
			"change source '$src', expected '$want'${warn:+; warning: $warn}"
		rm -rf "$repo"
		return 1
	fi
	extra=$j
	if [ "$r" = 1 ] && [ -n "$orig" ]; then
		local target="$SCRATCH/incr-restore.img" ok=false
		rm -f "$target"
		if "$FERRY" restore --repo "$repo" "$snap" "$target" \
			>"$LOGS/$row.$r.restore.out" 2>"$LOGS/$row.$r.restore.err"; then
			ok=$(verify_restore "$row" "$r" "$target" "$orig")
		else
			echo "run.sh: warning: $row run $r: restore failed: $(tail -n 1 "$LOGS/$row.$r.restore.err")" >&2
		fi
		rm -f "$target"
		extra=$(jq -c --argjson v "$ok" '. + {verified: $v}' <<<"$j")
	fi
	record "$row" "$r" ok "$(mbps_of "$bytes" "$T_WALL")" "$stored" "$extra"
	rm -rf "$repo"
	echo "$snap"
}

# fio's sequential O_DIRECT read of new.img, as the fio_read row: the time to just
# read the volume that the manifest scan reads.
run_read_only() {
	local r=$1
	drop_caches
	timed read_only "$r" "$OUT" "" fio --name=seqread --filename="$XFS/new.img" --readonly \
		--rw=read --bs=1M --iodepth=8 --ioengine=io_uring --direct=1 \
		--size="$SIZE_BYTES" --output-format=json
	local bw io
	bw=$(jq -r '.jobs[0].read.bw_bytes // empty' "$LOGS/read_only.$r.out" 2>/dev/null || true)
	io=$(jq -r '.jobs[0].read.io_bytes // empty' "$LOGS/read_only.$r.out" 2>/dev/null || true)
	if [ "$T_RC" = 0 ] && [ -n "$bw" ] && [ -n "$io" ]; then
		record read_only "$r" ok "$(awk -v b="$bw" 'BEGIN {printf "%.1f", b / 1e6}')" null \
			"{\"fio_bw_bytes\": $bw, \"bytes_read\": $io}"
	else
		record read_only "$r" failed null null null "$(errtail read_only "$r")"
	fi
}

# restic's incremental of the same change: back up P holding base.img's content
# (untimed), replace P by a reflink of new.img, time the second backup of P (a
# changed file: restic reads and chunks all of it). Repository and cache on the XFS.
run_restic_incr() {
	local r=$1 repo="$XFS/restic-repo" p="$XFS/restic-vol.img" j before
	export RESTIC_PASSWORD=$PASSWORD RESTIC_CACHE_DIR="$XFS/restic-cache"
	rm -rf "$repo" "$p" "$RESTIC_CACHE_DIR"
	if ! restic init --repo "$repo" >"$LOGS/restic_incr.$r.init.out" 2>"$LOGS/restic_incr.$r.init.err"; then
		no_input restic_incr "$r" "init: $(tail -n 2 "$LOGS/restic_incr.$r.init.err" | tr '\n' ' ')"
		return
	fi
	if ! cp --reflink=always "$XFS/base.img" "$p" 2>"$LOGS/restic_incr.$r.base.err" ||
		! restic --repo "$repo" backup "$p" >"$LOGS/restic_incr.$r.base.out" 2>>"$LOGS/restic_incr.$r.base.err"; then
		no_input restic_incr "$r" "first backup: $(tail -n 2 "$LOGS/restic_incr.$r.base.err" | tr '\n' ' ')"
		rm -rf "$repo" "$p" "$RESTIC_CACHE_DIR"
		return
	fi
	before=$(stored_of "$repo")
	rm -f "$p"
	cp --reflink=always "$XFS/new.img" "$p"
	drop_caches
	timed restic_incr "$r" "$OUT" "$repo" restic --repo "$repo" backup --json "$p"
	j=$(json_of "$LOGS/restic_incr.$r.out")
	if [ "$T_RC" = 0 ] && [ "$(jq -r '.message_type // empty' <<<"${j:-null}")" = summary ]; then
		record restic_incr "$r" ok "$(mbps_of "$SIZE_BYTES" "$T_WALL")" \
			$(($(stored_of "$repo") - before)) \
			"$(jq -c '. + {bytes_read: .total_bytes_processed}' <<<"$j")"
	else
		record restic_incr "$r" failed null null "${j:-null}" "rc=$T_RC $(errtail restic_incr "$r")"
	fi
	rm -rf "$repo" "$p" "$RESTIC_CACHE_DIR"
}

INCR_ROWS="ferry_incr_full ferry_incr_extent ferry_incr_ranges ferry_incr_scan read_only"
BIG_ROWS="ferry_incr_100g_nochange ferry_diff_100g"

run_incr() {
	local r=$1 row full="$XFS/repo-full" snap
	if [ -n "$INCR_MISSING" ]; then
		if [ "$r" = 1 ]; then
			for row in $INCR_ROWS restic_incr; do record_missing "$row" "$INCR_MISSING"; done
		fi
		return
	fi
	if snap=$(ferry_backup ferry_incr_full "$r" "$full" "$XFS/base.img" "$SIZE_BYTES"); then
		ferry_incr ferry_incr_extent "$r" extent-diff "$full" "$XFS/new.img" "$SIZE_BYTES" \
			"$XFS/new.img" --base-image "$XFS/base.img" >/dev/null || true
		ferry_incr ferry_incr_ranges "$r" range-list "$full" "$XFS/new.img" "$SIZE_BYTES" \
			"$XFS/new.img" --changed-ranges "$XFS/changed.ranges" --parent "$snap" >/dev/null || true
		# base.img sits unmodified beside new.img: without --manifest-scan ferry
		# would choose the extent diff against it by itself.
		ferry_incr ferry_incr_scan "$r" manifest-scan "$full" "$XFS/new.img" "$SIZE_BYTES" \
			"$XFS/new.img" --manifest-scan >/dev/null || true
	else
		for row in ferry_incr_extent ferry_incr_ranges ferry_incr_scan; do
			no_input "$row" "$r" "no full backup to start from (ferry_incr_full failed)"
		done
	fi
	rm -rf "$full"
	run_read_only "$r"
	if [ "$SKIP_PEERS" = 1 ]; then
		[ "$r" != 1 ] || record_missing restic_incr "skipped: --skip-peers"
	else
		run_restic_incr "$r"
	fi
}

# The 100 GiB sparse volume: full backup of big-a.img (untimed), timed no-change
# incremental of big-b.img against it; then (untimed) an incremental of big-c.img
# against the full, and a timed `ferry diff` of the two, whose blocks must be the
# ones changed.
run_incr_100g() {
	local r=$1 row repo="$XFS/repo-100g" full c j src warn
	if [ -n "$INCR_MISSING" ]; then
		if [ "$r" = 1 ]; then
			for row in $BIG_ROWS; do record_missing "$row" "$INCR_MISSING"; done
		fi
		return
	fi
	rm -rf "$repo"
	if ! "$FERRY" init --repo "$repo" >"$LOGS/big.$r.init.out" 2>"$LOGS/big.$r.init.err" ||
		! "$FERRY" backup --repo "$repo" --volume bench --json "$XFS/big-a.img" \
			>"$LOGS/big.$r.full.out" 2>"$LOGS/big.$r.full.err" ||
		! full=$(jq -r '.snapshot_id // empty' <<<"$(json_of "$LOGS/big.$r.full.out")") ||
		[ -z "$full" ]; then
		for row in $BIG_ROWS; do
			no_input "$row" "$r" "full backup of the 100 GiB volume failed: $(tail -n 1 "$LOGS/big.$r.full.err" "$LOGS/big.$r.init.err" 2>/dev/null | tr '\n' ' ' | cut -c1-200)"
		done
		rm -rf "$repo"
		return
	fi
	ferry_incr ferry_incr_100g_nochange "$r" extent-diff "$repo" "$XFS/big-b.img" "$BIG_BYTES" "" \
		--base-image "$XFS/big-a.img" >/dev/null || true

	"$FERRY" backup --repo "$repo" --volume bench --json --parent "$full" \
		--base-image "$XFS/big-a.img" "$XFS/big-c.img" >"$LOGS/big.$r.c.out" 2>"$LOGS/big.$r.c.err" || true
	j=$(json_of "$LOGS/big.$r.c.out")
	c=$(jq -r '.snapshot_id // empty' <<<"${j:-null}" 2>/dev/null || true)
	src=$(jq -r '.change_source // empty' <<<"${j:-null}" 2>/dev/null || true)
	warn=$(jq -r '.warning // empty' <<<"${j:-null}" 2>/dev/null || true)
	if [ -z "$c" ] || [ "$src" != extent-diff ] || [ -n "$warn" ]; then
		no_input ferry_diff_100g "$r" "second snapshot: change source '$src'${warn:+; warning: $warn} $(tail -n 1 "$LOGS/big.$r.c.err" | cut -c1-200)"
		rm -rf "$repo"
		return
	fi
	drop_caches
	timed ferry_diff_100g "$r" "$OUT" "" "$FERRY" diff --repo "$repo" "$full" "$c"
	local got want nr nb
	got=$(awk -v bs="$INCR_BLOCK" 'NF == 2 { for (b = int($1 / bs); b <= int(($1 + $2 - 1) / bs); b++) print b }' \
		"$LOGS/ferry_diff_100g.$r.out" | tr '\n' ' ')
	want=$(tr '\n' ' ' <"$XFS/big.blocks")
	nr=$(grep -c . "$LOGS/ferry_diff_100g.$r.out" || true)
	nb=$(awk 'NF == 2 { s += $2 } END { printf "%.0f", s }' "$LOGS/ferry_diff_100g.$r.out")
	local extra
	extra=$(jq -c --argjson ranges "$nr" --argjson bytes "$nb" --arg full "$full" --arg second "$c" \
		'{ranges: $ranges, bytes: $bytes, full: $full, second: $second,
		  second_bytes_read: .bytes_read, second_change_source: .change_source}' <<<"$j")
	if [ "$T_RC" != 0 ]; then
		record ferry_diff_100g "$r" failed null null "$extra" "rc=$T_RC $(errtail ferry_diff_100g "$r")"
	elif [ "$got" != "$want" ]; then
		record ferry_diff_100g "$r" failed null null "$extra" "diff names blocks [${got% }], expected [${want% }]"
	else
		record ferry_diff_100g "$r" ok null null "$extra"
	fi
	rm -rf "$repo"
}

# ---------------------------------------------------------------- S3 (Ceph RGW)
# One single-node Ceph cluster with a radosgw on loopback (tests/s3/rgw.sh) for the
# whole set, under OUT/scratch/rgw, stopped at exit; plain HTTP. Every timed run
# writes under a fresh key prefix, deleted after the run. The same machine's two
# cores run the gateway and the tool: what the gateway needs is part of the ceiling.
S3_ROWS="s3_ceiling ferry_s3 restic_s3 ferry_s3_fanout ferry_s3_fanout_lock"
S3_CONNS=8                     # requests in flight: ferry's default (connections=8), and curl's
S3_LOCK_SECS=60                # retention of the locked copy (lock-seconds=)
S3_MISSING=""                  # why the S3 rows cannot run, if they cannot
S3_ID="bench-$(date +%Y%m%dT%H%M%S)-$$"  # key prefix of this harness run
S3_SRC="$SCRATCH/s3-src-repo"  # a ferry file repository of the image: the ceiling uploads its chunks
S3_OBJS="$SCRATCH/s3-objects"  # "PATH SHA256" of each of its chunk objects
S3_OBJ_COUNT=0
S3_OBJ_BYTES=0
S3_LOCK_PENDING=""             # the last locked copy: "PREFIX EPOCH" (deletable from EPOCH on)
S3_SNAP=""
S3_JSON=""

# awsc PROFILE ARGS...: awscli as user PROFILE (primary, replica) against the gateway,
# with rgw.sh's config and credentials files (never ~/.aws, never the environment's keys).
awsc() {
	local prof=$1
	shift
	env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN -u AWS_PROFILE \
		AWS_CONFIG_FILE="$RGW_AWS_CONFIG" AWS_SHARED_CREDENTIALS_FILE="$RGW_CREDS" \
		AWS_EC2_METADATA_DISABLED=true AWS_PAGER="" \
		/usr/bin/aws --profile "$prof" --endpoint-url "$RGW_HTTP" "$@"
}

# s3_url BUCKET PREFIX [PARAM=VALUE...]: a ferry repository URL on the gateway.
s3_url() {
	local b=$1 p=$2 q x
	shift 2
	q="endpoint=$RGW_HTTP&connections=$S3_CONNS"
	for x in "$@"; do q="$q&$x"; done
	echo "s3://$b/$p?$q"
}

# s3_size BUCKET PREFIX PROFILE: bytes of the objects listed under PREFIX/.
s3_size() {
	local n
	n=$(awsc "$3" s3api list-objects-v2 --bucket "$1" --prefix "$2/" --output json 2>>"$LOGS/s3-admin.log" |
		jq '[(.Contents // [])[].Size] | add // 0' 2>/dev/null) || true
	[[ "$n" =~ ^[0-9]+$ ]] && echo "$n" || echo null
}

# s3_wipe BUCKET PREFIX PROFILE: delete every object version and delete marker under
# PREFIX/, 1000 per DeleteObjects request. Versions still under retention stay (warned).
s3_wipe() {
	local b=$1 p=$2 prof=$3 f="$SCRATCH/s3-wipe" n i e left=0
	echo "s3_wipe s3://$b/$p/" >>"$LOGS/s3-admin.log"
	if ! awsc "$prof" s3api list-object-versions --bucket "$b" --prefix "$p/" --output json \
		>"$f.list" 2>>"$LOGS/s3-admin.log"; then
		echo "run.sh: warning: listing s3://$b/$p/ to delete it failed (logs/s3-admin.log)" >&2
		return 0
	fi
	n=$(jq '[(.Versions // [])[], (.DeleteMarkers // [])[]] | length' "$f.list" 2>/dev/null) || n=0
	for ((i = 0; i < n; i += 1000)); do
		jq -c --argjson i "$i" '{Quiet: true, Objects: ([(.Versions // [])[], (.DeleteMarkers // [])[]][$i:$i + 1000]
			| map(if (.VersionId // "null") == "null" then {Key} else {Key, VersionId} end))}' \
			"$f.list" >"$f.del"
		if awsc "$prof" s3api delete-objects --bucket "$b" --delete "file://$f.del" --output json \
			>"$f.out" 2>>"$LOGS/s3-admin.log"; then
			e=$(jq -s 'map(.Errors // [] | length) | add // 0' "$f.out" 2>/dev/null) || e=0
		else
			e=$((n - i < 1000 ? n - i : 1000))
		fi
		left=$((left + e))
	done
	rm -f "$f.list" "$f.del" "$f.out"
	echo "  $n versions, $left not deleted" >>"$LOGS/s3-admin.log"
	[ "$left" = 0 ] || echo "run.sh: warning: s3://$b/$p/: $left of $n object versions not deleted" >&2
}

# Objects larger than RGW's head (4 MiB: restic's packs) leave tails for RGW's
# garbage collector, which by default waits hours: collect them now.
s3_gc() {
	radosgw-admin -c "$RGW_DIR/ceph.conf" gc process --include-all >>"$LOGS/s3-admin.log" 2>&1 ||
		echo "run.sh: warning: radosgw-admin gc process failed (logs/s3-admin.log)" >&2
}

# The last round's locked copy, once its retention has passed: called just before the
# next locked copy is written, a round later (the last one goes with the cluster).
s3_lock_wipe() {
	[ -n "$S3_LOCK_PENDING" ] || return 0
	local p until now
	read -r p until <<<"$S3_LOCK_PENDING"
	now=$(date +%s)
	if [ "$now" -lt "$until" ]; then
		say "s3: waiting $((until - now)) s for the last locked copy's retention to pass (untimed)"
		sleep $((until - now))
	fi
	s3_wipe ferry-lock "$p" primary
	S3_LOCK_PENDING=""
}

# CPU seconds (user + system) the Ceph daemons (mon, osd, radosgw) have used so far.
rgw_cpu() {
	local n pid ticks=0 t
	for n in mon.a osd.0 client.rgw; do
		pid=$(tr -dc 0-9 2>/dev/null <"$RGW_DIR/run/$n.pid") || true
		if [ -z "$pid" ] || ! t=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}'); then
			echo null
			return
		fi
		ticks=$((ticks + t))
	done
	awk -v t="$ticks" -v h="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t / h}'
}
cpu_delta() { # BEFORE AFTER
	if [ "$1" = null ] || [ "$2" = null ]; then echo null; else awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b - a}'; fi
}

s3_setup() {
	local rc=0 j
	say "s3: starting a Ceph RGW under $RGW_DIR (tests/s3/rgw.sh, ~25 s)"
	RGW_OSD_BYTES=$OSD_BYTES bash "$RGW_SH" start "$RGW_DIR" >>"$LOGS/rgw.log" 2>&1 || rc=$?
	if [ "$rc" = 77 ]; then
		S3_MISSING="Ceph RGW is not installed (scripts/install-deps.sh)"
		return 1
	elif [ "$rc" != 0 ]; then
		S3_MISSING="tests/s3/rgw.sh start failed (rc=$rc): $(grep -v '^----' "$LOGS/rgw.log" | tail -n 1 | cut -c1-200)"
		return 1
	fi
	# shellcheck disable=SC1091 # written by rgw.sh start
	. "$RGW_DIR/env"
	# ferry and restic take the primary user's keys from the environment.
	export AWS_ACCESS_KEY_ID=$RGW_PRIMARY_AK AWS_SECRET_ACCESS_KEY=$RGW_PRIMARY_SK
	unset AWS_SESSION_TOKEN AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SHARED_CREDENTIALS_FILE AWS_CONFIG_FILE

	say "s3: the ceiling's objects: a ferry file repository of the image (untimed)"
	rm -rf "$S3_SRC"
	if ! "$FERRY" init --repo "$S3_SRC" >"$LOGS/s3-src.init.out" 2>"$LOGS/s3-src.init.err" ||
		! "$FERRY" backup --repo "$S3_SRC" --volume bench --json "$IMG" >"$LOGS/s3-src.out" 2>"$LOGS/s3-src.err"; then
		S3_MISSING="the ceiling's file repository: ferry failed: $(tail -n 1 "$LOGS/s3-src.init.err" "$LOGS/s3-src.err" 2>/dev/null | tr '\n' ' ' | cut -c1-200)"
		return 1
	fi
	(cd "$S3_SRC" && find chunks -type f -print0 | sort -z | xargs -0 sha256sum) |
		awk '{print $2, $1}' >"$S3_OBJS"
	S3_OBJ_COUNT=$(wc -l <"$S3_OBJS")
	S3_OBJ_BYTES=$(cd "$S3_SRC" && find chunks -type f -printf '%s\n' | awk '{s += $1} END {printf "%.0f", s}')
	j=$(json_of "$LOGS/s3-src.out")
	if [ "$S3_OBJ_COUNT" != "$(jq -r '.chunks_new' <<<"${j:-null}")" ] ||
		[ "$S3_OBJ_BYTES" != "$(jq -r '.bytes_stored' <<<"${j:-null}")" ]; then
		S3_MISSING="the ceiling's file repository holds $S3_OBJ_COUNT chunk objects of $S3_OBJ_BYTES bytes, ferry says $(jq -c '{chunks_new, bytes_stored}' <<<"${j:-null}")"
		return 1
	fi
	local s3
	s3=$(jq -n --arg endpoint "$RGW_HTTP" --argjson connections "$S3_CONNS" \
		--argjson objects "$S3_OBJ_COUNT" --argjson object_bytes "$S3_OBJ_BYTES" \
		--argjson osd_bytes "$OSD_BYTES" --argjson lock_seconds "$S3_LOCK_SECS" \
		--arg prefix "$S3_ID" --arg radosgw "$(version_of radosgw --version)" \
		--arg curl "$(version_of curl --version)" --arg aws "$(version_of /usr/bin/aws --version)" \
		'{endpoint: $endpoint, tls: false, connections: $connections, ceiling_objects: $objects,
		  ceiling_object_bytes: $object_bytes, osd_bytes: $osd_bytes, lock_seconds: $lock_seconds,
		  prefix: $prefix, versions: {radosgw: $radosgw, curl: $curl, aws: $aws}}')
	jq --argjson s3 "$s3" '. + {s3: $s3}' "$OUT/meta.json" >"$OUT/meta.json.tmp" &&
		mv "$OUT/meta.json.tmp" "$OUT/meta.json"

	# The first writes to a fresh cluster are slower (pools, bucket indexes, the
	# OSD's allocator): one untimed upload of the ceiling's objects first.
	say "s3 warm-up: one untimed upload of the ceiling's objects"
	s3_ceiling_config "$S3_ID/warmup" "$SCRATCH/s3-warmup.curl"
	curl --config "$SCRATCH/s3-warmup.curl" >"$LOGS/s3-warmup.out" 2>"$LOGS/s3-warmup.err" ||
		echo "run.sh: warning: the S3 warm-up upload failed: $(tail -n 1 "$LOGS/s3-warmup.err")" >&2
	rm -f "$SCRATCH/s3-warmup.curl"
	s3_wipe ferry-primary "$S3_ID/warmup" primary
}

# curl's config for the ceiling: one PUT per chunk object of S3_SRC, at most S3_CONNS
# at a time over reused connections, signed with SigV4 over the payload's SHA-256 (as
# ferry signs over plain HTTP; RGW checks it), hashed beforehand. It holds the access
# key pair: mode 600, in the scratch directory, deleted after the run.
s3_ceiling_config() { # PREFIX FILE
	local p=$1 cfg=$2 path h first=1
	(
		umask 077
		{
		printf 'parallel\nparallel-max = %d\nno-progress-meter\nsilent\nshow-error\n' "$S3_CONNS"
		while read -r path h; do
			[ "$first" = 1 ] || echo next
			first=0
			printf 'aws-sigv4 = "aws:amz:%s:s3"\nuser = "%s:%s"\n' "$RGW_REGION" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY"
			printf 'header = "x-amz-content-sha256: %s"\nheader = "Content-Type: application/octet-stream"\n' "$h"
			printf 'upload-file = "%s"\nurl = "%s/ferry-primary/%s/%s"\n' "$S3_SRC/$path" "$RGW_HTTP" "$p" "$path"
			printf 'output = /dev/null\nwrite-out = "%%{http_code} %%{size_upload}\\n"\n'
		done <"$S3_OBJS"
		} >"$cfg"
	)
}

# The ceiling: curl uploads the chunk objects ferry stores for this image (the same
# keys, sizes and count, from the page cache). MB/s = image size / wall, what the
# upload alone would give a backup of the image; upload_mbps = bytes sent / wall.
run_s3_ceiling() {
	local r=$1 cfg="$SCRATCH/s3-ceiling.curl" p a b n up extra
	p="$S3_ID/r$r-ceiling"
	s3_ceiling_config "$p" "$cfg"
	(cd "$S3_SRC" && cut -d' ' -f1 "$S3_OBJS" | xargs cat >/dev/null)
	a=$(rgw_cpu)
	timed s3_ceiling "$r" "$OUT" "" curl --config "$cfg"
	b=$(rgw_cpu)
	rm -f "$cfg"
	n=$(grep -c '^200 ' "$LOGS/s3_ceiling.$r.out" || true)
	up=$(awk '$1 == 200 {s += $2} END {printf "%.0f", s}' "$LOGS/s3_ceiling.$r.out")
	extra=$(jq -nc --argjson objects "$n" --argjson bytes_up "$up" --argjson rgw "$(cpu_delta "$a" "$b")" \
		--argjson upload_mbps "$(mbps_of "$up" "$T_WALL")" \
		'{objects: $objects, bytes_up: $bytes_up, upload_mbps: $upload_mbps, rgw_cpu_s: $rgw}')
	if [ "$T_RC" = 0 ] && [ "$n" = "$S3_OBJ_COUNT" ] && [ "$up" = "$S3_OBJ_BYTES" ]; then
		record s3_ceiling "$r" ok "$(mbps_of "$SIZE_BYTES" "$T_WALL")" "$(s3_size ferry-primary "$p" primary)" "$extra"
	else
		record s3_ceiling "$r" failed null null "$extra" \
			"rc=$T_RC; $n of $S3_OBJ_COUNT PUTs answered 200 ($up of $S3_OBJ_BYTES bytes) $(errtail s3_ceiling "$r")"
	fi
	s3_wipe ferry-primary "$p" primary
}

# s3_ferry_backup ROW RUN URL [COPY_URL...]: init URL and its copies (untimed),
# cold cache, timed backup to URL and --copy-to each copy. On success sets S3_SNAP,
# and S3_JSON (ferry's JSON + bytes_up of all targets + the daemons' CPU); otherwise
# records the failure and returns 1. Every target must report ok.
s3_ferry_backup() {
	local row=$1 r=$2 url=$3
	shift 3
	local args=() c a b j snap want=$(($# + 1)) good
	S3_SNAP="" S3_JSON=""
	if ! "$FERRY" init --repo "$url" >"$LOGS/$row.$r.init.out" 2>"$LOGS/$row.$r.init.err"; then
		no_input "$row" "$r" "init: $(tail -n 2 "$LOGS/$row.$r.init.err" | tr '\n' ' ')"
		return 1
	fi
	for c in "$@"; do
		if ! "$FERRY" init --repo "$c" --copy-of "$url" >>"$LOGS/$row.$r.init.out" 2>>"$LOGS/$row.$r.init.err"; then
			no_input "$row" "$r" "init --copy-of: $(tail -n 2 "$LOGS/$row.$r.init.err" | tr '\n' ' ')"
			return 1
		fi
		args+=(--copy-to "$c")
	done
	drop_caches
	a=$(rgw_cpu)
	timed "$row" "$r" "$OUT" "" "$FERRY" backup --repo "$url" "${args[@]}" --volume bench --json "$IMG"
	b=$(rgw_cpu)
	j=$(json_of "$LOGS/$row.$r.out")
	snap=$(jq -r '.snapshot_id // empty' <<<"${j:-null}" 2>/dev/null || true)
	if [ "$T_RC" != 0 ] || [ -z "$snap" ]; then
		record "$row" "$r" failed null null "${j:-null}" "rc=$T_RC $(errtail "$row" "$r")"
		return 1
	fi
	good=$(jq '. as $j | [.targets[] | select(.ok and .chunks_new == $j.chunks_new)] | length' <<<"$j")
	if [ "$good" != "$want" ]; then
		record "$row" "$r" failed null null "$j" \
			"$good of $want targets ok with every chunk: $(jq -c '[.targets[] | {role, ok, chunks_new, error}]' <<<"$j" | cut -c1-300)"
		return 1
	fi
	S3_SNAP=$snap
	S3_JSON=$(jq -c --argjson rgw "$(cpu_delta "$a" "$b")" \
		'. + {rgw_cpu_s: $rgw, bytes_up: ([.targets[].bytes_up] | add)}' <<<"$j")
}

# s3_verify ROW RUN URL SNAPSHOT: restore the snapshot (untimed), compare with the image.
s3_verify() {
	local row=$1 r=$2 url=$3 snap=$4 target="$SCRATCH/s3-restore.img" ok=false
	rm -f "$target"
	if "$FERRY" restore --repo "$url" "$snap" "$target" \
		>"$LOGS/$row.$r.restore.out" 2>"$LOGS/$row.$r.restore.err"; then
		ok=$(verify_restore "$row" "$r" "$target")
	else
		echo "run.sh: warning: $row run $r: restore failed: $(tail -n 1 "$LOGS/$row.$r.restore.err")" >&2
	fi
	rm -f "$target"
	echo "$ok"
}

# ferry's backup to one fresh repository on the gateway; run 1 is restored and compared.
run_s3_ferry() {
	local r=$1 p url extra ok
	p="$S3_ID/r$r-ferry"
	url=$(s3_url ferry-primary "$p")
	if s3_ferry_backup ferry_s3 "$r" "$url"; then
		extra=$S3_JSON
		if [ "$r" = 1 ]; then
			ok=$(s3_verify ferry_s3 "$r" "$url" "$S3_SNAP")
			extra=$(jq -c --argjson v "$ok" '. + {verified: $v}' <<<"$extra")
		fi
		record ferry_s3 "$r" ok "$(mbps_of "$SIZE_BYTES" "$T_WALL")" "$(s3_size ferry-primary "$p" primary)" "$extra"
	fi
	s3_wipe ferry-primary "$p" primary
}

# restic 0.14's backup of the image to a fresh repository on the gateway.
run_s3_restic() {
	local r=$1 p repo a b
	p="$S3_ID/r$r-restic"
	repo="s3:$RGW_HTTP/ferry-primary/$p"
	export RESTIC_PASSWORD=$PASSWORD RESTIC_CACHE_DIR="$SCRATCH/restic-cache"
	rm -rf "$RESTIC_CACHE_DIR"
	if ! restic --repo "$repo" init >"$LOGS/restic_s3.$r.init.out" 2>"$LOGS/restic_s3.$r.init.err"; then
		no_input restic_s3 "$r" "init: $(tail -n 2 "$LOGS/restic_s3.$r.init.err" | tr '\n' ' ')"
	else
		drop_caches
		a=$(rgw_cpu)
		timed restic_s3 "$r" "$OUT" "" restic --repo "$repo" backup "$IMG"
		b=$(rgw_cpu)
		if [ "$T_RC" = 0 ]; then
			record restic_s3 "$r" ok "$(mbps_of "$SIZE_BYTES" "$T_WALL")" "$(s3_size ferry-primary "$p" primary)" \
				"{\"rgw_cpu_s\": $(cpu_delta "$a" "$b")}"
		else
			record restic_s3 "$r" failed null null null "rc=$T_RC $(errtail restic_s3 "$r")"
		fi
	fi
	rm -rf "$RESTIC_CACHE_DIR"
	s3_wipe ferry-primary "$p" primary
	s3_gc
}

# run_s3_fanout ROW RUN LOCKED: one backup to three targets: the primary (ferry-primary),
# a copy in ferry-replica with the replica user's credentials (from rgw.sh's shared
# credentials file), and a third: another prefix of ferry-primary, or (LOCKED=1) an
# immutable copy in ferry-lock (COMPLIANCE, lock-seconds=S3_LOCK_SECS). Run 1 of the
# unlocked row restores from the replica copy and compares.
run_s3_fanout() {
	local row=$1 r=$2 locked=$3 p u1 u2 u3 extra ok stored s
	p="$S3_ID/r$r-$row"
	u1=$(s3_url ferry-primary "$p")
	u2=$(s3_url ferry-replica "$p" "credentials=$RGW_CREDS" "profile=replica")
	if [ "$locked" = 1 ]; then
		s3_lock_wipe
		u3=$(s3_url ferry-lock "$p" "lock=compliance" "lock-seconds=$S3_LOCK_SECS")
	else
		u3=$(s3_url ferry-primary "$p-copy")
	fi
	if s3_ferry_backup "$row" "$r" "$u1" "$u2" "$u3"; then
		extra=$S3_JSON
		if [ "$r" = 1 ] && [ "$locked" = 0 ]; then
			ok=$(s3_verify "$row" "$r" "$u2" "$S3_SNAP")
			extra=$(jq -c --argjson v "$ok" '. + {verified: $v}' <<<"$extra")
		fi
		stored=0
		for s in "$(s3_size ferry-primary "$p" primary)" "$(s3_size ferry-replica "$p" replica)" \
			"$(if [ "$locked" = 1 ]; then s3_size ferry-lock "$p" primary; else s3_size ferry-primary "$p-copy" primary; fi)"; do
			if [ "$s" = null ] || [ "$stored" = null ]; then stored=null; else stored=$((stored + s)); fi
		done
		record "$row" "$r" ok "$(mbps_of "$SIZE_BYTES" "$T_WALL")" "$stored" "$extra"
	fi
	s3_wipe ferry-primary "$p" primary
	s3_wipe ferry-replica "$p" replica
	if [ "$locked" = 1 ]; then
		S3_LOCK_PENDING="$p $(($(date +%s) + S3_LOCK_SECS + 2))"
	else
		s3_wipe ferry-primary "$p-copy" primary
	fi
}

# One round of the S3 rows, in this order.
run_s3() {
	local r=$1 row
	if [ -n "$S3_MISSING" ]; then
		if [ "$r" = 1 ]; then
			for row in $S3_ROWS; do record_missing "$row" "$S3_MISSING"; done
		fi
		return
	fi
	run_s3_ceiling "$r"
	run_s3_ferry "$r"
	if [ "$SKIP_PEERS" = 1 ]; then
		[ "$r" != 1 ] || record_missing restic_s3 "skipped: --skip-peers"
	else
		run_s3_restic "$r"
	fi
	run_s3_fanout ferry_s3_fanout "$r" 0
	run_s3_fanout ferry_s3_fanout_lock "$r" 1
}

# ---------------------------------------------------------------- the runs
# Configurations are interleaved round by round so that drift in the shared disk's
# speed hits every row alike.
if has ceiling || has ferry || has peers; then
	for r in $(seq 1 "$RUNS"); do
		if has ceiling; then
			say "round $r/$RUNS: ceiling (fio read, fio write, codec_bench)"
			run_fio_read "$r"
			run_fio_write "$r"
			run_codec "$r"
		fi
		if has ferry; then
			say "round $r/$RUNS: ferry"
			run_ferry "$r"
		fi
		if [ "$RUN_PEERS" = 1 ]; then
			say "round $r/$RUNS: restic"
			run_restic "$r"
			say "round $r/$RUNS: borg"
			run_borg "$r"
		fi
	done
fi

if [ -z "$FERRY_MISSING" ] && { has memory || [ "$INCR" = 1 ]; }; then
	"$(find_gen)" --size 4M --seed "$SEED" --out "$SPARSE_PIECE" 2>/dev/null
fi
if has memory; then
	for r in $(seq 1 "$RUNS"); do
		say "round $r/$RUNS: memory (sparse 1 GiB and 64 GiB images)"
		run_sparse "$r"
	done
fi

if [ "$INCR" = 1 ]; then
	INCR_MISSING=$FERRY_MISSING
	if [ -z "$INCR_MISSING" ] && ! incr_setup; then
		say "incremental: $INCR_MISSING"
	fi
	for r in $(seq 1 "$RUNS"); do
		say "round $r/$RUNS: incremental (full, extent diff, range list, manifest scan, read, restic)"
		run_incr "$r"
		say "round $r/$RUNS: incremental, 100 GiB sparse volume (no change, diff)"
		run_incr_100g "$r"
	done
	xfs_teardown
fi

if [ "$S3" = 1 ]; then
	S3_MISSING=$FERRY_MISSING
	if [ -z "$S3_MISSING" ] && ! s3_setup; then
		say "s3: $S3_MISSING"
	fi
	for r in $(seq 1 "$RUNS"); do
		say "round $r/$RUNS: s3 (RGW ceiling, ferry, restic, ferry to 3 targets, ferry to 3 with a locked copy)"
		run_s3 "$r"
	done
	say "s3: stopping the Ceph RGW"
	rgw_teardown
	rm -rf "$RGW_DIR" "$S3_SRC"
fi

if [ "$CSI" = 1 ]; then
	say "csi: the agent's cut and GetMetadataDelta latencies ($RUNS runs)"
	/usr/bin/python3 "$HERE/csi.py" --ferry "$FERRY" --src "$ROOT" --out "$OUT" --runs "$RUNS" ||
		say "csi: failed (see above)"
fi

say "report"
/usr/bin/python3 "$HERE/report.py" --meta "$OUT/meta.json" --raw "$RAW" --out "$OUT"
