#!/usr/bin/env bash
# Build ferry twice: build/ (optimised) and build-asan/ (ASan + UBSan).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$jobs"
if [ "${1:-}" != "--release-only" ]; then
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DFERRY_SANITIZE=ON >/dev/null
  cmake --build build-asan -j "$jobs"
fi
