#!/usr/bin/env bash
# CSI agent: Prometheus metrics (--metrics-address) and the JSON log
# (--log-format json) with real parts: live scrapes checked by promtool,
# counters, RPO per volume and target, a real Prometheus server scraping the
# agent and answering PromQL, the alert rules loaded there, bad addresses.
# Runs tests/csi/test_metrics.py (tests/csi/run.sh sets up the scene).
exec bash "$(dirname "$0")/../csi/run.sh" test_metrics.py "$@"
