#!/usr/bin/env bash
# Build ferry's container image from deploy/Containerfile (docs/deploy-image.md).
#
#   deploy/build-image.sh [--engine podman|buildah|docker] [--tag NAME]
#                         [--base IMAGE] [--source URL] [--cache] [--refresh-base]
#
# The labels' values come from the source tree: version from CMakeLists.txt,
# revision from git (the commit, "-dirty" when the build context differs from
# it), source from git's remote "origin" (or --source).
#
# The base (Debian 12 slim) is, in this order: --base IMAGE; debian:bookworm-slim
# when the engine already has it; localhost/ferry-base:bookworm when an
# earlier run made it; or else made now, without any registry, from the
# Debian mirror this machine's apt uses: `mmdebstrap --variant=minbase
# bookworm` into a tarball, imported as localhost/ferry-base:bookworm and kept
# for later runs (--refresh-base makes it anew).  Nothing goes stale for it:
# the image's runtime stage upgrades the base's packages from the mirror.
#
# Without --cache the build keeps no intermediate layers: afterwards the
# engine holds the base and the image, and the image this tag named before,
# if nothing else names it, is removed.  --cache keeps the layers (the -dev
# packages layer saves a minute or two per rebuild) for who iterates.
#
# Exit: 0 built, 1 failed, 2 bad usage.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '4,6p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { echo "build-image: $*" >&2; exit 1; }
bad() { echo "build-image: $*" >&2; exit 2; }

engine=${FERRY_IMAGE_ENGINE:-}
tag='' base='' source='' cache=false refresh=false
while [ $# -gt 0 ]; do
  case "$1" in
  --engine) [ $# -ge 2 ] || usage; engine=$2; shift 2 ;;
  --tag) [ $# -ge 2 ] || usage; tag=$2; shift 2 ;;
  --base) [ $# -ge 2 ] || usage; base=$2; shift 2 ;;
  --source) [ $# -ge 2 ] || usage; source=$2; shift 2 ;;
  --cache) cache=true; shift ;;
  --refresh-base) refresh=true; shift ;;
  -h|--help) usage ;;
  *) bad "unknown argument '$1' (--engine, --tag, --base, --source, --cache, --refresh-base)" ;;
  esac
done
if [ -z "$engine" ]; then
  for e in podman buildah docker; do
    command -v "$e" >/dev/null && { engine=$e; break; }
  done
  [ -n "$engine" ] || die "none of podman, buildah or docker is installed (scripts/install-deps.sh installs podman)"
fi
case "$engine" in podman|buildah|docker) ;; *) bad "--engine '$engine': podman, buildah or docker" ;; esac
command -v "$engine" >/dev/null || die "$engine is not installed"

# ---- labels
version=$(sed -n 's/^project(ferry VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
[ -n "$version" ] || die "no 'project(ferry VERSION ...)' in CMakeLists.txt"
revision=unknown
if git rev-parse --verify -q HEAD >/dev/null 2>&1; then
  revision=$(git rev-parse HEAD)
  # The build context (.dockerignore lets these in) against the commit.
  if [ -n "$(git status --porcelain -- CMakeLists.txt agent bench cli mover proto tests \
              scripts/install-deps.sh deploy/Containerfile deploy/lib-packages.sh deploy/image-slim.sh)" ]; then
    revision=$revision-dirty
  fi
  [ -n "$source" ] || source=$(git remote get-url origin 2>/dev/null || true)
fi
[ -n "$source" ] || echo "build-image: no git remote 'origin': the source label stays empty (--source URL sets it)" >&2
tag=${tag:-localhost/ferry:$version}

# ---- engine helpers
have_image() {
  case "$engine" in
  podman) podman image exists "$1" ;;
  buildah) buildah inspect --type image "$1" >/dev/null 2>&1 ;;
  docker) docker image inspect "$1" >/dev/null 2>&1 ;;
  esac
}
image_id() {
  case "$engine" in
  podman) podman image inspect --format '{{.Id}}' "$1" 2>/dev/null ;;
  buildah) buildah inspect --type image --format '{{.FromImageID}}' "$1" 2>/dev/null ;;
  docker) docker image inspect --format '{{.Id}}' "$1" 2>/dev/null ;;
  esac
}
# Rootful podman on some hosts: no CAP_SYS_RESOURCE, so the default rlimits
# (nofile 1048576) cannot be set; ask for what this shell may have.
ulimits() {
  local n p
  n=$(ulimit -Hn); [ "$n" = unlimited ] && n=1048576
  p=$(ulimit -Hu); { [ "$p" = unlimited ] || [ "$p" -gt 32768 ]; } && p=32768
  echo "--ulimit nofile=$n:$n --ulimit nproc=$p:$p"
}

# ---- the base
FERRY_BASE=localhost/ferry-base:bookworm
t0=$SECONDS
if [ -z "$base" ]; then
  if have_image debian:bookworm-slim; then
    base=debian:bookworm-slim
  elif [ "$refresh" = false ] && have_image "$FERRY_BASE"; then
    base=$FERRY_BASE
  else
    command -v mmdebstrap >/dev/null ||
      die "the engine has no debian:bookworm-slim and mmdebstrap is not installed to make a base (scripts/install-deps.sh installs it)"
    work=$(mktemp -d /var/tmp/ferry-base.XXXXXX)
    trap 'rm -rf "$work"' EXIT
    # apt's Debian 12 entries, one-line (sources.list) or deb822 (.sources).
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] || continue
      case "$f" in
      *.sources)
        awk 'BEGIN { RS = ""; ORS = "" }
             { keep = 0; deb = 0; out = ""; n = split($0, l, "\n")
               for (i = 1; i <= n; i++) {
                 if (l[i] ~ /^[ \t]*#/) continue
                 out = out l[i] "\n"
                 if (l[i] ~ /^Suites:/ && l[i] ~ /[ \t]bookworm/) keep = 1
                 if (l[i] ~ /^Types:/ && l[i] ~ /[ \t]deb([ \t]|$)/) deb = 1
               }
               if (keep && deb) print out "\n" }' "$f" ;;
      *)
        sed 's/\[[^]]*\]//' "$f" | awk '$1 == "deb" && $3 ~ /^bookworm/ { print }' ;;
      esac
    done > "$work/sources"
    [ -s "$work/sources" ] ||
      die "no Debian 12 (bookworm) entry in /etc/apt/sources.list or sources.list.d to make a base from; pass --base IMAGE"
    echo "build-image: making the base $FERRY_BASE with mmdebstrap from:"
    sed 's/^/    /' "$work/sources"
    # merged-/usr set up as debootstrap does (the usrmerge package would pull
    # perl in); documentation and translations left out, as in Debian's slim.
    mmdebstrap --variant=minbase --quiet --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
      --dpkgopt='path-exclude=/usr/share/lintian/*' \
      bookworm "$work/base.tar" "$work/sources" || die "mmdebstrap failed (above)"
    old_base=$(image_id "$FERRY_BASE" || true)
    desc="Debian 12 minbase made by ferry's deploy/build-image.sh with mmdebstrap"
    case "$engine" in
    podman|docker)
      "$engine" import --change "LABEL org.opencontainers.image.description=\"$desc\"" \
        "$work/base.tar" "$FERRY_BASE" >/dev/null ;;
    buildah)
      ctr=$(buildah from scratch)
      buildah add "$ctr" "$work/base.tar" / >/dev/null
      buildah config --label "org.opencontainers.image.description=$desc" "$ctr"
      buildah commit -q "$ctr" "$FERRY_BASE" >/dev/null
      buildah rm "$ctr" >/dev/null ;;
    esac
    rm -rf "$work"
    trap - EXIT
    new_base=$(image_id "$FERRY_BASE")
    if [ -n "$old_base" ] && [ "$old_base" != "$new_base" ]; then
      "$engine" rmi "$old_base" >/dev/null 2>&1 || true
    fi
    base=$FERRY_BASE
    echo "build-image: base made in $((SECONDS - t0)) s"
  fi
else
  have_image "$base" || die "--base $base: the $engine engine has no such image"
fi

# ---- the image
old=$(image_id "$tag" || true)
echo "build-image: $engine builds $tag (version $version, revision $revision) on $base"
args=(-f deploy/Containerfile --build-arg "BASE=$base" --build-arg "VERSION=$version"
      --build-arg "REVISION=$revision" --build-arg "SOURCE=$source" -t "$tag")
t1=$SECONDS
case "$engine" in
podman|buildah)
  # chroot isolation: no OCI runtime for RUN steps (crun cannot run on hosts
  # with hybrid cgroups); host network: apt reaches the mirror as the host does.
  # shellcheck disable=SC2046
  "$engine" build --isolation=chroot --network=host --pull=never --layers="$cache" $(ulimits) \
    "${args[@]}" . ;;
docker)
  "$engine" build "${args[@]}" . ;;
esac
new=$(image_id "$tag") || die "the build left no image $tag"
if [ -n "$old" ] && [ "$old" != "$new" ]; then
  # The image this tag named before, unless something else still uses it.
  "$engine" rmi "$old" >/dev/null 2>&1 || true
fi
case "$engine" in
podman) size="$(($(podman image inspect --format '{{.Size}}' "$tag") / 1000000)) MB" ;;
buildah) size=$(buildah images --format '{{.Size}}' "$tag" | head -n 1) ;;
docker) size="$(($(docker image inspect --format '{{.Size}}' "$tag") / 1000000)) MB" ;;
esac
echo "build-image: built $tag (${new:0:12}, $size) in $((SECONDS - t1)) s"
