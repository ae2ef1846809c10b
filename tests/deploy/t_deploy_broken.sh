#!/usr/bin/env bash
# Each validator fails on a broken copy of the rendered objects, for the
# reason planted (the message must name the field), and passes the unbroken
# copy: a validator that cannot fail proves nothing.
source "$(dirname "$0")/lib.sh"
render full
good=$WORK/full.kustomize.yaml
crds=$(crds_dir) || crds=""
ran=0
# broken NAME VALIDATOR KIND/NAME set|delete PATH JSON|- EXPECTED-IN-OUTPUT
broken() {
  local name=$1 validator=$2 id=$3 op=$4 path=$5 val=$6 want=$7 out rc
  if [ "$validator" = crds ] && [ -z "$crds" ]; then
    echo "not run (no CRDs): $name"
    return
  fi
  if [ "$op" = delete ]; then
    node "$DEPLOY_TESTS/mutate.mjs" "$good" "$WORK/$name.yaml" "$id" delete "$path" || die "$name: mutate"
  else
    node "$DEPLOY_TESTS/mutate.mjs" "$good" "$WORK/$name.yaml" "$id" set "$path" "$val" || die "$name: mutate"
  fi
  set +e
  out=$(node "$DEPLOY_TESTS/validate.mjs" --only "$validator" ${crds:+--crds "$crds"} "$WORK/$name.yaml" 2>&1)
  rc=$?
  set -e
  [ $rc -eq 1 ] || die "$name: $validator exited $rc on a broken copy (want 1): $out"
  grep -qF -- "$want" <<<"$out" || die "$name: $validator failed, but not naming '$want': $out"
  echo "fails as it should: $name ($validator): $(grep -m1 INVALID <<<"$out")"
  ran=$((ran + 1))
}
DS=DaemonSet/ferry-node
# kubernetes-models: wrong type, missing required field, bad enum
broken models-type   models $DS set spec.template.spec.terminationGracePeriodSeconds '"sixty"' 'terminationGracePeriodSeconds must be integer'
broken models-missing models $DS delete spec.template.spec.containers.1.name - 'containers/1 must have required property name'
broken models-enum   models $DS set spec.updateStrategy.type '"Sometimes"' 'updateStrategy/type must be equal to one of the allowed values'
broken models-enum2  models StorageClass/ferry set volumeBindingMode '"Later"' 'volumeBindingMode must be equal to one of the allowed values'
# kubernetes-types + tsc: unknown field, wrong type, missing required field
broken types-unknown types $DS set spec.template.spec.containers.0.imagePulPolicy '"Always"' "'\"imagePulPolicy\"' does not exist in type 'Container'"
broken types-unknown2 types StorageClass/ferry set volumeBindingModes '"Immediate"' "'\"volumeBindingModes\"' does not exist in type 'StorageClass'"
broken types-type    types $DS set spec.template.spec.terminationGracePeriodSeconds '"sixty"' "\"terminationGracePeriodSeconds\": \"sixty\""
broken types-missing types ClusterRoleBinding/ferry-provisioner delete roleRef - "Property 'roleRef' is missing"
# ajv on the CRDs: unknown field, wrong type, missing required field, bad enum, bad format
broken crds-unknown  crds VolumeSnapshotClass/ferry-offsite set deletionPolicyy '"Delete"' "must NOT have additional properties 'deletionPolicyy'"
broken crds-type     crds VolumeSnapshotClass/ferry-offsite set parameters '"ferry.csi.dev/repository=s3://x"' '/parameters must be object'
broken crds-missing  crds VolumeSnapshotClass/ferry-local delete driver - "must have required property 'driver'"
broken crds-enum     crds VolumeSnapshotClass/ferry-offsite set deletionPolicy '"Keep"' '/deletionPolicy must be equal to one of the allowed values'
broken crds-sms-missing crds SnapshotMetadataService/ferry.csi.dev delete spec.audience - "/spec must have required property 'audience'"
broken crds-sms-format crds SnapshotMetadataService/ferry.csi.dev set spec.caCert '"not base64!"' '/spec/caCert must match format "byte"'
broken crds-sms-unknown crds SnapshotMetadataService/ferry.csi.dev set spec.adress '"x:1"' "must NOT have additional properties 'adress'"
# The Prometheus Operator's kinds (monitoring component): their models, their
# interfaces (tsc), and promtool on the rule groups inside.
PR=PrometheusRule/ferry
broken mon-models-missing models $PR delete spec.groups.0.rules.0.expr - 'rules/0 must have required property expr'
broken mon-models-for    models $PR set spec.groups.0.rules.0.for '"five minutes"' 'rules/0/for must match pattern'
broken mon-promtool      models $PR set spec.groups.0.rules.0.expr '"rate(ferry_uploads_total[5m]"' 'promtool check rules'
broken mon-promtool-tmpl models $PR set spec.groups.0.rules.0.annotations.summary '"{{ $labels.volume"' 'promtool check rules'
broken mon-pm-missing    models PodMonitor/ferry-node delete spec.selector - "spec must have required property selector"
broken mon-types-unknown types $PR set spec.groups.0.rules.0.fro '"5m"' "'\"fro\"' does not exist"
broken mon-types-pm      types PodMonitor/ferry-node set spec.podMetricsEndpoints.0.prot '"metrics"' "'\"prot\"' does not exist"
# An object no validator knows is an error, not a pass.
broken unknown-kind models $DS set kind '"DaemonSett"' 'no validator knows apps/v1 DaemonSett'

# The unbroken copy passes every validator that ran above.
node "$DEPLOY_TESTS/validate.mjs" --only models "$good" >/dev/null || die "models rejects the unbroken copy"
node "$DEPLOY_TESTS/validate.mjs" --only types "$good" >/dev/null || die "types rejects the unbroken copy"
[ -z "$crds" ] || node "$DEPLOY_TESTS/validate.mjs" --only crds --crds "$crds" "$good" >/dev/null || die "crds rejects the unbroken copy"
echo "$ran broken copies refused"
[ -n "$crds" ] || skip "no CRD files in ${FERRY_CRDS_DIR:-$TOP/../shared/crds} (set FERRY_CRDS_DIR): the CRD validator's broken copies were not run"
echo "PASS: every validator fails on broken input and passes the real objects"
