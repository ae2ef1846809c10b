#!/usr/bin/env bash
# Build both flavours and run every test: the unit and integration suites
# under ASan + UBSan, then the unit suite on the optimised build, then the
# fuzz targets (build-fuzz/, clang + libFuzzer; docs/fuzzing.md): each replays
# its corpus and regressions, then fuzzes for FERRY_FUZZ_SECONDS (default 60).
# Skipped tests print their reason and are not counted as passes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DFERRY_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j "$(nproc)"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
echo "== tests under ASan + UBSan (build-asan/)"
(cd build-asan && ctest --output-on-failure --timeout 900) || status=1
echo "== unit tests, optimised build (build/)"
(cd build && ctest --output-on-failure -R '^unit/') || status=1
echo "== fuzz targets (build-fuzz/): corpus and regressions, then ${FERRY_FUZZ_SECONDS:-60} s each"
(cd build-fuzz && ctest --output-on-failure -L fuzz) || status=1
exit $status
