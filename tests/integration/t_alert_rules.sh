#!/usr/bin/env bash
# The alert rules (deploy/monitoring/ferry-alerts.yaml): promtool check
# rules, and promtool test rules with tests/monitoring/ferry-alerts.test.yaml
# (series that must fire each alert, at the right time with its labels and
# annotations, and series that must not).  Then the same test on broken
# copies of the rules, one mistake each, which must fail: a rules test that
# cannot fail proves nothing.
#
# Exit: 0 pass, 1 fail (promtool comes with Debian's prometheus package,
# which scripts/install-deps.sh installs).
set -euo pipefail
SRC=${FERRY_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
RULES=$SRC/deploy/monitoring/ferry-alerts.yaml
TEST=$SRC/tests/monitoring/ferry-alerts.test.yaml

fail() { echo "FAIL: $*" >&2; exit 1; }
command -v promtool >/dev/null || fail "promtool is not installed (scripts/install-deps.sh installs prometheus)"

T=$(mktemp -d "${TMPDIR:-/tmp}/ferry-alerts.XXXXXX")
trap 'rm -rf "$T"' EXIT

promtool check rules "$RULES" || fail "promtool check rules $RULES"
promtool test rules "$TEST" || fail "promtool test rules $TEST"
echo "ok - the rules pass their tests"

# broken NAME SED-EXPRESSION: the test must fail on the rules so changed.
mkdir -p "$T/deploy/monitoring" "$T/tests/monitoring"
cp "$TEST" "$T/tests/monitoring/"
n=0
broken() {
  local name=$1 expr=$2 out
  sed -e "$expr" "$RULES" > "$T/deploy/monitoring/ferry-alerts.yaml"
  cmp -s "$RULES" "$T/deploy/monitoring/ferry-alerts.yaml" && fail "$name: the change '$expr' changed nothing"
  promtool check rules "$T/deploy/monitoring/ferry-alerts.yaml" >/dev/null || fail "$name: the broken copy is not even valid"
  if out=$(promtool test rules "$T/tests/monitoring/ferry-alerts.test.yaml" 2>&1); then
    fail "$name: promtool test rules passed with the rules broken ($expr)"
  fi
  echo "ok - fails as it should: $name: $(grep -m1 -o 'alertname: [A-Za-z]*, time: [0-9a-z]*' <<<"$out")"
  n=$((n + 1))
}
broken "RPO without 'objective > 0' (fires without an objective)" '/and ferry_rpo_objective_seconds > 0/d'
broken "RPO without its 5 minutes"                                '/alert: FerryRPOBreached/,/for:/s/for: 5m/for: 0m/'
broken "RTO compared the wrong way"                               's/ferry_rto_estimate_seconds > ferry_rto_objective_seconds/ferry_rto_estimate_seconds < ferry_rto_objective_seconds/'
broken "drill failed on success"                                  's/ferry_drill_last_success == 0/ferry_drill_last_success == 1/'
broken "drills stale after 7 days"                                's/> 8 \* 86400/> 7 * 86400/'
broken "uploads: any success on the node hides a volume's failures" 's/unless on (job, instance, volume)/unless on (job, instance)/'
broken "uploads failing at the first failure"                     '/alert: FerryUploadsFailing/,/for:/s/for: 15m/for: 0m/'
broken "policy errors: a first error not seen"                    '/or (ferry_policy_errors_total unless/d'
echo "PASS: the alert rules pass their tests, and $n broken copies fail them"
