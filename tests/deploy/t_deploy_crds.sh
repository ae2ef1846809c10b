#!/usr/bin/env bash
# The rendered VolumeSnapshotClass and SnapshotMetadataService objects, and
# the restore example's, against the upstream CRDs' openAPIV3Schema (ajv,
# unknown fields refused), read from ../shared/crds beside the checkout (or
# FERRY_CRDS_DIR).
source "$(dirname "$0")/lib.sh"
crds=$(crds_dir) || skip "no CRD files in ${FERRY_CRDS_DIR:-$TOP/../shared/crds} (set FERRY_CRDS_DIR): the CRD objects were not checked"
render_all
# shellcheck disable=SC2046
node "$DEPLOY_TESTS/validate.mjs" --only crds --crds "$crds" $(rendered_files) || die "a rendered CRD object does not match its CRD"
# And all three validators together: no object of any kind goes unchecked.
# shellcheck disable=SC2046
node "$DEPLOY_TESTS/validate.mjs" --crds "$crds" $(rendered_files) || die "validate.mjs with every validator"
# The restore walk-through's objects (docs/deploy.md, "Restoring in another
# cluster"): a static VolumeSnapshotContent, its VolumeSnapshot, the PVC.
node "$DEPLOY_TESTS/validate.mjs" --crds "$crds" "$KUST/examples/restore-from-bucket/restore.yaml" \
  || die "examples/restore-from-bucket does not match the API or the CRDs"
echo "PASS: every rendered CRD object matches the CRDs in $crds"
