#!/usr/bin/env bash
# CSI agent: mount access (XFS, ext4): freeze hooks, the freeze itself,
# readonly publishes, mount flags, NodeGetVolumeStats, republish after a
# snapshot.
# Runs tests/csi/test_mount.py with Debian's python against `ferry agent`
# (tests/csi/run.sh sets up the XFS state dir, the kubelet dir and the stubs).
exec bash "$(dirname "$0")/../csi/run.sh" test_mount.py "$@"
