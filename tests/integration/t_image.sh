#!/usr/bin/env bash
# The container image: built by deploy/build-image.sh, checked (labels, size,
# one layer, what it holds and lacks, every program and library loads, the
# packages ferry's libraries come from are installed, dpkg's record broken
# only where deploy/image-slim.sh removes on purpose), then the agent run in
# it as a DaemonSet's node plugin and driven by the CSI client
# (tests/csi/test_image.py): volumes with mkfs in the container, a snapshot
# uploaded to a file:// repository, a volume restored from it, `ferry
# restore` by the host's build, `podman stop` with SIGTERM.
#
# The scene, all undone at exit: an XFS with reflink on a loop device (the
# state, mounted at /var/lib/ferry), a kubelet directory made a shared bind
# mount (mounted at its own path, rshared, as a DaemonSet's hostPath with
# Bidirectional propagation), a socket directory (/csi), a repository
# directory (/repos).  At exit: the container removed, mounts under the
# scene unmounted, loop devices over the state file system and over the
# scene's files detached.  The engine keeps the base and the image only.
#
# FERRY_IMAGE_TEST_NO_BUILD=1 tests the image already built (iterating on
# the test itself); without it the image is always built anew.
#
# Exit: 0 pass, 1 fail, 77 skip (not root, or no XFS with reflink here: then
# neither podman's privileged containers nor the scene can run).
set -euo pipefail

: "${FERRY:?FERRY must name the ferry binary (ctest sets it)}"
SRC=${FERRY_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
PY=/usr/bin/python3

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok - $*"; }

[ "$(id -u)" = 0 ] || skip "needs root (privileged containers, loop devices, mounts)"
[ -x "$FERRY" ] || fail "FERRY ($FERRY) is not executable"
command -v podman >/dev/null || fail "podman is not installed (scripts/install-deps.sh installs it)"
command -v mkfs.xfs >/dev/null || fail "mkfs.xfs is missing (scripts/install-deps.sh installs xfsprogs)"
grep -qw xfs /proc/filesystems || modprobe xfs 2>/dev/null || true
grep -qw xfs /proc/filesystems || skip "this kernel has no XFS"
"$PY" -c 'import grpc' 2>/dev/null || fail "$PY has no grpc module (python3-grpcio)"

version=$(sed -n 's/^project(ferry VERSION \([0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")
IMAGE=localhost/ferry:$version
CONTAINER=ferry-image-test-$$
T=$(mktemp -d /var/tmp/ferry-image.XXXXXX)

# podman flags this host needs: runc (crun fails under hybrid cgroups) and
# rlimits this shell may set (no CAP_SYS_RESOURCE for the defaults).
n=$(ulimit -Hn); [ "$n" = unlimited ] && n=1048576
p=$(ulimit -Hu); { [ "$p" = unlimited ] || [ "$p" -gt 32768 ]; } && p=32768
RUN_FLAGS="--ulimit nofile=$n:$n --ulimit nproc=$p:$p"
command -v runc >/dev/null && RUN_FLAGS="--runtime runc $RUN_FLAGS"

mounts_under() {
  awk -v p="$1/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

py=
state_dev=
cleanup() {
  local rc=$? l f m _
  set +e
  if [ -n "$py" ] && kill -0 "$py" 2>/dev/null; then
    kill -TERM "$py" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$py" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$py" 2>/dev/null
  fi
  if podman container exists "$CONTAINER" 2>/dev/null; then
    if [ "$rc" != 0 ]; then
      echo "---- the agent's log (last 60 lines)"
      podman logs "$CONTAINER" 2>&1 | tail -n 60
    fi
    podman rm -f -t 0 "$CONTAINER" >/dev/null 2>&1 || podman rm -f "$CONTAINER" >/dev/null
  fi
  # Publish mounts propagated to the host, the host's own mounts of the run.
  for m in $(mounts_under "$T/kubelet") $(mounts_under "$T/work"); do
    echo "cleanup: unmounting $m"
    umount "$m" 2>/dev/null || umount -l "$m"
  done
  while mountpoint -q "$T/kubelet" 2>/dev/null; do umount "$T/kubelet" 2>/dev/null || umount -l "$T/kubelet"; done
  # Loop devices over files on the state fs (the agent's volumes: their path
  # as the container named it means nothing here, their device does) and
  # over the run's own files.
  losetup -n -l -O NAME,BACK-MAJ:MIN,BACK-FILE 2>/dev/null | while read -r l m f; do
    [ "$f" = "$T/state.img" ] && continue     # below, once unmounted
    if { [ -n "$state_dev" ] && [ "$m" = "$state_dev" ]; } || [ "${f#"$T"/}" != "$f" ]; then
      echo "cleanup: detaching $l ($f)"; losetup -d "$l"
    fi
  done
  if mountpoint -q "$T/state" 2>/dev/null; then
    umount "$T/state" 2>/dev/null || umount -l "$T/state"
  fi
  for l in $(losetup -j "$T/state.img" -O NAME -n 2>/dev/null); do losetup -d "$l"; done
  rm -rf "$T"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the image
t0=$SECONDS
reused=
if [ "${FERRY_IMAGE_TEST_NO_BUILD:-}" = 1 ] && podman image exists "$IMAGE"; then
  reused=1
  echo "FERRY_IMAGE_TEST_NO_BUILD=1: testing the $IMAGE already built, as it is"
else
  echo "building $IMAGE (deploy/build-image.sh; log in the scene, its tail on failure)"
  if ! bash "$SRC/deploy/build-image.sh" --tag "$IMAGE" >"$T/build.log" 2>&1; then
    tail -n 60 "$T/build.log"
    fail "deploy/build-image.sh failed"
  fi
  grep '^build-image:' "$T/build.log"
  ok "image built in $((SECONDS - t0)) s"
fi

inspect() { podman image inspect --format "$1" "$IMAGE"; }
label() { inspect "{{index .Labels \"org.opencontainers.image.$1\"}}"; }
[ "$(label version)" = "$version" ] || fail "label version: '$(label version)', want '$version'"
if git -C "$SRC" rev-parse --verify -q HEAD >/dev/null 2>&1; then
  head=$(git -C "$SRC" rev-parse HEAD)
  case "$(label revision)" in
  "$head"|"$head-dirty") ;;
  *) [ -n "$reused" ] || fail "label revision: '$(label revision)', want ${head}[-dirty]"
     echo "note: the image reused was built from $(label revision), the tree is at $head" ;;
  esac
  want_src=$(git -C "$SRC" remote get-url origin 2>/dev/null || true)
  [ "$(label source)" = "$want_src" ] || fail "label source: '$(label source)', want '$want_src'"
fi
[ "$(inspect '{{json .Config.Entrypoint}}')" = '["/usr/local/bin/ferry"]' ] ||
  fail "entrypoint: $(inspect '{{json .Config.Entrypoint}}')"
[ "$(inspect '{{len .RootFS.Layers}}')" = 1 ] || fail "$(inspect '{{len .RootFS.Layers}}') layers, want 1 (flattened)"
size=$(inspect '{{.Size}}')
ok "labels version $(label version), revision $(label revision), source '$(label source)'; entrypoint ferry; one layer"
[ "$size" -le 120000000 ] || fail "the image is $((size / 1000000)) MB, over the 120 MB budget (docs/deploy-image.md)"
ok "size $((size / 1000000)) MB ($size bytes) <= 120 MB"

# What is in the image, asked inside it (sh -s: scripts from the host on stdin).
in_image() { podman run --rm -i $RUN_FLAGS --network=none --entrypoint /bin/sh "$IMAGE" -s "$@"; }
[ "$(in_image <<<'ferry --version')" = "ferry $version" ] || fail "ferry --version in the image: $(in_image <<<'ferry --version' 2>&1)"
libs=$(in_image /usr/local/bin/ferry <"$SRC/deploy/lib-packages.sh") || fail "ferry's libraries in the image: $libs"
missing=$(in_image $libs <<<'for p; do dpkg-query -W -f="\${Status}\n" "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"; done')
[ -z "$missing" ] || fail "packages of ferry's libraries not installed in the image: $missing"
ok "ferry loads every library, from $(echo "$libs" | wc -w) installed packages: $(echo $libs)"
# The programs the agent runs, and the tools kept for hooks and debugging.
out=$(in_image <<<'mkfs.ext4 -V 2>&1 | head -n 1; mkfs.xfs -V; for c in sh mount umount losetup blkid fsfreeze; do command -v $c >/dev/null || echo "missing $c"; done') ||
  fail "running mkfs in the image: $out"
case "$out" in *missing*) fail "$out" ;; esac
ok "in the image: $(echo "$out" | tr '\n' ';')"
# The CA bundle libcurl verifies S3 endpoints with (Debian's libcurl is
# built with --with-ca-bundle=/etc/ssl/certs/ca-certificates.crt).
n=$(in_image <<<'grep -c "BEGIN CERTIFICATE" /etc/ssl/certs/ca-certificates.crt' || true)
[ "${n:-0}" -gt 50 ] || fail "the image has no CA bundle for https S3 endpoints (/etc/ssl/certs/ca-certificates.crt: '${n:-}' certificates)"
ok "CA bundle for https endpoints: $n certificates"
# What must not be there: python3 (xfsprogs would pull it), perl, apt.
out=$(in_image <<<'for c in python3 perl apt-get; do command -v $c; done; dpkg-query -W -f="\${Package}\n" | grep -E "^(python3|perl|libperl|apt$|libicu.*-dev)" || true')
[ -z "$out" ] || fail "in the image, and should not be: $out"
ok "no python3, perl or apt in the image"
# Every ELF file loads (a purge that took a library someone needs shows here).
out=$(in_image <<'EOF'
find / -xdev -type f \( -perm -u+x -o -name '*.so*' \) 2>/dev/null | while read -r f; do
  [ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ] || continue
  ldd "$f" 2>/dev/null | grep -q 'not found' && echo "$f: $(ldd "$f" | grep 'not found' | tr -s ' \t\n' ' ')"
done
true
EOF
)
[ -z "$out" ] || fail "programs or libraries in the image that cannot load:
$out"
ok "every program and library in the image loads"
# dpkg's record: a dependency is unmet only where image-slim.sh removes a
# package on purpose (or, for xfsprogs, leaves python3 out).
purged=$(sed -n '/^purge1="/,/"$/p; /^purge2="/p' "$SRC/deploy/image-slim.sh" | tr -d '"' | sed 's/^purge[12]=//' | tr -s ' \t\n' ' ')
[ -n "$purged" ] || fail "no purge1=/purge2= lists in deploy/image-slim.sh"
podman run --rm $RUN_FLAGS --network=none --entrypoint /bin/cat "$IMAGE" /var/lib/dpkg/status >"$T/status"
"$PY" - "$T/status" $purged python3 <<'EOF' || fail "dpkg's record in the image (above)"
import re, sys
text = open(sys.argv[1]).read()
allowed = set(sys.argv[2:])
pkgs, provided = {}, set()
for stanza in text.strip().split("\n\n"):
    f, key = {}, None
    for line in stanza.splitlines():
        if line[:1] in " \t" and key:
            f[key] += " " + line.strip()
        else:
            key, _, val = line.partition(":")
            f[key] = val.strip()
    if "install ok installed" not in f.get("Status", ""):
        continue
    pkgs[f["Package"]] = f
    for p in filter(None, f.get("Provides", "").split(",")):
        provided.add(re.sub(r"\s*\(.*", "", p.strip()))
names = set(pkgs) | provided
bad = []
for name, f in sorted(pkgs.items()):
    for field in ("Pre-Depends", "Depends"):
        for dep in filter(None, f.get(field, "").split(",")):
            alts = [re.sub(r"[\s(].*", "", a.strip()).split(":")[0] for a in dep.split("|")]
            if any(a in names for a in alts):
                continue
            if any(a in allowed for a in alts):
                continue
            bad.append("%s %s %s" % (name, field, dep.strip()))
for line in bad:
    print("unmet, and not removed on purpose:", line)
still = sorted(a for a in allowed if a in pkgs)
for p in still:
    print("still installed, though image-slim.sh removes it:", p)
print("dpkg: %d packages installed; unmet dependencies only on removed packages: %s"
      % (len(pkgs), "yes" if not bad else "NO"))
sys.exit(1 if bad or still else 0)
EOF
ok "dpkg's record matches what image-slim.sh removes"

# ---- the scene
mkdir -p "$T/state" "$T/kubelet" "$T/work" "$T/csi" "$T/repos"
truncate -s 4G "$T/state.img"
mkfs.xfs -q -m reflink=1 "$T/state.img" 2>"$T/mkfs.err" || skip "mkfs.xfs -m reflink=1 failed: $(cat "$T/mkfs.err")"
mount -t xfs -o loop "$T/state.img" "$T/state" 2>"$T/mount.err" || skip "cannot loop-mount XFS here: $(cat "$T/mount.err")"
state_dev=$(awk -v p="$T/state" '$5 == p { print $3 }' /proc/self/mountinfo)
# kubelet's directory on a node: a shared mount, so that what the plugin
# mounts under it (Bidirectional propagation) reaches the host and the pods.
mount --bind "$T/kubelet" "$T/kubelet"
mount --make-rshared "$T/kubelet"
chmod 0750 "$T/kubelet"
bash "$SRC/tests/csi/gen_stubs.sh" "$T/stubs"

export CSI_STUBS="$T/stubs" CSI_STATE_ROOT="$T/state" CSI_KUBELET_ROOT="$T/kubelet" CSI_WORK="$T/work"
export FERRY_IMAGE="$IMAGE" FERRY_IMAGE_VERSION="$version" FERRY_IMAGE_CONTAINER="$CONTAINER"
export FERRY_IMAGE_CSI_DIR="$T/csi" FERRY_IMAGE_REPOS="$T/repos" FERRY_IMAGE_RUN_FLAGS="$RUN_FLAGS"
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$SRC/tests/csi"
echo "scene: $T (state XFS on $(losetup -j "$T/state.img" -O NAME -n), device $state_dev)"
"$PY" -u "$SRC/tests/csi/test_image.py" -v "$@" &
py=$!
rc=0
wait "$py" || rc=$?
py=
[ "$rc" = 0 ] || fail "tests/csi/test_image.py"
# What the run must not leave: the container, loop devices over its volumes.
podman container exists "$CONTAINER" && podman rm "$CONTAINER" >/dev/null
left=$(losetup -n -l -O NAME,BACK-MAJ:MIN | awk -v d="$state_dev" '$2 == d { print $1 }')
[ -z "$left" ] || fail "loop devices over the agent's volumes left attached after every unpublish: $left"
ok "container removed; no loop device left over the agent's volumes"
