#!/usr/bin/env bash
# CSI agent: bad input and its status codes; failed uploads
# (UNAVAILABLE), retries, stuck queues; no secret in logs or state.
# Runs tests/csi/test_badinput.py with Debian's python against `ferry agent`
# (tests/csi/run.sh sets up the XFS state dir, the kubelet dir and the stubs).
exec bash "$(dirname "$0")/../csi/run.sh" test_badinput.py "$@"
