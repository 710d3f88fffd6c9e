#!/usr/bin/env bash
# Build (once) kubectl, for the tests that run the documentation's commands
# (tests/docs: the tutorial's `kubectl apply`, `kubectl wait`…) against the local
# control plane. Nothing is downloaded except Go modules through the Go module proxy
# that `go` is configured with: k8s.io/kubectl's command tree behind the same few
# lines of main as k8s.io/kubernetes/cmd/kubectl (which a dependent module cannot
# build: its staging replaces do not apply). Cached outside the repository, keyed by
# version, never committed.
#
# Usage:
#   hack/kubectl.sh              build if missing, print the path
#   hack/kubectl.sh --print-env  same, but print a KUBECTL= line on stdout
#                                (progress goes to stderr)
#   hack/kubectl.sh --check      exit 0 (and print as above) if the binary is
#                                present and runs, else 1; never builds
#   hack/kubectl.sh --force      rebuild even if the binary exists
#
# Environment (all optional):
#   REDISTREAMS_KUBECTL_VERSION  kubectl version (v1.<minor>.<patch>; module k8s.io/kubectl v0.<minor>.<patch>)
#   REDISTREAMS_ENVBIN           binary cache   (default ~/.cache/redistreams/envbin)
#   REDISTREAMS_BUILD_DIR        build work dirs (default ~/.cache/redistreams/build)
#   GO                           the go command  (default: go on PATH, else /usr/local/go/bin/go)
#   GOTOOLCHAIN                  passed through; defaults to "local" (no toolchain downloads)
set -euo pipefail

# ---- pinned version (override through the environment) -----------------------
KUBECTL_VERSION="${REDISTREAMS_KUBECTL_VERSION:-v1.35.4}"
# ------------------------------------------------------------------------------

ENVBIN="${REDISTREAMS_ENVBIN:-$HOME/.cache/redistreams/envbin}"
BUILD_ROOT="${REDISTREAMS_BUILD_DIR:-$HOME/.cache/redistreams/build}"

KUBECTL_BIN="$ENVBIN/kubectl-$KUBECTL_VERSION/kubectl"

# shellcheck source=hack/go-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-build.sh"
hack_args kubectl "--print-env --check --force" "$@"

[[ "$KUBECTL_VERSION" =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] \
  || die "REDISTREAMS_KUBECTL_VERSION must look like v1.35.4, got '$KUBECTL_VERSION'"
KUBECTL_MINOR="${BASH_REMATCH[1]}"
MODULE_VERSION="v0.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}"

kubectl_ok() {
  [[ -x "$KUBECTL_BIN" ]] || return 1
  local out
  out="$("$KUBECTL_BIN" version --client 2>/dev/null)" || return 1
  [[ "$out" == *"Client Version: $KUBECTL_VERSION"* ]]
}

report() {
  if [[ "$output" == env ]]; then
    printf 'KUBECTL=%q\n' "$KUBECTL_BIN"
  else
    echo "kubectl: $KUBECTL_BIN"
  fi
}

if [[ "$check_only" == 1 ]]; then
  if kubectl_ok; then report; exit 0; fi
  exit 1
fi

if [[ "$force" == 0 ]] && kubectl_ok; then
  report
  exit 0
fi

go_build_setup .kubectl.lock

build_kubectl() {
  local dir="$BUILD_ROOT/kubectl-$KUBECTL_VERSION" start end out
  log "building kubectl $KUBECTL_VERSION (first time: a few minutes)..."
  start=$SECONDS
  new_wrapper "$dir" local/redistreams-kubectl-build
  # k8s.io/kubernetes/cmd/kubectl/kubectl.go, as released.
  cat >main.go <<'GO'
package main

import (
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"

	_ "k8s.io/client-go/plugin/pkg/client/auth"
)

func main() {
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		util.CheckErr(err)
	}
}
GO
  run_go get "k8s.io/kubectl@$MODULE_VERSION" "k8s.io/component-base@$MODULE_VERSION" \
    "k8s.io/client-go@$MODULE_VERSION"
  run_go mod tidy
  log "  modules resolved after $((SECONDS - start)) s; compiling..."
  local vpkg=k8s.io/component-base/version
  local ldflags="-s -w"
  ldflags+=" -X $vpkg.gitVersion=$KUBECTL_VERSION"
  ldflags+=" -X $vpkg.gitMajor=1"
  ldflags+=" -X $vpkg.gitMinor=$KUBECTL_MINOR"
  ldflags+=" -X $vpkg.gitTreeState=clean"
  out="$KUBECTL_BIN.tmp.$$"
  mkdir -p "$(dirname "$KUBECTL_BIN")"
  run_go build -trimpath -ldflags "$ldflags" -o "$out" .
  mv -f "$out" "$KUBECTL_BIN"
  end=$SECONDS
  kubectl_ok || die "built $KUBECTL_BIN but it does not report $KUBECTL_VERSION"
  log "  kubectl built in $((end - start)) s ($(du -h "$KUBECTL_BIN" | cut -f1))"
}

if [[ "$force" == 1 ]] || ! kubectl_ok; then
  build_kubectl
else
  log "kubectl $KUBECTL_VERSION already built"
fi

report
