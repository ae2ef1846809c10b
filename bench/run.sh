#!/usr/bin/env bash
# bench/run.sh — ferry throughput harness: the machine ceiling, ferry, restic and
# borg on the same generated image, in one run. See bench/README.md.
#
# usage: bench/run.sh [--size 4G] [--runs 3] [--out bench/out] [--ferry PATH]
#                     [--codec-bench PATH] [--seed N] [--skip-peers] [--quick]
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
  -h, --help           this text
Must run as root (drop_caches, tmpfs mount).
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

# ---------------------------------------------------------------- prerequisites
missing=()
need() { # need CMD HINT
	command -v "$1" >/dev/null 2>&1 || missing+=("$1 ($2)")
}
[ "$(id -u)" = 0 ] || missing+=("root privileges (needed for /proc/sys/vm/drop_caches and the tmpfs mount: run with sudo)")
need fio "apt-get install -y fio"
need jq "apt-get install -y jq"
need numfmt "coreutils"
need mountpoint "util-linux"
if [ ! -x /usr/bin/time ] || ! /usr/bin/time --version 2>&1 | grep -q GNU; then
	missing+=("/usr/bin/time, GNU time (apt-get install -y time)")
fi
[ -x /usr/bin/python3 ] || missing+=("/usr/bin/python3 (apt-get install -y python3)")
if [ "$SKIP_PEERS" = 0 ]; then
	need restic "apt-get install -y restic, or pass --skip-peers"
	need borg "apt-get install -y borgbackup, or pass --skip-peers"
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
mkdir -p "$CACHE"
export FERRY_PASSWORD=$PASSWORD

cleanup() {
	local rc=$?
	set +e
	if mountpoint -q "$TMPFS" 2>/dev/null; then
		umount "$TMPFS" 2>/dev/null || umount -l "$TMPFS"
	fi
	rmdir "$TMPFS" 2>/dev/null
	rm -rf "$SCRATCH"
	exit $rc
}
trap cleanup EXIT
trap 'echo "run.sh: interrupted" >&2; exit 130' INT
trap 'echo "run.sh: terminated" >&2; exit 143' TERM

# A previous run killed hard may have left its tmpfs mounted.
if mountpoint -q "$TMPFS" 2>/dev/null; then umount "$TMPFS"; fi
rm -rf "$SCRATCH" "$LOGS"
mkdir -p "$SCRATCH" "$LOGS"
: >"$RAW"

# Disk budget on the output filesystem: image + one repository + one restored copy
# (or the fio scratch file) at a time.
IMG="$CACHE/mixed-v$GEN_VERSION-$SIZE_BYTES-s$SEED.img"
need_bytes=$((SIZE_BYTES * 2 + SIZE_BYTES / 2 + (1 << 30)))
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

# verify_restore ROW RUN DIR_OR_FILE: compare the restored image with the original.
verify_restore() {
	local f=$3
	if [ -d "$f" ]; then
		f=$(find "$f" -type f -name "$(basename "$IMG")" | head -n 1)
	fi
	if [ -n "$f" ] && [ -f "$f" ] && cmp -s "$IMG" "$f"; then
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
if [ "$SKIP_PEERS" = 0 ]; then
	RESTIC_VER=$(version_of restic version)
	BORG_VER=$(version_of borg --version)
fi
FERRY_VER=""
[ -n "$FERRY_MISSING" ] || FERRY_VER=$(version_of "$FERRY" --version)

jq -n --arg date "$(date -Is)" --arg host "$(hostname)" --arg kernel "$(uname -r)" \
	--argjson nproc "$NPROC" --argjson size_bytes "$SIZE_BYTES" --argjson seed "$SEED" \
	--argjson runs "$RUNS" --arg image "$IMG" --arg out "$OUT" \
	--argjson quick "$QUICK" --argjson skip_peers "$SKIP_PEERS" \
	--arg ferry "$FERRY" --arg ferry_missing "$FERRY_MISSING" --arg ferry_version "$FERRY_VER" \
	--arg codec "$CODEC" --arg codec_missing "$CODEC_MISSING" \
	--arg fio "$FIO_VER" --arg restic "$RESTIC_VER" --arg borg "$BORG_VER" \
	--arg cpu "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)" \
	'{date: $date, host: $host, kernel: $kernel, cpu: $cpu, nproc: $nproc,
	  size_bytes: $size_bytes, seed: $seed, runs: $runs, image: $image, out: $out,
	  quick: ($quick == 1), skip_peers: ($skip_peers == 1),
	  ferry: {path: $ferry, version: $ferry_version, missing: $ferry_missing},
	  codec_bench: {path: $codec, missing: $codec_missing},
	  versions: {fio: $fio, restic: $restic, borg: $borg}}' >"$OUT/meta.json"

if [ -z "$FERRY_MISSING" ]; then
	# The repository needs at most about the image size; the sparse images need little.
	tmpfs_mib=$((SIZE_BYTES / 1048576 + 1024))
	mkdir -p "$TMPFS"
	mount -t tmpfs -o "size=${tmpfs_mib}m,mode=0700" ferry-bench "$TMPFS"
fi

# ---------------------------------------------------------------- warm-up
# The first buffered read after idle is slow on this shared host, and O_DIRECT
# speed drifts: one untimed buffered pass and one untimed direct pass first.
say "warm-up: buffered and O_DIRECT reads of the image (untimed)"
cat "$IMG" >/dev/null
drop_caches
fio --name=warmup --filename="$IMG" --readonly --rw=read --bs=1M --iodepth=8 \
	--ioengine=io_uring --direct=1 --size="$SIZE_BYTES" --output-format=json \
	>"$LOGS/warmup.fio.json" 2>"$LOGS/warmup.fio.err" ||
	die "fio warm-up failed: $(cat "$LOGS/warmup.fio.err")"

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

run_ferry() {
	local r=$1
	if [ -n "$FERRY_MISSING" ]; then
		if [ "$r" = 1 ]; then
			local row
			for row in ferry_backup_tmpfs ferry_backup_disk ferry_restore; do
				record_missing "$row" "$FERRY_MISSING"
			done
		fi
		return
	fi
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

# ---------------------------------------------------------------- the runs
# Configurations are interleaved round by round so that drift in the shared disk's
# speed hits every row alike.
for r in $(seq 1 "$RUNS"); do
	say "round $r/$RUNS: ceiling (fio read, fio write, codec_bench)"
	run_fio_read "$r"
	run_fio_write "$r"
	run_codec "$r"
	say "round $r/$RUNS: ferry"
	run_ferry "$r"
	if [ "$SKIP_PEERS" = 0 ]; then
		say "round $r/$RUNS: restic"
		run_restic "$r"
		say "round $r/$RUNS: borg"
		run_borg "$r"
	fi
done

if [ -z "$FERRY_MISSING" ]; then
	"$(find_gen)" --size 4M --seed "$SEED" --out "$SPARSE_PIECE" 2>/dev/null
fi
for r in $(seq 1 "$RUNS"); do
	say "round $r/$RUNS: memory (sparse 1 GiB and 64 GiB images)"
	run_sparse "$r"
done

say "report"
/usr/bin/python3 "$HERE/report.py" --meta "$OUT/meta.json" --raw "$RAW" --out "$OUT"
