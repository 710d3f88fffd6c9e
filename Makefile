# One entry point for people and CI. Every target installs what it needs and is
# safe to run again.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=
# Installable artifacts (issue 15), all in dist/ (gitignored).
VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml)
CHART_VERSION := $(shell sed -n 's/^version: *//p' charts/redistreams/Chart.yaml)
WHEEL := dist/redistreams-$(VERSION)-py3-none-any.whl
SDIST := dist/redistreams-$(VERSION).tar.gz
CHART_TGZ := dist/redistreams-$(CHART_VERSION).tgz
IMAGE_TAR := dist/redistreams-image.tar
PACKAGE_SOURCES := pyproject.toml README.md $(shell find operator/redistreams -type f \( -name '*.py' -o -name '*.lua' -o -name py.typed \) 2>/dev/null)
CHART_SOURCES := $(shell find charts/redistreams -type f 2>/dev/null)

.PHONY: help setup system-deps venv lock bytecode control-plane helm dist image image-deps kubectl keda-crds gitops-tools docs docs-tools shellcheck lint generate check test test-unit test-integration \
	test-e2e test-acl run bench clean

help: ## this list
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "make %-17s %s\n", $$1, $$2}'

setup: system-deps venv bytecode ## apt redis-server and the .venv

# Our modules are installed editable, so pip never compiled them, and environments with
# PYTHONDONTWRITEBYTECODE=1 would compile them again at every CLI start (~100 ms of a
# 150 ms budget). compileall writes them anyway; only changed files are compiled again.
bytecode: venv
	@$(BIN)/python -m compileall -q operator/redistreams

# redis-server from Debian; tests start their own servers from this binary.
system-deps:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "installing redis-server (apt)"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
	@command -v openssl >/dev/null 2>&1 || { \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null; }

venv: $(VENV)/.installed ## the .venv with the package (editable) and the test tools

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[test,operator]'
	@touch $@

# pyproject.toml gives the ranges users install from; constraints.txt pins the one set the
# tests, CI and the image run, so a dependency's new release changes nothing until we move
# the pins: `make lock` resolves every extra again in a fresh venv (then run make test).
lock: ## re-pin constraints.txt to the newest versions pyproject.toml allows
	rm -rf build/lock
	$(PYTHON) -m venv build/lock
	build/lock/bin/pip install -q --upgrade pip
	build/lock/bin/pip install -q '.[test,operator,docs]'
	{ echo "# Pinned by make lock from pyproject.toml's ranges; installed by make venv, make docs-tools"; \
	  echo "# and hack/image.sh. Edit pyproject.toml, not this file."; \
	  build/lock/bin/pip freeze --exclude redistreams; } > constraints.txt
	rm -rf build/lock

# kube-apiserver and etcd built from the Go module proxy, cached outside the repo
# (first build 10-25 minutes; then instant).
control-plane: ## kube-apiserver and etcd for the e2e tests
	hack/control-plane.sh

# helm, built the same way (first build 2-3 minutes).
helm: ## helm for the chart tests
	hack/helm.sh

# kubectl, built the same way from k8s.io/kubectl (1-2 min): the docs tests run the
# tutorial's kubectl commands with it.
kubectl: ## kubectl for the documentation tests
	hack/kubectl.sh

# KEDA's CRDs from its Go module (3 MB): tests/docs/test_keda.py applies examples/keda/ to them.
keda-crds:
	hack/keda-crds.sh >/dev/null

# kustomize (built like helm, 1-3 min) and Argo CD's and Flux's CRDs (from their Go
# modules) for tests/e2e/test_gitops.py, which renders and applies gitops/.
gitops-tools: ## kustomize and the Argo CD/Flux CRDs for the GitOps tests
	hack/kustomize.sh
	hack/gitops-crds.sh

# mkdocs-material in the .venv (the `docs` extra), once per change of pyproject.toml.
docs-tools: $(VENV)/.docs-installed
$(VENV)/.docs-installed: $(VENV)/.installed pyproject.toml constraints.txt
	$(BIN)/pip install -q -c constraints.txt -e '.[docs]'
	@touch $@

# The reference pages (resources from the model's CRD schema, the CLI's help) are generated
# at build time by hack/mkdocs_hooks.py: nothing generated is committed.
docs: docs-tools ## the documentation site into site/ (mkdocs build --strict)
	$(BIN)/mkdocs build --strict --site-dir site

# shellcheck from apt, for the hack/ scripts' test (skipped where apt cannot install it).
shellcheck:
	@command -v shellcheck >/dev/null 2>&1 || { \
		echo "installing shellcheck (apt)"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null; } || \
		echo "shellcheck not installed; tests/docs/test_kind_script.py runs bash -n only"

# The wheel and sdist (python -m build) and the chart's .tgz (helm package); rebuilt only
# when their sources change.
dist: $(WHEEL) $(SDIST) $(CHART_TGZ) ## the wheel, the sdist and the packaged chart in dist/

$(WHEEL) $(SDIST) &: $(PACKAGE_SOURCES) | venv
	rm -f dist/redistreams-*.whl dist/redistreams-*.tar.gz
	$(BIN)/python -m build -q --outdir dist . >/dev/null

$(CHART_TGZ): $(CHART_SOURCES)
	eval "$$(hack/helm.sh --print-env)" && "$$HELM" package charts/redistreams -d dist >/dev/null

# mmdebstrap (apt) makes the image's Debian root file system; crane (hack/crane.sh, from
# the Go module proxy) assembles the image archive: cold 96 s (47 s CPU, empty Go caches,
# load 5 on 2 cores), 21 s with the modules cached, then instant.
image-deps:
	@command -v mmdebstrap >/dev/null 2>&1 || { \
		echo "installing mmdebstrap (apt)"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null; }
	hack/crane.sh >/dev/null

# The operator's image without a container engine (hack/image.sh): a cached Debian base
# layer (mmdebstrap; kept until its package list changes) and the wheel with [operator]
# in a venv, as an archive for crane push / kind load image-archive. Needs root (sudo).
# Measured on 2 loaded cores: the base layer cold 58-113 s (once per package list), the
# rest 21-53 s (pip in the image's chroot, gzip of 150 MB of layers); nothing when the
# wheel has not changed. make dist: 25 s (python -m build in an isolated env).
image: $(IMAGE_TAR) ## the operator's image as dist/redistreams-image.tar (no container engine)

$(IMAGE_TAR): $(WHEEL) hack/image.sh constraints.txt | image-deps
	$(SUDO) hack/image.sh $(WHEEL) $@

lint: venv ## ruff and mypy, as configured in pyproject.toml
	$(BIN)/ruff check operator tests bench hack
	$(BIN)/mypy

generate: venv ## the CRDs from the model: crds/ and the chart's copy
	$(BIN)/python -m redistreams.crds

check: setup lint ## the fast loop: lint, unit and integration tests without the long sweeps
	$(BIN)/pytest tests/unit tests/integration -m "not slow" -n 4 $(PYTEST_ARGS)

test: setup control-plane helm kubectl keda-crds gitops-tools docs-tools shellcheck dist image ## everything: make check first, then the whole suite, then make test-acl
	$(MAKE) --no-print-directory check
	$(BIN)/pytest tests $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-acl

test-unit: venv ## unit tests only
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-integration: setup ## integration tests only (real redis-server)
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

test-e2e: setup control-plane helm kubectl keda-crds gitops-tools docs-tools ## e2e only (real kube-apiserver; KUBECONFIG with REDISTREAMS_E2E_USE_KUBECONFIG=1)
	$(BIN)/pytest tests/e2e $(PYTEST_ARGS)

# The CLI and operator suites logged in as a Redis user with only the documented rules
# (redistreams/acl.py; tests/support/redis_server.py). A representative subset, about 4.5
# minutes on 2 cores (the whole e2e suite under it passes too, 5 more minutes):
# the CLI's integration tests as manager+reader+publisher+consumer (the documented CLI
# user that also runs pub and sub), then the operator e2e modules using the shared Redis
# as the manager alone.
ACL_CLI_TESTS := $(addprefix tests/integration/,test_apply.py test_inspect.py test_cli_safety.py \
	test_cli_pubsub.py test_day2_redis.py test_retention.py test_failures.py test_data_safety.py test_observation.py)
ACL_E2E_TESTS := $(addprefix tests/e2e/,test_operator.py test_operator_safety.py test_operator_observation.py \
	test_day2.py test_operator_restart.py test_tenancy.py)
test-acl: setup control-plane helm ## the CLI and operator suites as an ACL user with only the documented rules
	REDISTREAMS_TEST_ACL=manager,reader,publisher,consumer $(BIN)/pytest $(ACL_CLI_TESTS) -m "not slow" -n 2 $(PYTEST_ARGS)
	REDISTREAMS_TEST_ACL=manager $(BIN)/pytest $(ACL_E2E_TESTS) $(PYTEST_ARGS)

run: setup control-plane ## local Redis: apply examples/, the seed scenario; then the operator
	$(BIN)/python -m hack.demo

bench: setup control-plane ## the benchmarks in bench/, each beside its baseline
	$(BIN)/python -m bench.apply
	$(BIN)/python -m bench.apply_cli
	$(BIN)/python -m bench.operator_burst
	$(BIN)/python -m bench.pubsub
	$(BIN)/python -m bench.observe
	$(BIN)/python -m bench.cli_startup

clean: ## remove the .venv and build output
	rm -rf $(VENV) .pytest_cache build dist *.egg-info operator/*.egg-info
