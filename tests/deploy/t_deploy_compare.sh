#!/usr/bin/env bash
# The chart and the kustomize tree render the same objects for each way to
# install (compare.mjs says what is normalised: the Namespace object and
# Helm's own labels), and the comparison sees a difference when there is one.
source "$(dirname "$0")/lib.sh"
render_all
for v in $VARIANTS; do
  node "$DEPLOY_TESTS/compare.mjs" "$WORK/$v.kustomize.yaml" "$WORK/$v.helm.yaml" || die "$v: helm and kustomize differ"
done
# A chart rendered with one value changed must not compare equal.
"$HELM" template ferry "$CHART" -n ferry --kube-version "$KUBE_VERSION" --set terminationGracePeriodSeconds=30 > "$WORK/changed.yaml"
if out=$(node "$DEPLOY_TESTS/compare.mjs" "$WORK/base.kustomize.yaml" "$WORK/changed.yaml"); then
  die "compare.mjs found no difference with terminationGracePeriodSeconds=30: $out"
fi
grep -q 'terminationGracePeriodSeconds: kustomize 60, helm 30' <<<"$out" || die "compare.mjs did not name the difference: $out"
echo "PASS: helm and kustomize render the same objects"
