#!/usr/bin/env bash
# Build both flavours and run every test: the unit and integration suites
# under ASan + UBSan, then the unit suite on the optimised build.
# Skipped tests print their reason and are not counted as passes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
echo "== tests under ASan + UBSan (build-asan/)"
(cd build-asan && ctest --output-on-failure --timeout 900) || status=1
echo "== unit tests, optimised build (build/)"
(cd build && ctest --output-on-failure -R '^unit/') || status=1
exit $status
