#!/usr/bin/env bash
# Build the operator's container image without a container engine: a Debian root file
# system made by mmdebstrap from the Debian mirror apt is configured with (the base
# layer, cached), the wheel installed with the `operator` extra into a venv inside it (the
# app layer), assembled by crane (hack/crane.sh) into an image archive that `crane push`,
# `docker load` and `kind load image-archive` accept.
#
# Usage (as root: mmdebstrap and chroot need it; make image runs it with sudo):
#   hack/image.sh WHEEL OUT.tar   build the image from WHEEL into OUT.tar, tagged
#                                 redistreams:<the wheel's version>
#   hack/image.sh --base          build (or find) the cached base layer, print its path
#
# Environment (all optional):
#   REDISTREAMS_IMAGE_CACHE  base layers and work dirs (default ~/.cache/redistreams/image)
#   REDISTREAMS_IMAGE_PIP_CACHE  pip's cache for the app layer (default ~/.cache/redistreams/pip-image)
#   REDISTREAMS_IMAGE_CONSTRAINTS  pinned versions of the dependencies (default: constraints.txt,
#                                  the set the tests run; a dependency it does not pin is resolved)
#
# The base layer is keyed on everything that makes it (suite, variant, packages, options,
# hooks), so changing BASE_* below builds a new one; an old one is never
# refreshed with the mirror's newer packages (delete the cache to take them).
# Times: see the `image` target in the Makefile.
set -euo pipefail

# ---- what the base layer is made of -------------------------------------------
# Debian 12: its python3 is 3.11, the version the project supports and tests.
BASE_SUITE=bookworm
# essential: no apt or init in the image, only what dpkg needs plus these packages.
BASE_VARIANT=essential
BASE_PACKAGES=python3,python3-venv,ca-certificates
# No device nodes in the layer (runtimes mount /dev; rootless ones cannot mknod them).
BASE_OPTS=(
  --skip=output/dev
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*'
)
# The non-root user the image runs as (the chart's securityContext asks for 65532 too).
IMAGE_UID=65532
# Merged /usr set up by mmdebstrap's own hook, with usr-is-merged: the usrmerge package
# would bring perl (50 MB) into the image.
# The essential variant has no useradd (package passwd): the entries are written as is.
BASE_HOOKS=(
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  --customize-hook="echo 'redistreams:x:$IMAGE_UID:' >>\"\$1/etc/group\""
  --customize-hook="echo 'redistreams:x:$IMAGE_UID:$IMAGE_UID::/nonexistent:/usr/sbin/nologin' >>\"\$1/etc/passwd\""
)
# -------------------------------------------------------------------------------
VENV=/opt/redistreams
IMAGE_PATH="$VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

CACHE="${REDISTREAMS_IMAGE_CACHE:-$HOME/.cache/redistreams/image}"
PIP_CACHE="${REDISTREAMS_IMAGE_PIP_CACHE:-$HOME/.cache/redistreams/pip-image}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONSTRAINTS="${REDISTREAMS_IMAGE_CONSTRAINTS:-$HERE/../constraints.txt}"

log() { echo "image: $*" >&2; }
die() { log "error: $*"; exit 1; }

[[ "$(id -u)" == 0 ]] || die "needs root (mmdebstrap --mode=root and chroot); run it with sudo"
command -v mmdebstrap >/dev/null || die "mmdebstrap is not installed (make image-deps installs it with apt)"

# The host's own Debian sources: the image is built from the mirror this machine uses.
host_sources() {
  local f
  for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
    [[ -s "$f" ]] && { echo "$f"; return; }
  done
  die "no Debian sources file found in /etc/apt"
}

base_layer() {
  local key out start
  key="$(printf '%s\n' "$BASE_SUITE" "$BASE_VARIANT" "$BASE_PACKAGES" "${BASE_OPTS[@]}" "${BASE_HOOKS[@]}" \
    "$(dpkg --print-architecture)" | sha256sum | cut -c1-16)"
  out="$CACHE/base-$BASE_SUITE-$key.tar"
  if [[ -s "$out" ]]; then echo "$out"; return; fi
  mkdir -p "$CACHE"
  exec 8>"$CACHE/.base.lock"
  flock 8
  if [[ -s "$out" ]]; then echo "$out"; return; fi
  log "building the Debian $BASE_SUITE base layer ($BASE_PACKAGES); first time: minutes..."
  start=$SECONDS
  # SOURCE_DATE_EPOCH: the same packages give the same tar (mmdebstrap's reproducibility).
  SOURCE_DATE_EPOCH=0 mmdebstrap --quiet --mode=root --format=tar --variant="$BASE_VARIANT" --include="$BASE_PACKAGES" \
    "${BASE_OPTS[@]}" "${BASE_HOOKS[@]}" "$BASE_SUITE" "$out.tmp" "$(host_sources)" >&2
  mv -f "$out.tmp" "$out"
  find "$CACHE" -maxdepth 1 -name 'base-*.tar' ! -path "$out" -delete  # older package lists
  log "  base layer built in $((SECONDS - start)) s ($(du -h "$out" | cut -f1))"
  echo "$out"
}

if [[ "${1:-}" == --base ]]; then
  base_layer
  exit 0
fi
[[ $# == 2 ]] || die "usage: hack/image.sh WHEEL OUT.tar (or --base)"
WHEEL="$(realpath "$1")"
OUT="$(realpath -m "$2")"
[[ -f "$WHEEL" && "$WHEEL" == *.whl ]] || die "not a wheel: $1"
[[ -f "$CONSTRAINTS" ]] || die "no constraints file: $CONSTRAINTS (REDISTREAMS_IMAGE_CONSTRAINTS)"
VERSION="$(basename "$WHEEL" | cut -d- -f2)"
IMAGE="redistreams:$VERSION"

start=$SECONDS
BASE="$(base_layer)"
eval "$("$HERE/crane.sh" --print-env)"

mkdir -p "$CACHE"
WORK="$(mktemp -d "$CACHE/work.XXXXXX")"
ROOTFS="$WORK/rootfs"
REGISTRY_PID=""
# pip's cache lives in the chroot while pip runs there: put it back whatever happens.
restore_pip_cache() {
  if [[ -d "$ROOTFS/tmp/pip-cache" ]]; then mv "$ROOTFS/tmp/pip-cache" "$PIP_CACHE"; fi
}
cleanup() {
  if [[ -n "$REGISTRY_PID" ]]; then kill "$REGISTRY_PID" 2>/dev/null || true; fi
  restore_pip_cache
  rm -rf "$WORK"
}
trap cleanup EXIT

# The app layer: the wheel installed with the `operator` extra into a venv by the image's
# own python3 and pip, in a chroot of the base layer (dependencies are resolved for that
# Python: Debian's 3.11.2 needs async-timeout where the host's 3.11.7 does not). pip in
# the chroot reaches the package index with the host's DNS settings and CA bundle, and
# keeps its cache in $PIP_CACHE (moved in and out, same file system).
mkdir -p "$ROOTFS"
tar -C "$ROOTFS" --numeric-owner -xpf "$BASE"
mkdir -p "$PIP_CACHE" "$ROOTFS/tmp/in"
cp "$WHEEL" "$ROOTFS/tmp/in/"
cp "$CONSTRAINTS" "$ROOTFS/tmp/in/constraints.txt"
# The few device nodes a runtime would provide, for the chroot only (not in a layer).
mkdir -p "$ROOTFS/dev"
for dev in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9; do
  IFS=: read -r name major minor <<<"$dev"
  [[ -e "$ROOTFS/dev/$name" ]] || mknod -m 666 "$ROOTFS/dev/$name" c "$major" "$minor"
done
cp -L /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
[[ -f /etc/hosts ]] && cp -L /etc/hosts "$ROOTFS/etc/hosts"
pip_env=(PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CACHE_DIR=/tmp/pip-cache)
host_ca="$(ls /etc/ssl/certs/ca-certificates.crt 2>/dev/null || true)"
if [[ -n "$host_ca" ]]; then cp -L "$host_ca" "$ROOTFS/tmp/in/ca.crt"; pip_env+=(PIP_CERT=/tmp/in/ca.crt); fi
for var in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST PIP_DEFAULT_TIMEOUT; do
  [[ -n "${!var:-}" ]] && pip_env+=("$var=${!var}")
done
mv "$PIP_CACHE" "$ROOTFS/tmp/pip-cache"
in_image() { chroot "$ROOTFS" /usr/bin/env -i PATH="$IMAGE_PATH" HOME=/root "$@"; }
in_image python3 -m venv "$VENV"
in_image "${pip_env[@]}" "$VENV/bin/pip" install -q -c /tmp/in/constraints.txt "/tmp/in/$(basename "$WHEEL")[operator]" >&2
restore_pip_cache
in_image "$VENV/bin/pip" uninstall -q -y pip setuptools >&2  # not needed at run time
in_image redistreams --version >/dev/null || die "the installed CLI does not start in the image"
# Same bytes for the same wheels: sorted, no user names, times of the last commit.
EPOCH="$(git -C "$HERE/.." log -1 --format=%ct 2>/dev/null || echo 0)"
tar -C "$ROOTFS" --sort=name --mtime="@$EPOCH" --clamp-mtime --owner=0 --group=0 --numeric-owner \
  --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime -cf "$WORK/app.tar" ".$VENV"

# crane edits an image's config only in a registry: one of its own, in memory, on loopback.
"$CRANE" registry serve --address 127.0.0.1:0 >"$WORK/registry.log" 2>&1 &
REGISTRY_PID=$!
for _ in $(seq 100); do
  port="$(sed -n 's/.*serving on port \([0-9]*\).*/\1/p' "$WORK/registry.log")"
  [[ -n "$port" ]] && break
  sleep 0.1
done
[[ -n "$port" ]] || die "crane registry did not start: $(cat "$WORK/registry.log")"
STAGE="127.0.0.1:$port/redistreams:$VERSION"
arch="$(dpkg --print-architecture)"
"$CRANE" append --oci-empty-base -f "$BASE" -f "$WORK/app.tar" -t "$STAGE" >/dev/null 2>"$WORK/crane.log" \
  || die "crane append failed: $(cat "$WORK/crane.log")"
mkdir -p "$(dirname "$OUT")"
"$CRANE" mutate "$STAGE" --set-platform "linux/$arch" \
  --entrypoint redistreams --cmd operator --user "$IMAGE_UID:$IMAGE_UID" --workdir / \
  -e "PATH=$IMAGE_PATH" -e PYTHONUNBUFFERED=1 -e PYTHONDONTWRITEBYTECODE=1 \
  -l org.opencontainers.image.title=redistreams \
  -l "org.opencontainers.image.description=Declarative Redis Streams topics and consumer groups: operator and CLI" \
  -l "org.opencontainers.image.version=$VERSION" \
  -l "org.opencontainers.image.revision=$(git -C "$HERE/.." rev-parse HEAD 2>/dev/null || echo unknown)" \
  -l org.opencontainers.image.licenses=Apache-2.0 \
  -l "org.opencontainers.image.base.name=debian:$BASE_SUITE" \
  -t "$IMAGE" -o "$OUT.tmp" >/dev/null 2>"$WORK/crane.log" || die "crane mutate failed: $(cat "$WORK/crane.log")"
mv -f "$OUT.tmp" "$OUT"
log "$IMAGE -> $OUT ($(du -h "$OUT" | cut -f1)) in $((SECONDS - start)) s"
