#!/usr/bin/env bash
# helm lint and helm template of the chart (defaults and each example), and
# kubectl kustomize of the base and every overlay, with the pinned tools.
source "$(dirname "$0")/lib.sh"
"$HELM" lint "$CHART" --kube-version "$KUBE_VERSION" || die "helm lint"
"$HELM" lint "$CHART" --kube-version "$KUBE_VERSION" -f "$CHART/examples/offsite-s3.yaml" -f "$CHART/examples/snapshot-metadata.yaml" \
  || die "helm lint with examples"
render_all
for v in $VARIANTS; do
  echo "rendered $v: $(grep -c '^kind:' "$WORK/$v.kustomize.yaml") objects (kustomize), $(grep -c '^kind:' "$WORK/$v.helm.yaml") (helm)"
done
# The kubelet and state directories are values: nothing of the defaults may
# stay behind when they move.
"$HELM" template ferry "$CHART" -n ferry --kube-version "$KUBE_VERSION" \
  --set kubeletDir=/var/lib/k0s/kubelet --set stateDir=/srv/ferry > "$WORK/moved.yaml" || die "helm template with moved dirs"
if grep -n '/var/lib/kubelet' "$WORK/moved.yaml"; then die "/var/lib/kubelet is still rendered with kubeletDir moved"; fi
if grep -nE '^ +path: /var/lib/ferry$' "$WORK/moved.yaml"; then die "the default state directory is still a hostPath with stateDir moved"; fi
grep -q -- '--kubelet-registration-path=/var/lib/k0s/kubelet/plugins/ferry.csi.dev/csi.sock' "$WORK/moved.yaml" \
  || die "kubeletDir does not reach the registrar"
grep -q 'path: /srv/ferry' "$WORK/moved.yaml" || die "stateDir does not reach the hostPath"
# snapshotMetadata without a CA bundle is refused, naming the value.
if out=$("$HELM" template ferry "$CHART" -n ferry --kube-version "$KUBE_VERSION" --set snapshotMetadata.enabled=true 2>&1); then
  die "snapshotMetadata.enabled without caCert rendered"
fi
grep -q 'snapshotMetadata.caCert' <<<"$out" || die "the refusal does not name snapshotMetadata.caCert: $out"
echo "PASS: helm lint, helm template and kubectl kustomize"
