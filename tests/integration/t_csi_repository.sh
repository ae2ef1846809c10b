#!/usr/bin/env bash
# CSI agent: two uploads creating one repository at once (one creates it,
# the other opens it), and the insecure-no-encryption class parameter.
# Runs tests/csi/test_repository.py with Debian's python against `ferry agent`
# (tests/csi/run.sh sets up the XFS state dir, the kubelet dir and the stubs).
exec bash "$(dirname "$0")/../csi/run.sh" test_repository.py "$@"
