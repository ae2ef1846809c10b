#!/usr/bin/env bash
# CSI agent, upload jobs: DeleteSnapshot in mid-upload 20 times (prompt OK,
# never resumed, agent idle, later snapshots restore byte-identical); one
# key derivation per job over failing attempts, again when secrets change.
# Runs tests/csi/test_jobs.py with Debian's python against `ferry agent`
# (tests/csi/run.sh sets up the XFS state dir, the kubelet dir and the stubs).
exec bash "$(dirname "$0")/../csi/run.sh" test_jobs.py "$@"
