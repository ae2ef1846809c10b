#!/usr/bin/env bash
# Every rendered object (kustomize base and overlays, chart with each example)
# against the Kubernetes API's types: kubernetes-models (types, required
# fields, enums) and kubernetes-types + tsc --strict (unknown fields).
source "$(dirname "$0")/lib.sh"
render_all
# shellcheck disable=SC2046
node "$DEPLOY_TESTS/validate.mjs" --only models $(rendered_files) || die "kubernetes-models rejected a rendered object"
# shellcheck disable=SC2046
node "$DEPLOY_TESTS/validate.mjs" --only types $(rendered_files) || die "tsc rejected a rendered object"
echo "PASS: every rendered built-in object is valid"
