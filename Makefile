# bgjobs: every entry point is a make target. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STATE ?= .devcluster/demo
export PYTHONPATH := $(CURDIR)

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sort | \
	  awk 'BEGIN {FS = ":.*## "}; {printf "  make %-14s %s\n", $$1, $$2}'

system-deps: ## install the Debian packages the tests and demo need (redis-server, openssl, util-linux)
	@missing=""; \
	for b in redis-server:redis-server openssl:openssl unshare:util-linux; do \
	  command -v $${b%%:*} >/dev/null || missing="$$missing $${b#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

venv: $(VENV)/.installed ## create .venv with bgjobs (editable) and the dev tools

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "bgjobs needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

cluster-bins: ## build etcd, kube-apiserver, kube-controller-manager, kubectl, helm (cached by version)
	bash devcluster/build-bins.sh

cluster-up: venv cluster-bins ## start the demo devcluster (state in .devcluster/demo; STATE=dir for another)
	$(PY) -m devcluster --state-dir $(STATE) up

cluster-down: venv ## stop the demo devcluster, leaving no process behind
	$(PY) -m devcluster --state-dir $(STATE) down

demo: system-deps venv cluster-bins ## run the main job: devcluster + Redis + operator + examples, live progress
	$(PY) -m devcluster.demo --state-dir $(STATE)

lint: venv ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv ## mypy
	$(VENV)/bin/mypy

unit: venv ## unit tests (pure functions, no I/O)
	$(PY) -m pytest tests/unit -q

integration: venv system-deps cluster-bins ## integration tests on a fresh devcluster and a real redis-server
	$(PY) -m pytest tests/integration -q

test: system-deps venv cluster-bins lint typecheck ## everything CI runs: lint, types, unit and integration tests
	$(PY) -m pytest tests -q

.PHONY: help system-deps venv cluster-bins cluster-up cluster-down demo lint typecheck unit integration test
