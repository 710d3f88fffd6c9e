#!/usr/bin/env bash
# Build (once) crane, go-containerregistry's registry and image tool, which assembles the
# operator's image from tarball layers without a container engine (hack/image.sh).
# Nothing is downloaded except Go modules through the Go module proxy that `go` is
# configured with; the binary is cached outside the repository, keyed by version, and
# never committed.
#
# Usage:
#   hack/crane.sh              build if missing, print the path
#   hack/crane.sh --print-env  same, but print a CRANE= line on stdout
#                              (progress goes to stderr)
#   hack/crane.sh --check      exit 0 (and print as above) if the binary is
#                              present and runs, else 1; never builds
#   hack/crane.sh --force      rebuild even if the binary exists
#
# Environment (all optional):
#   REDISTREAMS_CRANE_VERSION  crane version (github.com/google/go-containerregistry tag)
#   REDISTREAMS_ENVBIN         binary cache   (default ~/.cache/redistreams/envbin)
#   REDISTREAMS_BUILD_DIR      build work dirs (default ~/.cache/redistreams/build)
#   GO                         the go command  (default: go on PATH, else /usr/local/go/bin/go)
#   GOTOOLCHAIN                passed through; defaults to "local" (no toolchain downloads)
#
# Cold build cost: see the CRANE_COLD comment in the Makefile.
set -euo pipefail

# ---- pinned version (override through the environment) -----------------------
CRANE_VERSION="${REDISTREAMS_CRANE_VERSION:-v0.22.1}"
# ------------------------------------------------------------------------------

ENVBIN="${REDISTREAMS_ENVBIN:-$HOME/.cache/redistreams/envbin}"
BUILD_ROOT="${REDISTREAMS_BUILD_DIR:-$HOME/.cache/redistreams/build}"

CRANE_BIN="$ENVBIN/crane-$CRANE_VERSION/crane"

# shellcheck source=hack/go-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-build.sh"
hack_args crane "--print-env --check --force" "$@"

[[ "$CRANE_VERSION" =~ ^v0\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] \
  || die "REDISTREAMS_CRANE_VERSION must look like v0.22.1, got '$CRANE_VERSION'"

# True if the binary exists and reports the expected version.
crane_ok() {
  [[ -x "$CRANE_BIN" ]] || return 1
  local out
  out="$("$CRANE_BIN" version 2>/dev/null)" || return 1
  [[ "$out" == "$CRANE_VERSION" ]]
}

report() {
  if [[ "$output" == env ]]; then
    printf 'CRANE=%q\n' "$CRANE_BIN"
  else
    echo "crane: $CRANE_BIN"
  fi
}

if [[ "$check_only" == 1 ]]; then
  if crane_ok; then report; exit 0; fi
  exit 1
fi

if [[ "$force" == 0 ]] && crane_ok; then
  report
  exit 0
fi

go_build_setup .crane.lock

build_crane() {
  local dir="$BUILD_ROOT/crane-$CRANE_VERSION" start end out gomod
  local module=github.com/google/go-containerregistry
  log "building crane $CRANE_VERSION..."
  start=$SECONDS
  new_wrapper "$dir" local/redistreams-crane-build
  gomod="$(module_gomod "$module@$CRANE_VERSION")"
  [[ -f "$gomod" ]] || die "no go.mod for $module@$CRANE_VERSION"
  log "  $module@$CRANE_VERSION needs go $(go_directive "$gomod")"
  # A dependency's replace directives do not apply in a wrapper module.
  if grep -Eq '^[[:space:]]*replace([[:space:]]|\()' "$gomod"; then
    log "  warning: $gomod has replace directives; they do not apply to this build"
  fi
  run_go get -tool "$module/cmd/crane@$CRANE_VERSION"
  log "  modules resolved after $((SECONDS - start)) s; compiling..."
  # The stamp crane's own release build sets; `crane version` prints it.
  local ldflags="-s -w -X $module/cmd/crane/cmd.Version=$CRANE_VERSION"
  out="$CRANE_BIN.tmp.$$"
  mkdir -p "$(dirname "$CRANE_BIN")"
  run_go build -trimpath -ldflags "$ldflags" -o "$out" "$module/cmd/crane"
  mv -f "$out" "$CRANE_BIN"
  end=$SECONDS
  crane_ok || die "built $CRANE_BIN but it does not report version $CRANE_VERSION"
  log "  crane built in $((end - start)) s ($(du -h "$CRANE_BIN" | cut -f1))"
}

if [[ "$force" == 1 ]] || ! crane_ok; then
  build_crane
else
  log "crane $CRANE_VERSION already built"
fi

report
