#!/usr/bin/env bash
# Build (once) the Helm CLI used to render and install the operator's chart.
# Nothing is downloaded except Go modules through the Go module proxy that `go`
# is configured with; the binary is cached outside the repository, keyed by
# version, and never committed.
#
# Usage:
#   hack/helm.sh              build if missing, print the path
#   hack/helm.sh --print-env  same, but print a HELM= line on stdout (progress
#                             goes to stderr) for: eval "$(hack/helm.sh --print-env)"
#   hack/helm.sh --check      exit 0 (and print as above) if the binary is
#                             present and runs, else 1; never builds
#                             (combines with --print-env)
#   hack/helm.sh --force      rebuild even if the binary exists
#
# Environment (all optional):
#   REDISTREAMS_HELM_VERSION  Helm version (helm.sh/helm/v3 tag)
#   REDISTREAMS_ENVBIN        binary cache   (default ~/.cache/redistreams/envbin)
#   REDISTREAMS_BUILD_DIR     build work dirs (default ~/.cache/redistreams/build)
#   GO                        the go command  (default: go on PATH, else /usr/local/go/bin/go)
#   GOTOOLCHAIN               passed through; defaults to "local" (no toolchain downloads)
#
# Cold build cost (measured on 2 cores, empty Go caches): about 2.5-3 min; about
# 0.4 GB in the Go module cache and 0.7 GB in the Go build cache. Go's own
# output goes to <build dir>/go.log; its tail is printed if a step fails.
set -euo pipefail

# ---- pinned version (override through the environment) -----------------------
HELM_VERSION="${REDISTREAMS_HELM_VERSION:-v3.22.0}"
# ------------------------------------------------------------------------------

ENVBIN="${REDISTREAMS_ENVBIN:-$HOME/.cache/redistreams/envbin}"
BUILD_ROOT="${REDISTREAMS_BUILD_DIR:-$HOME/.cache/redistreams/build}"

HELM_BIN="$ENVBIN/helm-$HELM_VERSION/helm"

# shellcheck source=hack/go-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-build.sh"
hack_args helm "--print-env --check --force" "$@"

[[ "$HELM_VERSION" =~ ^v3\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] \
  || die "REDISTREAMS_HELM_VERSION must look like v3.22.0, got '$HELM_VERSION'"

# True if the binary exists and reports the expected version. `helm version
# --short` prints the version, plus "+g<commit>" when a commit was stamped in.
helm_ok() {
  [[ -x "$HELM_BIN" ]] || return 1
  local out
  out="$("$HELM_BIN" version --short 2>/dev/null)" || return 1
  [[ "$out" == "$HELM_VERSION" || "$out" == "$HELM_VERSION+"* ]]
}

report() {
  if [[ "$output" == env ]]; then
    printf 'HELM=%q\n' "$HELM_BIN"
  else
    echo "helm: $HELM_BIN"
  fi
}

if [[ "$check_only" == 1 ]]; then
  if helm_ok; then report; exit 0; fi
  exit 1
fi

# Fast path: nothing to do.
if [[ "$force" == 0 ]] && helm_ok; then
  report
  exit 0
fi

# ---- the Go toolchain ---------------------------------------------------------
go_build_setup .helm.lock

build_helm() {
  local dir="$BUILD_ROOT/helm-$HELM_VERSION" start end out
  log "building helm $HELM_VERSION (first time: about 3 min)..."
  start=$SECONDS
  new_wrapper "$dir" local/redistreams-helm-build
  local gomod
  gomod="$(module_gomod "helm.sh/helm/v3@$HELM_VERSION")"
  [[ -f "$gomod" ]] || die "no go.mod for helm.sh/helm/v3@$HELM_VERSION"
  log "  helm.sh/helm/v3@$HELM_VERSION needs go $(go_directive "$gomod")"
  # Replace directives of a dependency are ignored by `go build` in a wrapper
  # module. Releases up to v3.22.0 have none; if a later one does, the build
  # below may fail or pick other versions than Helm's own release did.
  if grep -Eq '^[[:space:]]*replace([[:space:]]|\()' "$gomod"; then
    log "  warning: $gomod has replace directives; they do not apply to this build"
  fi

  run_go get -tool "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  log "  modules resolved after $((SECONDS - start)) s; compiling..."

  # Same stamps as Helm's Makefile for a tagged release (no git commit: the
  # module zip has none). The Kubernetes version that `helm template` and
  # `helm lint` assume by default (.Capabilities.KubeVersion) is derived from
  # the client-go version, as the Makefile does; unstamped it would be v1.20.
  local cgo kmajor kminor
  cgo="$("$GO" list -m -f '{{.Version}}' k8s.io/client-go 2>>"$GOLOG")" \
    || die "cannot read the k8s.io/client-go version (see $GOLOG)"
  [[ "$cgo" =~ ^v0\.([0-9]+)\.[0-9]+ ]] || die "unexpected k8s.io/client-go version '$cgo'"
  kmajor=1
  kminor="${BASH_REMATCH[1]}"
  log "  k8s.io/client-go $cgo: default Kubernetes version v$kmajor.$kminor"

  local vpkg=helm.sh/helm/v3/internal/version
  local ldflags="-s -w"
  ldflags+=" -X $vpkg.version=$HELM_VERSION"
  ldflags+=" -X $vpkg.metadata="
  ldflags+=" -X $vpkg.gitTreeState=clean"
  local p
  for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $p.k8sVersionMajor=$kmajor -X $p.k8sVersionMinor=$kminor"
  done
  out="$HELM_BIN.tmp.$$"
  mkdir -p "$(dirname "$HELM_BIN")"
  run_go build -trimpath -ldflags "$ldflags" -o "$out" helm.sh/helm/v3/cmd/helm
  mv -f "$out" "$HELM_BIN"
  end=$SECONDS
  helm_ok || die "built $HELM_BIN but it does not report version $HELM_VERSION"
  log "  helm built in $((end - start)) s ($(du -h "$HELM_BIN" | cut -f1))"
}

# Another process may have finished the build while we waited for the lock.
if [[ "$force" == 1 ]] || ! helm_ok; then
  build_helm
else
  log "helm $HELM_VERSION already built"
fi

report
