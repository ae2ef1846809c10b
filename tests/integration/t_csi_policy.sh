#!/usr/bin/env bash
# CSI agent, backup policies (--policy-dir) on a test clock: schedules fire
# (snapshots listed, uploaded with the policy's label, restored
# byte-identical), retention per target, a missed run once after downtime,
# policy files changed, rejected, swapped like a ConfigMap; prune beside
# uploads, scheduled drills (passing, a damaged chunk, a failing check), RPO
# objectives; overlapping policies, a missing secret, PVC selectors.
# Runs tests/csi/test_policy.py with Debian's python against `ferry agent`
# (tests/csi/run.sh sets up the XFS state dir, the kubelet dir and the stubs).
exec bash "$(dirname "$0")/../csi/run.sh" test_policy.py "$@"
