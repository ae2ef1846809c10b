#!/usr/bin/env bash
# CSI agent: 50 concurrent CreateSnapshot calls over 10 volumes,
# ListSnapshots paging and filters, concurrent deletes.
# Runs tests/csi/test_concurrency.py with Debian's python against `ferry agent`
# (tests/csi/run.sh sets up the XFS state dir, the kubelet dir and the stubs).
exec bash "$(dirname "$0")/../csi/run.sh" test_concurrency.py "$@"
