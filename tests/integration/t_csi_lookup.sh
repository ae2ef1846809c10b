#!/usr/bin/env bash
# CSI agent: snapshots another node cut, found in the shared repository by
# their label: SnapshotMetadata and CreateVolume on a node that never saw
# them (lookup-repositories in its config, or the StorageClass's repository).
# Runs tests/csi/test_lookup.py with Debian's python against `ferry agent`
# (tests/csi/run.sh sets up the XFS state dir, the kubelet dir and the stubs).
exec bash "$(dirname "$0")/../csi/run.sh" test_lookup.py "$@"
