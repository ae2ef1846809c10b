#!/usr/bin/env bash
# helm lint and helm template of the chart (defaults and each example), and
# kubectl kustomize of the base and every overlay, with the pinned tools.
source "$(dirname "$0")/lib.sh"
"$HELM" lint "$CHART" --kube-version "$KUBE_VERSION" || die "helm lint"
"$HELM" lint "$CHART" --kube-version "$KUBE_VERSION" -f "$CHART/examples/offsite-s3.yaml" -f "$CHART/examples/snapshot-metadata.yaml" \
  -f "$CHART/examples/monitoring.yaml" || die "helm lint with examples"
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
# The agents look snapshots up in the repository of each class rendered:
# lookup.conf names the off-site class's repository (kustomize and helm),
# and agent.lookupRepositories comes first, a URL named twice once.
for f in "$WORK/offsite-s3.kustomize.yaml" "$WORK/offsite-s3.helm.yaml"; do
  repo=$(awk '/^kind: VolumeSnapshotClass$/ {c=1} c && /ferry.csi.dev\/repository:/ {print $2; exit}' "$f" | tr -d '"')
  [ -n "$repo" ] || die "$(basename "$f"): no class repository rendered"
  grep -qxF "    lookup-repositories = $repo" "$f" || die "$(basename "$f"): lookup.conf does not name the class repository $repo"
done
"$HELM" template ferry "$CHART" -n ferry --kube-version "$KUBE_VERSION" -f "$CHART/examples/offsite-s3.yaml" \
  --set 'agent.lookupRepositories={file:///mnt/dr-repo,s3://example-ferry-backups/prod?region=eu-west-1}' > "$WORK/lookup.yaml" \
  || die "helm template with agent.lookupRepositories"
grep -qxF '    lookup-repositories = file:///mnt/dr-repo, s3://example-ferry-backups/prod?region=eu-west-1' "$WORK/lookup.yaml" \
  || die "agent.lookupRepositories is not rendered first, once each: $(grep lookup-repositories "$WORK/lookup.yaml")"
if grep -q 'lookup.conf' "$WORK/base.helm.yaml" "$WORK/base.kustomize.yaml"; then
  die "lookup.conf rendered without a class that names a repository"
fi
# A restore StorageClass without a repository is refused, naming the value.
if out=$("$HELM" template ferry "$CHART" -n ferry --kube-version "$KUBE_VERSION" --set restoreStorageClass.create=true 2>&1); then
  die "restoreStorageClass.create without a repository rendered"
fi
grep -q 'restoreStorageClass.repository' <<<"$out" || die "the refusal does not name restoreStorageClass.repository: $out"
echo "PASS: helm lint, helm template and kubectl kustomize"
