#!/usr/bin/env bash
# CSI agent + S3: an upload blocked in a store request that does not answer
# (tests/s3/faultproxy.py --hold-file in front of RGW): DeleteSnapshot
# answers within its bound and the upload never resumes; SIGTERM exits 0
# within the grace period and the next start resumes the upload.
# Runs tests/csi/test_stall.py (tests/csi/run.sh sets up the XFS state dir,
# the kubelet dir and the stubs) with RGW_DIR from the ctest fixture "rgw".
: "${RGW_DIR:?RGW_DIR must name the directory of tests/s3/rgw.sh start (ctest sets it)}"
[ -s "$RGW_DIR/env" ] || { echo "FAIL: no $RGW_DIR/env: the s3/rgw_start fixture did not run" >&2; exit 1; }
exec bash "$(dirname "$0")/../csi/run.sh" test_stall.py "$@"
