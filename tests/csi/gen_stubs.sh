#!/usr/bin/env bash
# gen_stubs.sh OUT_DIR: generate the Python CSI client stubs (csi_pb2.py,
# csi_pb2_grpc.py) from proto/csi.proto with Debian's grpc_tools.  The tests
# talk to the agent only through these: an independent client, built from the
# wire contract rather than from the agent's C code.
set -euo pipefail
[ $# = 1 ] || { echo "usage: gen_stubs.sh OUT_DIR" >&2; exit 2; }
SRC=${FERRY_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
PY=/usr/bin/python3   # Debian's python: python3-grpcio and grpc_tools live there
out=$1
mkdir -p "$out"
"$PY" -c 'import grpc_tools.protoc' 2>/dev/null || {
  echo "gen_stubs: $PY has no grpc_tools (apt-get install python3-grpc-tools)" >&2; exit 1; }
# /usr/include holds google/protobuf/{descriptor,timestamp,wrappers}.proto.
"$PY" -m grpc_tools.protoc -I"$SRC/proto" -I/usr/include \
  --python_out="$out" --grpc_python_out="$out" "$SRC/proto/csi.proto"
[ -s "$out/csi_pb2.py" ] && [ -s "$out/csi_pb2_grpc.py" ] || {
  echo "gen_stubs: protoc produced no stubs in $out" >&2; exit 1; }
