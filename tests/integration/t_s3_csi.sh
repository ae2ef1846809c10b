#!/usr/bin/env bash
# CSI agent + S3: snapshots uploaded to a Ceph RGW bucket and a copy in another
# account in one pass, keys from the CSI secrets; a wrong key reported and
# retried; check --read-data on both; a restore from the copy; no secret left.
# Runs tests/csi/test_s3.py (tests/csi/run.sh sets up the XFS state dir, the
# kubelet dir and the stubs) with RGW_DIR from the ctest fixture "rgw".
: "${RGW_DIR:?RGW_DIR must name the directory of tests/s3/rgw.sh start (ctest sets it)}"
[ -s "$RGW_DIR/env" ] || { echo "FAIL: no $RGW_DIR/env: the s3/rgw_start fixture did not run" >&2; exit 1; }
exec bash "$(dirname "$0")/../csi/run.sh" test_s3.py "$@"
