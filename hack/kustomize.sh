#!/usr/bin/env bash
# Build (once) the kustomize CLI that renders the GitOps examples (gitops/) the way
# Argo CD and Flux do. Nothing is downloaded except Go modules through the Go module
# proxy that `go` is configured with; the binary is cached outside the repository,
# keyed by version, and never committed.
#
# Usage:
#   hack/kustomize.sh              build if missing, print the path
#   hack/kustomize.sh --print-env  same, but print a KUSTOMIZE= line on stdout
#                                  (progress goes to stderr)
#   hack/kustomize.sh --check      exit 0 (and print as above) if the binary is
#                                  present and runs, else 1; never builds
#   hack/kustomize.sh --force      rebuild even if the binary exists
#
# Environment (all optional):
#   REDISTREAMS_KUSTOMIZE_VERSION  kustomize version (sigs.k8s.io/kustomize/kustomize/v5 tag)
#   REDISTREAMS_ENVBIN             binary cache   (default ~/.cache/redistreams/envbin)
#   REDISTREAMS_BUILD_DIR          build work dirs (default ~/.cache/redistreams/build)
#   GO                             the go command  (default: go on PATH, else /usr/local/go/bin/go)
#   GOTOOLCHAIN                    passed through; defaults to "local" (no toolchain downloads)
#
# Cold build cost (empty Go caches, 2 cores under a load of 7): 165 s, 74 s of CPU;
# 50 s with warm caches. v5.8.2 is the newest release whose go.mod accepts Go 1.26.
set -euo pipefail

# ---- pinned version (override through the environment) -----------------------
KUSTOMIZE_VERSION="${REDISTREAMS_KUSTOMIZE_VERSION:-v5.8.2}"
# ------------------------------------------------------------------------------

ENVBIN="${REDISTREAMS_ENVBIN:-$HOME/.cache/redistreams/envbin}"
BUILD_ROOT="${REDISTREAMS_BUILD_DIR:-$HOME/.cache/redistreams/build}"

KUSTOMIZE_BIN="$ENVBIN/kustomize-$KUSTOMIZE_VERSION/kustomize"

# shellcheck source=hack/go-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-build.sh"
hack_args kustomize "--print-env --check --force" "$@"

[[ "$KUSTOMIZE_VERSION" =~ ^v5\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] \
  || die "REDISTREAMS_KUSTOMIZE_VERSION must look like v5.8.2, got '$KUSTOMIZE_VERSION'"

# True if the binary exists and reports the expected version.
kustomize_ok() {
  [[ -x "$KUSTOMIZE_BIN" ]] || return 1
  local out
  out="$("$KUSTOMIZE_BIN" version 2>/dev/null)" || return 1
  [[ "$out" == "$KUSTOMIZE_VERSION" ]]
}

report() {
  if [[ "$output" == env ]]; then
    printf 'KUSTOMIZE=%q\n' "$KUSTOMIZE_BIN"
  else
    echo "kustomize: $KUSTOMIZE_BIN"
  fi
}

if [[ "$check_only" == 1 ]]; then
  if kustomize_ok; then report; exit 0; fi
  exit 1
fi

if [[ "$force" == 0 ]] && kustomize_ok; then
  report
  exit 0
fi

go_build_setup .kustomize.lock

build_kustomize() {
  local dir="$BUILD_ROOT/kustomize-$KUSTOMIZE_VERSION" start end out gomod
  local module=sigs.k8s.io/kustomize/kustomize/v5
  log "building kustomize $KUSTOMIZE_VERSION..."
  start=$SECONDS
  new_wrapper "$dir" local/redistreams-kustomize-build
  gomod="$(module_gomod "$module@$KUSTOMIZE_VERSION")"
  [[ -f "$gomod" ]] || die "no go.mod for $module@$KUSTOMIZE_VERSION"
  log "  $module@$KUSTOMIZE_VERSION needs go $(go_directive "$gomod")"
  # A dependency's replace directives do not apply in a wrapper module.
  if grep -Eq '^[[:space:]]*replace([[:space:]]|\()' "$gomod"; then
    log "  warning: $gomod has replace directives; they do not apply to this build"
  fi
  run_go get -tool "$module@$KUSTOMIZE_VERSION"
  log "  modules resolved after $((SECONDS - start)) s; compiling..."
  # The release stamp kustomize's own build sets; `kustomize version` prints it.
  local ldflags="-s -w -X sigs.k8s.io/kustomize/api/provenance.version=$KUSTOMIZE_VERSION"
  out="$KUSTOMIZE_BIN.tmp.$$"
  mkdir -p "$(dirname "$KUSTOMIZE_BIN")"
  run_go build -trimpath -ldflags "$ldflags" -o "$out" "$module"
  mv -f "$out" "$KUSTOMIZE_BIN"
  end=$SECONDS
  kustomize_ok || die "built $KUSTOMIZE_BIN but it does not report version $KUSTOMIZE_VERSION"
  log "  kustomize built in $((end - start)) s ($(du -h "$KUSTOMIZE_BIN" | cut -f1))"
}

if [[ "$force" == 1 ]] || ! kustomize_ok; then
  build_kustomize
else
  log "kustomize $KUSTOMIZE_VERSION already built"
fi

report
