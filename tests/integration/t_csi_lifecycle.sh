#!/usr/bin/env bash
# CSI agent: a block volume's life: publish, writes, uploaded
# snapshots, GetMetadataDelta/Allocated, clones, ferry restore/check,
# labels, delete.
# Runs tests/csi/test_lifecycle.py with Debian's python against `ferry agent`
# (tests/csi/run.sh sets up the XFS state dir, the kubelet dir and the stubs).
exec bash "$(dirname "$0")/../csi/run.sh" test_lifecycle.py "$@"
