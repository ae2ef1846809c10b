#!/usr/bin/env bash
# The monitoring objects of deploy/ against what they must say (no API server
# and no Prometheus Operator CRD here: validate.mjs checks their structure
# with the operator's typed models and promtool; this checks their content):
#   - the PrometheusRule that kustomize (components/monitoring) and the chart
#     (monitoring.prometheusRule.enabled) render holds exactly the groups of
#     deploy/monitoring/ferry-alerts.yaml, and those groups pass the rules'
#     unit tests (tests/monitoring) as rendered;
#   - the generated files are what deploy/monitoring/sync.sh writes now;
#   - the PodMonitor selects the node plugin's pods and names a port of the
#     agent's container, the port --metrics-address serves (also with the
#     chart's metrics.port moved);
#   - without the component or the values, no monitoring object is rendered.
source "$(dirname "$0")/lib.sh"
command -v promtool >/dev/null || die "promtool is not installed (scripts/install-deps.sh installs prometheus)"
render monitoring
render full
render base

# The rule groups of each rendered PrometheusRule, and the source's, as JSON.
cat > "$WORK/groups.mjs" <<'JS'
import { createRequire } from "node:module";
import fs from "node:fs";
const require = createRequire(process.env.DEPLOY_TESTS + "/package.json");
const YAML = require("yaml");
const [file, kind, name] = process.argv.slice(2);
const docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8")).map((d) => d.toJS()).filter((o) => o);
// Canonical JSON: keys sorted (kustomize reorders them), arrays in order.
const canon = (v) => Array.isArray(v) ? v.map(canon) : v && typeof v === "object"
  ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon(v[k])])) : v;
if (kind === "-") {
  process.stdout.write(JSON.stringify(canon(docs[0].groups)) + "\n");
} else {
  const o = docs.filter((d) => d.kind === kind && d.metadata?.name === name);
  if (o.length !== 1) { console.error(`${file}: ${o.length} ${kind}/${name}`); process.exit(1); }
  process.stdout.write(JSON.stringify(canon(o[0].spec.groups)) + "\n");
}
JS
export DEPLOY_TESTS
want=$(node "$WORK/groups.mjs" "$TOP/deploy/monitoring/ferry-alerts.yaml" -) || die "reading ferry-alerts.yaml"
for v in monitoring full; do
  for how in kustomize helm; do
    got=$(node "$WORK/groups.mjs" "$WORK/$v.$how.yaml" PrometheusRule ferry) || die "$v ($how): no PrometheusRule ferry"
    [ "$got" = "$want" ] || die "$v ($how): the PrometheusRule's groups differ from deploy/monitoring/ferry-alerts.yaml (run deploy/monitoring/sync.sh)"
  done
done
echo "ok - the rendered PrometheusRules hold the groups of ferry-alerts.yaml"

# The rules' unit tests, on the groups as kustomize rendered them.
mkdir -p "$WORK/rt/deploy/monitoring" "$WORK/rt/tests/monitoring"
node -e 'const o=JSON.parse(require("fs").readFileSync(0,"utf8"));process.stdout.write(JSON.stringify({groups:o}))' \
  <<<"$(node "$WORK/groups.mjs" "$WORK/full.kustomize.yaml" PrometheusRule ferry)" > "$WORK/rt/deploy/monitoring/ferry-alerts.yaml"
cp "$TOP/tests/monitoring/ferry-alerts.test.yaml" "$WORK/rt/tests/monitoring/"
promtool check rules "$WORK/rt/deploy/monitoring/ferry-alerts.yaml" >/dev/null || die "promtool check rules on the rendered groups"
promtool test rules "$WORK/rt/tests/monitoring/ferry-alerts.test.yaml" >/dev/null || die "promtool test rules on the rendered groups"
echo "ok - the rendered groups pass promtool check rules and the rules' tests"

# The generated files are up to date.
mkdir -p "$WORK/sync/deploy/monitoring" "$WORK/sync/deploy/helm/ferry/files" "$WORK/sync/deploy/kubernetes/components/monitoring"
cp "$TOP/deploy/monitoring/ferry-alerts.yaml" "$TOP/deploy/monitoring/sync.sh" "$WORK/sync/deploy/monitoring/"
sh "$WORK/sync/deploy/monitoring/sync.sh" >/dev/null
for f in deploy/helm/ferry/files/ferry-alerts.yaml deploy/kubernetes/components/monitoring/prometheusrule.yaml; do
  cmp -s "$WORK/sync/$f" "$TOP/$f" || die "$f is not what deploy/monitoring/sync.sh writes: run it"
done
echo "ok - the generated files are what sync.sh writes"

# The PodMonitor scrapes the agent's metrics port.
check_podmonitor() { # FILE
  node - "$1" <<'JS' || die "$(basename "$1"): the PodMonitor does not scrape the agent's metrics port"
const { createRequire } = require("node:module");
const fs = require("node:fs");
const req = createRequire(process.env.DEPLOY_TESTS + "/package.json");
const YAML = req("yaml");
const file = process.argv[2];
const docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8")).map((d) => d.toJS()).filter((o) => o);
const pm = docs.find((d) => d.kind === "PodMonitor");
const ds = docs.find((d) => d.kind === "DaemonSet" && d.metadata.name === "ferry-node");
const die = (m) => { console.error(`${file}: ${m}`); process.exit(1); };
if (!pm || !ds) die("no PodMonitor or no DaemonSet");
if (pm.metadata.namespace !== ds.metadata.namespace) die("PodMonitor and DaemonSet in different namespaces");
const podLabels = ds.spec.template.metadata.labels;
for (const [k, v] of Object.entries(pm.spec.selector.matchLabels)) if (podLabels[k] !== v) die(`selector ${k}=${v} does not match the pods`);
const agent = ds.spec.template.spec.containers.find((c) => c.name === "ferry");
const ep = pm.spec.podMetricsEndpoints;
if (ep.length !== 1 || ep[0].path !== "/metrics") die("want one endpoint, /metrics");
const port = (agent.ports || []).find((p) => p.name === ep[0].port);
if (!port) die(`the agent has no port named ${ep[0].port}`);
const arg = agent.args.find((a) => a.startsWith("--metrics-address="));
if (arg !== `--metrics-address=:${port.containerPort}`) die(`${arg} does not serve port ${port.containerPort}`);
for (const c of ds.spec.template.spec.containers)
  for (const p of c.ports || []) if (p !== port && p.containerPort === port.containerPort) die(`port ${p.containerPort} also in ${c.name}`);
console.log(`${file.split("/").pop()}: PodMonitor -> pods ${JSON.stringify(pm.spec.selector.matchLabels)} port ${ep[0].port} (${port.containerPort}) = ${arg}`);
JS
}
for f in "$WORK/monitoring.kustomize.yaml" "$WORK/monitoring.helm.yaml" "$WORK/full.kustomize.yaml" "$WORK/full.helm.yaml"; do
  check_podmonitor "$f"
done
"$HELM" template ferry "$CHART" -n ferry --kube-version "$KUBE_VERSION" -f "$CHART/examples/monitoring.yaml" \
  --set metrics.port=9900 --set monitoring.podMonitor.labels.release=prom --set monitoring.prometheusRule.labels.release=prom \
  > "$WORK/moved.yaml" || die "helm template with metrics.port=9900"
check_podmonitor "$WORK/moved.yaml"
grep -q -- '--metrics-address=:9900' "$WORK/moved.yaml" || die "metrics.port does not reach --metrics-address"
[ "$(grep -c '^    release: prom$' "$WORK/moved.yaml")" = 2 ] || die "the monitoring labels values do not reach both objects"
# A PodMonitor that names a port the agent does not have is caught.
sed 's/^    port: metrics$/    port: metricz/' "$WORK/monitoring.kustomize.yaml" > "$WORK/wrong-port.yaml"
cmp -s "$WORK/wrong-port.yaml" "$WORK/monitoring.kustomize.yaml" && die "the wrong-port copy changed nothing"
if (check_podmonitor "$WORK/wrong-port.yaml") 2>/dev/null; then die "a PodMonitor naming no port of the agent passed"; fi
echo "ok - the PodMonitor scrapes the agent's metrics port (and a wrong port is caught)"

# Nothing of monitoring without the component or the values; the metrics port always.
if grep -qE '^kind: (PrometheusRule|PodMonitor)$' "$WORK/base.kustomize.yaml" "$WORK/base.helm.yaml"; then
  die "a monitoring object is rendered without the component / values"
fi
for f in "$WORK/base.kustomize.yaml" "$WORK/base.helm.yaml"; do
  grep -q -- '--metrics-address=:9810' "$f" || die "$(basename "$f"): the agent does not serve its metrics"
done
echo "PASS: the monitoring objects say what deploy/monitoring says, and scrape the agent"
