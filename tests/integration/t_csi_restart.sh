#!/usr/bin/env bash
# CSI agent: SIGKILL and SIGTERM in the middle of an upload, resumed at
# the next start; the catalog, volumes and publications survive.
# Runs tests/csi/test_restart.py with Debian's python against `ferry agent`
# (tests/csi/run.sh sets up the XFS state dir, the kubelet dir and the stubs).
exec bash "$(dirname "$0")/../csi/run.sh" test_restart.py "$@"
