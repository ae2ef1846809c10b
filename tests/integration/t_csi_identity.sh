#!/usr/bin/env bash
# CSI agent: Identity, capabilities, the socket's mode, node info,
# GetCapacity, volume basics, UNIMPLEMENTED, a second agent, SIGTERM.
# Runs tests/csi/test_identity.py with Debian's python against `ferry agent`
# (tests/csi/run.sh sets up the XFS state dir, the kubelet dir and the stubs).
exec bash "$(dirname "$0")/../csi/run.sh" test_identity.py "$@"
