#!/usr/bin/env bash
# Build (once) the kube-apiserver and etcd binaries that the integration and
# e2e tests start on loopback. Nothing is downloaded except Go modules through
# the Go module proxy that `go` is configured with; the binaries are cached
# outside the repository, keyed by version, and never committed.
#
# Usage:
#   hack/control-plane.sh              build if missing, print the two paths
#   hack/control-plane.sh --print-env  same, but print KUBE_APISERVER=/ETCD=
#                                      lines on stdout (progress goes to stderr)
#                                      for: eval "$(hack/control-plane.sh --print-env)"
#   hack/control-plane.sh --check      exit 0 (and print as above) if both
#                                      binaries are present and run, else 1;
#                                      never builds (combines with --print-env)
#   hack/control-plane.sh --force      rebuild even if the binaries exist
#
# Environment (all optional):
#   REDISTREAMS_K8S_VERSION   kube-apiserver version (k8s.io/kubernetes tag)
#   REDISTREAMS_ETCD_VERSION  etcd version (go.etcd.io/etcd/server/v3 tag)
#   REDISTREAMS_ENVBIN        binary cache   (default ~/.cache/redistreams/envbin)
#   REDISTREAMS_BUILD_DIR     build work dirs (default ~/.cache/redistreams/build)
#   GO                        the go command  (default: go on PATH, else /usr/local/go/bin/go)
#   GOTOOLCHAIN               passed through; defaults to "local" (no toolchain downloads)
#
# Cold build cost (measured on 2 cores, empty Go caches): etcd about 1.5-2 min,
# kube-apiserver about 6-8 min; about 0.8 GB in the Go module cache and 2.3 GB
# in the Go build cache. Go's own output goes to <build dir>/go.log; its tail is
# printed if a step fails.
set -euo pipefail

# ---- pinned versions (override through the environment) --------------------
K8S_VERSION="${REDISTREAMS_K8S_VERSION:-v1.35.4}"
ETCD_VERSION="${REDISTREAMS_ETCD_VERSION:-v3.6.16}"
# ------------------------------------------------------------------------------

ENVBIN="${REDISTREAMS_ENVBIN:-$HOME/.cache/redistreams/envbin}"
BUILD_ROOT="${REDISTREAMS_BUILD_DIR:-$HOME/.cache/redistreams/build}"

KUBE_APISERVER_BIN="$ENVBIN/k8s-$K8S_VERSION/kube-apiserver"
ETCD_BIN="$ENVBIN/etcd-$ETCD_VERSION/etcd"

# shellcheck source=hack/go-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-build.sh"
hack_args control-plane "--print-env --check --force" "$@"

[[ "$K8S_VERSION" =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] \
  || die "REDISTREAMS_K8S_VERSION must look like v1.35.4, got '$K8S_VERSION'"
K8S_MINOR="${BASH_REMATCH[1]}"
STAGING_VERSION="v0.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}"
[[ "$ETCD_VERSION" =~ ^v3\.[0-9]+\.[0-9]+$ ]] \
  || die "REDISTREAMS_ETCD_VERSION must look like v3.6.16, got '$ETCD_VERSION'"

# True if the binary exists and reports the expected version.
kube_apiserver_ok() {
  [[ -x "$KUBE_APISERVER_BIN" ]] || return 1
  local out
  out="$("$KUBE_APISERVER_BIN" --version 2>/dev/null)" || return 1
  [[ "$out" == "Kubernetes $K8S_VERSION" ]]
}
etcd_ok() {
  [[ -x "$ETCD_BIN" ]] || return 1
  local out
  out="$("$ETCD_BIN" --version 2>/dev/null)" || return 1
  [[ "$out" == *"etcd Version: ${ETCD_VERSION#v}"* ]]
}

report() {
  if [[ "$output" == env ]]; then
    printf 'KUBE_APISERVER=%q\n' "$KUBE_APISERVER_BIN"
    printf 'ETCD=%q\n' "$ETCD_BIN"
  else
    echo "kube-apiserver: $KUBE_APISERVER_BIN"
    echo "etcd: $ETCD_BIN"
  fi
}

if [[ "$check_only" == 1 ]]; then
  if kube_apiserver_ok && etcd_ok; then report; exit 0; fi
  exit 1
fi

# Fast path: nothing to do.
if [[ "$force" == 0 ]] && kube_apiserver_ok && etcd_ok; then
  report
  exit 0
fi

# ---- the Go toolchain ---------------------------------------------------------
go_build_setup .lock

build_etcd() {
  local dir="$BUILD_ROOT/etcd-$ETCD_VERSION" start end out
  log "building etcd $ETCD_VERSION (first time: about 2 min)..."
  start=$SECONDS
  new_wrapper "$dir" local/redistreams-etcd-build
  local gomod
  gomod="$(module_gomod "go.etcd.io/etcd/server/v3@$ETCD_VERSION")"
  log "  go.etcd.io/etcd/server/v3@$ETCD_VERSION needs go $(go_directive "$gomod")"
  run_go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  local pkg=go.etcd.io/etcd/server/v3
  if [[ "$("$GO" list -f '{{.Name}}' "$pkg" 2>/dev/null)" != main ]]; then
    # Older or newer layouts without server/main.go: a three-line main.
    mkdir -p cmd/etcd
    printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' \
      > cmd/etcd/main.go
    run_go mod tidy
    pkg=./cmd/etcd
  fi
  out="$ETCD_BIN.tmp.$$"
  mkdir -p "$(dirname "$ETCD_BIN")"
  run_go build -trimpath -ldflags "-s -w" -o "$out" "$pkg"
  mv -f "$out" "$ETCD_BIN"
  end=$SECONDS
  etcd_ok || die "built $ETCD_BIN but it does not report version $ETCD_VERSION"
  log "  etcd built in $((end - start)) s ($(du -h "$ETCD_BIN" | cut -f1))"
}

build_kube_apiserver() {
  local dir="$BUILD_ROOT/k8s-$K8S_VERSION" start end out
  log "building kube-apiserver $K8S_VERSION (first time: 6-10 min)..."
  start=$SECONDS
  new_wrapper "$dir" local/redistreams-kube-apiserver-build
  local gomod
  gomod="$(module_gomod "k8s.io/kubernetes@$K8S_VERSION")"
  [[ -f "$gomod" ]] || die "no go.mod for k8s.io/kubernetes@$K8S_VERSION"
  log "  k8s.io/kubernetes@$K8S_VERSION needs go $(go_directive "$gomod")"

  # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them
  # with ./staging/src/... paths, which do not apply to a dependent module.
  # Point every such module (required at v0.0.0 or replaced by a staging path)
  # at its published tag v0.<minor>.<patch>. The list is read from the go.mod
  # of the chosen release because it changes between releases.
  local staging=()
  mapfile -t staging < <(awk '
    /^require[[:space:]]*\(/ { inblock = 1; next }
    inblock && /^\)/        { inblock = 0; next }
    inblock && $1 ~ /^k8s\.io\// && $2 == "v0.0.0"                    { print $1; next }
    !inblock && $1 == "require" && $2 ~ /^k8s\.io\// && $3 == "v0.0.0" { print $2; next }
    # replace lines such as "k8s.io/x => ./staging/src/k8s.io/x" (unused ones are harmless)
    $1 ~ /^k8s\.io\// && $2 == "=>" && $3 ~ /^\.\/staging\// { print $1 }
  ' "$gomod" | sort -u)
  ((${#staging[@]} > 0)) || die "found no k8s.io/* v0.0.0 requirements in $gomod"
  log "  replacing ${#staging[@]} staging modules with $STAGING_VERSION"
  local edits=() m
  for m in "${staging[@]}"; do
    edits+=("-replace=$m=$m@$STAGING_VERSION")
  done
  run_go mod edit "${edits[@]}"

  run_go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION"
  log "  modules resolved after $((SECONDS - start)) s; compiling..."

  local vpkg=k8s.io/component-base/version
  local ldflags="-s -w"
  ldflags+=" -X $vpkg.gitVersion=$K8S_VERSION"
  ldflags+=" -X $vpkg.gitMajor=1"
  ldflags+=" -X $vpkg.gitMinor=$K8S_MINOR"
  ldflags+=" -X $vpkg.gitTreeState=clean"
  out="$KUBE_APISERVER_BIN.tmp.$$"
  mkdir -p "$(dirname "$KUBE_APISERVER_BIN")"
  run_go build -trimpath -ldflags "$ldflags" -o "$out" k8s.io/kubernetes/cmd/kube-apiserver
  mv -f "$out" "$KUBE_APISERVER_BIN"
  end=$SECONDS
  kube_apiserver_ok || die "built $KUBE_APISERVER_BIN but it does not report Kubernetes $K8S_VERSION"
  log "  kube-apiserver built in $((end - start)) s ($(du -h "$KUBE_APISERVER_BIN" | cut -f1))"
}

# Another process may have finished the build while we waited for the lock.
if [[ "$force" == 1 ]] || ! etcd_ok; then
  build_etcd
else
  log "etcd $ETCD_VERSION already built"
fi
if [[ "$force" == 1 ]] || ! kube_apiserver_ok; then
  build_kube_apiserver
else
  log "kube-apiserver $K8S_VERSION already built"
fi

report
