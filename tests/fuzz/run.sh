#!/usr/bin/env bash
# Run one fuzz target as ctest's fuzz/<target> does (docs/fuzzing.md):
#   run.sh BINARY SRC_DIR WORK_DIR
# 1. every input of tests/fuzz/corpus/<target>/ and tests/fuzz/regressions/<target>/
#    once (a regression that crashes again fails here, named);
# 2. then FERRY_FUZZ_SECONDS (default 60; 0 skips this step) of fuzzing from
#    them, new inputs kept in WORK_DIR/<target>/corpus (never in the source
#    tree), a crashing input in WORK_DIR/<target>/artifacts/.
# Fails on any crash, leak, timeout (FERRY_FUZZ_TIMEOUT s for one input,
# default 25), out-of-memory (2 GiB) or sanitizer report.
set -uo pipefail
bin=$1 src=$2 work=$3
name=$(basename "$bin")
secs=${FERRY_FUZZ_SECONDS:-60}
corpus=$src/corpus/$name
regress=$src/regressions/$name
out=$work/$name
mkdir -p "$out/corpus" "$out/artifacts"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
if [ -z "${ASAN_SYMBOLIZER_PATH:-}" ] && [ -x /usr/lib/llvm-14/bin/llvm-symbolizer ]; then
  export ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-14/bin/llvm-symbolizer
fi
opts=(-timeout="${FERRY_FUZZ_TIMEOUT:-25}" -rss_limit_mb=2048 -artifact_prefix="$out/artifacts/")
case $name in
  fuzz_csi_*) dict=$src/dict/csi.dict ;;
  *) dict=$src/dict/${name#fuzz_}.dict ;;
esac
[ -f "$dict" ] && opts+=(-dict="$dict")

inputs=()
for d in "$corpus" "$regress"; do
  [ -d "$d" ] && while IFS= read -r -d '' f; do inputs+=("$f"); done < <(find "$d" -type f -print0 | sort -z)
done
echo "== $name: replaying ${#inputs[@]} inputs (corpus and regressions)"
if [ ${#inputs[@]} -gt 0 ]; then
  if ! "$bin" "${opts[@]}" "${inputs[@]}" > "$out/replay.log" 2>&1; then
    tail -n 60 "$out/replay.log"
    echo "FAIL: $name: an input of the corpus or of the regressions fails (above; full log $out/replay.log)"
    exit 1
  fi
fi
if [ "$secs" -le 0 ]; then
  echo "== $name: FERRY_FUZZ_SECONDS=0: no fuzzing"
  exit 0
fi

echo "== $name: fuzzing for $secs s"
dirs=("$out/corpus")
for d in "$corpus" "$regress"; do [ -d "$d" ] && dirs+=("$d"); done
"$bin" "${opts[@]}" -max_total_time="$secs" -print_final_stats=1 "${dirs[@]}" > "$out/fuzz.log" 2>&1
rc=$?
grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$out/fuzz.log" | sed "s/^/$name /"
if [ $rc -ne 0 ]; then
  grep -vE '^#[0-9]+' "$out/fuzz.log" | tail -n 80
  echo "FAIL: $name (exit $rc): what it found is in $out/artifacts/ (full log $out/fuzz.log)."
  echo "Reproduce with: $bin <that file>; once fixed, add it as tests/fuzz/regressions/$name/<what-it-was> (docs/fuzzing.md)."
  exit 1
fi
exit 0
