#!/usr/bin/env bash
# Fetch (once) the CustomResourceDefinitions of Argo CD and Flux that the GitOps examples
# (gitops/) use, so the e2e tests can apply the examples to a real API server. The CRD
# YAML ships inside the controllers' Go modules (config/crd/bases, manifests/crds); they
# come through the Go module proxy that `go` is configured with, nothing else is
# downloaded. The files are copied into a cache outside the repository, keyed by the
# versions, and never committed.
#
# Usage:
#   hack/gitops-crds.sh              fetch if missing, print the folder
#   hack/gitops-crds.sh --print-env  same, but print a GITOPS_CRDS= line on stdout
#   hack/gitops-crds.sh --check      exit 0 (and print as above) if the folder is
#                                    complete, else 1; never fetches
#   hack/gitops-crds.sh --force      fetch again even if the folder is complete
#
# Environment (all optional):
#   REDISTREAMS_ARGOCD_VERSION           github.com/argoproj/argo-cd/v3 tag
#   REDISTREAMS_FLUX_SOURCE_VERSION      github.com/fluxcd/source-controller tag
#   REDISTREAMS_FLUX_KUSTOMIZE_VERSION   github.com/fluxcd/kustomize-controller tag
#   REDISTREAMS_FLUX_HELM_VERSION        github.com/fluxcd/helm-controller tag
#   REDISTREAMS_ENVBIN                   cache (default ~/.cache/redistreams/envbin)
#   REDISTREAMS_BUILD_DIR                lock files (default ~/.cache/redistreams/build)
#   GO, GOTOOLCHAIN                      as for hack/helm.sh
#
# The pinned Flux versions are those of Flux v2.7 (newer releases need Go 1.27); the
# Argo CD one is the newest v3 whose go.mod accepts Go 1.26. Cold cost: about 275 MB in
# the Go module cache (mostly the Argo CD module), a few seconds to a minute.
set -euo pipefail

# ---- pinned versions (override through the environment) ----------------------
ARGOCD_VERSION="${REDISTREAMS_ARGOCD_VERSION:-v3.5.7}"
FLUX_SOURCE_VERSION="${REDISTREAMS_FLUX_SOURCE_VERSION:-v1.7.3}"
FLUX_KUSTOMIZE_VERSION="${REDISTREAMS_FLUX_KUSTOMIZE_VERSION:-v1.7.3}"
FLUX_HELM_VERSION="${REDISTREAMS_FLUX_HELM_VERSION:-v1.4.3}"
# ------------------------------------------------------------------------------

ENVBIN="${REDISTREAMS_ENVBIN:-$HOME/.cache/redistreams/envbin}"
BUILD_ROOT="${REDISTREAMS_BUILD_DIR:-$HOME/.cache/redistreams/build}"
KEY="argocd-$ARGOCD_VERSION-source-$FLUX_SOURCE_VERSION-kustomize-$FLUX_KUSTOMIZE_VERSION-helm-$FLUX_HELM_VERSION"
CRDS_DIR="$ENVBIN/gitops-crds-$KEY"

# module@version  path-in-module  file-name-in-cache
SOURCES=(
  "github.com/argoproj/argo-cd/v3@$ARGOCD_VERSION manifests/crds/application-crd.yaml argoproj.io_applications.yaml"
  "github.com/argoproj/argo-cd/v3@$ARGOCD_VERSION manifests/crds/appproject-crd.yaml argoproj.io_appprojects.yaml"
  "github.com/fluxcd/source-controller@$FLUX_SOURCE_VERSION config/crd/bases/source.toolkit.fluxcd.io_gitrepositories.yaml source.toolkit.fluxcd.io_gitrepositories.yaml"
  "github.com/fluxcd/source-controller@$FLUX_SOURCE_VERSION config/crd/bases/source.toolkit.fluxcd.io_helmrepositories.yaml source.toolkit.fluxcd.io_helmrepositories.yaml"
  "github.com/fluxcd/source-controller@$FLUX_SOURCE_VERSION config/crd/bases/source.toolkit.fluxcd.io_ocirepositories.yaml source.toolkit.fluxcd.io_ocirepositories.yaml"
  "github.com/fluxcd/kustomize-controller@$FLUX_KUSTOMIZE_VERSION config/crd/bases/kustomize.toolkit.fluxcd.io_kustomizations.yaml kustomize.toolkit.fluxcd.io_kustomizations.yaml"
  "github.com/fluxcd/helm-controller@$FLUX_HELM_VERSION config/crd/bases/helm.toolkit.fluxcd.io_helmreleases.yaml helm.toolkit.fluxcd.io_helmreleases.yaml"
)

# shellcheck source=hack/go-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-build.sh"
hack_args gitops-crds "--print-env --check --force" "$@"

module_files GITOPS_CRDS "$CRDS_DIR" "${SOURCES[@]}"
