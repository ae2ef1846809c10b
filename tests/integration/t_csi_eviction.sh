#!/usr/bin/env bash
# CSI agent: --local-snapshots 1: an evicted snapshot is restored
# from the repository by CreateVolume; its metadata from the manifests.
# Runs tests/csi/test_eviction.py with Debian's python against `ferry agent`
# (tests/csi/run.sh sets up the XFS state dir, the kubelet dir and the stubs).
exec bash "$(dirname "$0")/../csi/run.sh" test_eviction.py "$@"
