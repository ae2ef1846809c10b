#!/usr/bin/env bash
# deploy/examples/pre-upgrade-snapshot: the Helm pre-upgrade hook (an
# application chart that carries it) and the plain Job for kustomize, each
# rendered and validated like every other object (models, types, and the
# VolumeSnapshot against its CRD); the hook's annotations and order; the
# Job waits for the very snapshot rendered, also with a per-run name suffix.
source "$(dirname "$0")/lib.sh"
E=$TOP/deploy/examples/pre-upgrade-snapshot
crds=$(crds_dir) || crds=""
"$HELM" lint "$E/helm" --kube-version "$KUBE_VERSION" || die "helm lint of the pre-upgrade hook chart"
"$HELM" template app "$E/helm" --namespace prod --kube-version "$KUBE_VERSION" > "$WORK/hook.yaml" || die "helm template (hook)"
"$KUBECTL" kustomize "$E/kustomize" > "$WORK/job.yaml" || die "kubectl kustomize (job)"
cp -r "$E/kustomize" "$WORK/run"
printf 'nameSuffix: "-202603011200"\n' >> "$WORK/run/kustomization.yaml"
"$KUBECTL" kustomize "$WORK/run" > "$WORK/run.yaml" || die "kubectl kustomize (job with a name suffix)"
for f in hook job run; do
  node "$DEPLOY_TESTS/validate.mjs" --only models "$WORK/$f.yaml" || die "$f: kubernetes-models"
  node "$DEPLOY_TESTS/validate.mjs" --only types "$WORK/$f.yaml" || die "$f: tsc"
  [ -z "$crds" ] || node "$DEPLOY_TESTS/validate.mjs" --crds "$crds" "$WORK/$f.yaml" || die "$f: the CRDs"
done
# What the hook must be: the snapshot named after the revision, the Job
# waiting for that name, and the hook order RBAC, snapshot, Job.
node - "$WORK/hook.yaml" "$DEPLOY_TESTS" <<'JS' || die "the pre-upgrade hook objects"
const fs = require("fs");
const YAML = require(process.argv[3] + "/node_modules/yaml");
const objs = YAML.parseAllDocuments(fs.readFileSync(process.argv[2], "utf8")).map((d) => d.toJS()).filter(Boolean);
const by = (k) => objs.filter((o) => o.kind === k);
const fail = (m) => { console.error("FAIL: " + m); process.exit(1); };
const w = (o) => Number(o.metadata.annotations["helm.sh/hook-weight"]);
for (const o of objs) if (o.metadata.annotations?.["helm.sh/hook"] !== "pre-upgrade") fail(`${o.kind} is not a pre-upgrade hook`);
const [snap] = by("VolumeSnapshot"), [job] = by("Job");
if (!snap || !job) fail("no VolumeSnapshot or no Job");
if (snap.metadata.name !== "app-pre-upgrade-1") fail(`the snapshot is named ${snap.metadata.name}`);
if (snap.metadata.annotations["helm.sh/hook-delete-policy"]) fail("the snapshot would be deleted by Helm");
const args = job.spec.template.spec.containers[0].args;
if (!args.includes("volumesnapshot/" + snap.metadata.name)) fail(`the Job waits for ${args}`);
if (!args.includes("--for=jsonpath={.status.readyToUse}=true")) fail(`the Job does not wait for readyToUse: ${args}`);
for (const k of ["ServiceAccount", "Role", "RoleBinding"]) if (!(w(by(k)[0]) < w(snap) && w(snap) < w(job))) fail(`hook order: ${k}`);
const rules = by("Role")[0].rules;
if (JSON.stringify(rules) !== JSON.stringify([{ apiGroups: ["snapshot.storage.k8s.io"], resources: ["volumesnapshots"], verbs: ["get", "list", "watch"] }])) fail(`the Role grants ${JSON.stringify(rules)}`);
console.log("hook: RBAC, then " + snap.metadata.name + ", then the Job waiting for it");
JS
grep -q -- '- volumesnapshot/pre-migration-202603011200$' "$WORK/run.yaml" || die "with a name suffix the Job does not wait for the suffixed snapshot"
grep -q '^  name: pre-migration-202603011200$' "$WORK/run.yaml" || die "the suffixed snapshot is not rendered"
echo "PASS: the pre-upgrade hook and the pre-migration Job render and validate${crds:+ (with the CRDs)}"
[ -n "$crds" ] || skip "no CRD files in ${FERRY_CRDS_DIR:-$TOP/../shared/crds} (set FERRY_CRDS_DIR): the VolumeSnapshots were not checked against their CRD"
