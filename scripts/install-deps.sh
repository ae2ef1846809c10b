#!/usr/bin/env bash
# Install everything ferry needs to build, test, demo and benchmark, from
# Debian 12's packages.  Run as root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(
  build-essential cmake pkg-config git
  liburing-dev libaio-dev libisal-dev isal libssl-dev
  libprotobuf-c-dev protobuf-c-compiler libprotobuf-dev
  libcmocka-dev zlib1g-dev
  util-linux e2fsprogs xfsprogs kmod fio time jq python3 openssl bsdutils
  # the S3 store (libcurl, libxml2) and its tests against a real RADOS gateway
  libcurl4-openssl-dev libxml2-dev curl
  radosgw ceph-mon ceph-osd ceph-common awscli
  # the CSI agent (gRPC C core, SQLite catalog) and its tests with a real Python gRPC client
  libgrpc-dev libsqlite3-dev python3-grpcio python3-grpc-tools
  # the fuzz targets (tests/fuzz): clang 14; libFuzzer and the sanitizers'
  # runtimes are in libclang-rt-14-dev, which clang only recommends; llvm-14
  # has llvm-symbolizer (readable stack traces)
  clang libclang-rt-14-dev llvm-14
)
if [ "${1:-}" = "--bench" ]; then
  pkgs+=(restic borgbackup python3-matplotlib)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
echo "install-deps: all ${#pkgs[@]} packages present"
