#!/usr/bin/env bash
# Build (once) tests/interop/goclient: a small Go program that drives the real Go
# driver github.com/covrom/redispubsub through gocloud.dev/pubsub, for the interop
# tests and the benchmarks. Only Go modules are downloaded (through the Go module
# proxy `go` is configured with), checked against the committed go.sum; the binary
# is cached outside the repository under a hash of go.mod, go.sum and main.go, so
# an edit to any of them builds a new one.
#
# Usage:
#   hack/go-interop.sh          build if missing; the binary's path is the last
#                               line of stdout (progress goes to stderr)
#   hack/go-interop.sh --force  rebuild even if the binary exists
#
# Exit codes: 0 built or cached, 1 the build failed, 3 no Go toolchain found.
#
# Environment (all optional):
#   REDISTREAMS_CACHE  cache root (default ~/.cache/redistreams); the binary is
#                      <cache>/go-interop/<hash>/goclient
#   GO                 the go command (default: go on PATH, else /usr/local/go/bin/go)
#   GOTOOLCHAIN        passed through; defaults to "local" (no toolchain downloads)
#
# Cold build (empty Go caches): about 1-2 min, mostly module downloads; then
# instant. Go's output goes to <cache>/go-interop/go.log; its tail is printed if a
# step fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/tests/interop/goclient"
FILES=(go.mod go.sum main.go)
CACHE="${REDISTREAMS_CACHE:-$HOME/.cache/redistreams}"
OUT_ROOT="$CACHE/go-interop"

# shellcheck source=hack/go-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-build.sh"
hack_args go-interop "--force" "$@"

for f in "${FILES[@]}"; do
  [[ -f "$SRC/$f" ]] || die "missing $SRC/$f"
done
HASH="$(cd "$SRC" && cat "${FILES[@]}" | sha256sum | cut -c1-16)"
BIN="$OUT_ROOT/$HASH/goclient"

bin_ok() { [[ -x "$BIN" ]] && "$BIN" help >/dev/null 2>&1; }

# Fast path: nothing to do (no Go toolchain needed).
if [[ "$force" == 0 ]] && bin_ok; then
  echo "$BIN"
  exit 0
fi

# Same lookup as go-build.sh, but a missing toolchain is its own exit code so the
# test fixture can skip instead of failing.
if [[ -z "${GO:-}" ]] && ! command -v go >/dev/null 2>&1 && [[ ! -x /usr/local/go/bin/go ]]; then
  log "error: no Go toolchain found (set GO=/path/to/go); Go >= 1.26 is needed"
  exit 3
fi

ENVBIN="$OUT_ROOT"
BUILD_ROOT="$OUT_ROOT"
go_build_setup .go-interop.lock   # GOTOOLCHAIN=local, CGO_ENABLED=0, flock

# The driver is not in the checksum database; the committed go.sum pins it.
export GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}github.com/covrom/redispubsub"

build() {
  local start=$SECONDS tmp
  tmp="$(mktemp -d "$OUT_ROOT/build.XXXXXX")"
  # shellcheck disable=SC2064  # expand $tmp now
  trap "rm -rf '$tmp'" EXIT
  GOLOG="$OUT_ROOT/go.log"
  : >"$GOLOG"
  log "building $BIN (first time: about 1-2 min)..."
  # Build in a copy: nothing is written into the repository tree.
  (cd "$SRC" && cp "${FILES[@]}" "$tmp/")
  cd "$tmp"
  run_go build -mod=readonly -trimpath -ldflags "-s -w" -o "$tmp/goclient" .
  mkdir -p "$(dirname "$BIN")"
  mv -f "$tmp/goclient" "$BIN"
  bin_ok || die "built $BIN but it does not run"
  log "  built in $((SECONDS - start)) s ($(du -h "$BIN" | cut -f1))"
}

# Another process may have finished the build while we waited for the lock.
if [[ "$force" == 1 ]] || ! bin_ok; then
  build
else
  log "already built"
fi

echo "$BIN"
