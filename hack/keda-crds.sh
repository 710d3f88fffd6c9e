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
SOURCES=(
  "$MODULE config/crd/bases/keda.sh_scaledobjects.yaml keda.sh_scaledobjects.yaml"
  "$MODULE config/crd/bases/keda.sh_triggerauthentications.yaml keda.sh_triggerauthentications.yaml"
)

# shellcheck source=hack/go-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-build.sh"
hack_args keda-crds "--print-env --check --force" "$@"

module_files KEDA_CRDS "$CRDS_DIR" "${SOURCES[@]}"
