#!/usr/bin/env bash
# CSI agent + S3: a backup policy with a Ceph RGW bucket and a copy in
# another account as targets (keys from a secrets file and a directory),
# driven by the test clock: uploads, retention per target, a drill from the
# copy recorded there, a restore byte-identical, no secret in the log.
# Runs tests/csi/test_policy_s3.py with RGW_DIR from the ctest fixture "rgw".
: "${RGW_DIR:?RGW_DIR must name the directory of tests/s3/rgw.sh start (ctest sets it)}"
[ -s "$RGW_DIR/env" ] || { echo "FAIL: no $RGW_DIR/env: the s3/rgw_start fixture did not run" >&2; exit 1; }
exec bash "$(dirname "$0")/../csi/run.sh" test_policy_s3.py "$@"
