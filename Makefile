# One entry point for people and CI. Every target installs what it needs and is
# safe to run again.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.PHONY: help setup system-deps venv control-plane helm test test-unit test-integration test-e2e run bench clean

help:
	@echo "make run    - local Redis: apply examples/, the seed scenario; then the operator on a local control plane"
	@echo "make test   - install everything and run the whole test suite"
	@echo "make bench  - run the benchmarks in bench/"

setup: system-deps venv

# redis-server from Debian; tests start their own servers from this binary.
system-deps:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "installing redis-server (apt)"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
	@command -v openssl >/dev/null 2>&1 || { \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null; }

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

# kube-apiserver and etcd built from the Go module proxy, cached outside the repo
# (first build 10-25 minutes; then instant).
control-plane:
	hack/control-plane.sh

# helm, built the same way (first build 2-3 minutes).
helm:
	hack/helm.sh

test: setup control-plane helm
	$(BIN)/pytest tests $(PYTEST_ARGS)

test-unit: venv
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-integration: setup
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

test-e2e: setup control-plane helm
	$(BIN)/pytest tests/e2e $(PYTEST_ARGS)

run: setup control-plane
	$(BIN)/python hack/demo.py

bench: setup control-plane
	$(BIN)/python bench/apply.py
	$(BIN)/python bench/operator.py
	$(BIN)/python bench/pubsub.py
	$(BIN)/python bench/observe.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info operator/*.egg-info
