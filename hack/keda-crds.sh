#!/usr/bin/env bash
# Fetch (once) KEDA's CustomResourceDefinitions (ScaledObject, TriggerAuthentication), so
# tests/docs/test_keda.py can apply examples/keda/ to a real API server with strict field
# validation. The CRD YAML ships in KEDA's Go module (config/crd/bases); it comes through
# the Go module proxy that `go` is configured with (about 3 MB), nothing else is
# downloaded. Copied into a cache outside the repository, keyed by version, never committed.
#
# Usage:
#   hack/keda-crds.sh              fetch if missing, print the folder
#   hack/keda-crds.sh --print-env  same, but print a KEDA_CRDS= line on stdout
#   hack/keda-crds.sh --check      exit 0 (and print as above) if the folder is complete, else 1
#   hack/keda-crds.sh --force      fetch again even if the folder is complete
#
# Environment (all optional):
#   REDISTREAMS_KEDA_VERSION  github.com/kedacore/keda/v2 tag
#   REDISTREAMS_ENVBIN        cache (default ~/.cache/redistreams/envbin)
#   REDISTREAMS_BUILD_DIR     lock files (default ~/.cache/redistreams/build)
#   GO, GOTOOLCHAIN           as for hack/helm.sh
set -euo pipefail

# ---- pinned version (override through the environment) -----------------------
KEDA_VERSION="${REDISTREAMS_KEDA_VERSION:-v2.21.0}"
# ------------------------------------------------------------------------------

ENVBIN="${REDISTREAMS_ENVBIN:-$HOME/.cache/redistreams/envbin}"
BUILD_ROOT="${REDISTREAMS_BUILD_DIR:-$HOME/.cache/redistreams/build}"
CRDS_DIR="$ENVBIN/keda-crds-$KEDA_VERSION"
MODULE="github.com/kedacore/keda/v2@$KEDA_VERSION"
FILES=(keda.sh_scaledobjects.yaml keda.sh_triggerauthentications.yaml)

# shellcheck source=hack/go-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-build.sh"
hack_args keda-crds "--print-env --check --force" "$@"

crds_ok() {
  [[ -f "$CRDS_DIR/.complete" ]] || return 1
  local name
  for name in "${FILES[@]}"; do
    [[ -s "$CRDS_DIR/$name" ]] || return 1
  done
}

report() {
  if [[ "$output" == env ]]; then
    printf 'KEDA_CRDS=%q\n' "$CRDS_DIR"
  else
    echo "keda-crds: $CRDS_DIR"
  fi
}

if [[ "$check_only" == 1 ]]; then
  if crds_ok; then report; exit 0; fi
  exit 1
fi
if [[ "$force" == 0 ]] && crds_ok; then
  report
  exit 0
fi

go_build_setup .keda-crds.lock

fetch_crds() {
  local tmp="$CRDS_DIR.tmp.$$" json dir name
  log "fetching KEDA's CRDs ($MODULE) through the Go module proxy..."
  GOLOG="$BUILD_ROOT/keda-crds.log"
  : >"$GOLOG"
  cd "$BUILD_ROOT"  # outside any module: `go mod download` fetches exactly module@version
  json="$("$GO" mod download -json "$MODULE" 2>>"$GOLOG")" \
    || { echo "$json" >&2; die "cannot download $MODULE (see $GOLOG)"; }
  dir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$json" | head -n1)"
  [[ -d "$dir" ]] || die "no module folder for $MODULE: $json"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  for name in "${FILES[@]}"; do
    [[ -s "$dir/config/crd/bases/$name" ]] || die "$MODULE has no config/crd/bases/$name"
    cp "$dir/config/crd/bases/$name" "$tmp/$name"
  done
  touch "$tmp/.complete"
  rm -rf "$CRDS_DIR"
  mv "$tmp" "$CRDS_DIR"
}

if [[ "$force" == 1 ]] || ! crds_ok; then
  fetch_crds
else
  log "CRDs already fetched"
fi

report
