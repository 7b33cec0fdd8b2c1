# bgjobs: every entry point is a make target. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STATE ?= .devcluster/demo
export PYTHONPATH := $(CURDIR):$(CURDIR)/operator:$(CURDIR)/worker_image

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sort | \
	  awk 'BEGIN {FS = ":.*## "}; {printf "  make %-14s %s\n", $$1, $$2}'

system-deps: ## install the Debian packages the tests and demo need (redis-server, openssl, util-linux, chromium, chromium-driver)
	@missing=""; \
	for b in redis-server:redis-server openssl:openssl unshare:util-linux \
	         /usr/bin/chromium:chromium /usr/bin/chromedriver:chromium-driver; do \
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

lint: venv ## ruff lint and format check; import walls (import-linter contracts in pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	PYTHONPATH=$(CURDIR):$(CURDIR)/operator:$(CURDIR)/worker_image $(VENV)/bin/lint-imports

typecheck: venv ## mypy
	$(VENV)/bin/mypy

unit: venv ## unit tests (pure functions, no I/O)
	$(PY) -m pytest tests/unit -q

integration: venv system-deps cluster-bins ## integration tests on a fresh devcluster and a real redis-server (not e2e)
	$(PY) -m pytest tests/integration -q -m "not e2e"

test: system-deps venv cluster-bins lint typecheck ## lint, types, unit and integration tests (CI runs make e2e after it)
	$(PY) -m pytest tests -q -m "not e2e"

e2e: system-deps venv cluster-bins image-deps ## build the images (podman, Debian base) and run them: node, helm install, jobs
	$(PY) -m pytest tests -q -m e2e

# The devcluster's helm (make cluster-bins), else one on PATH.
HELM ?= $(shell $(PY) -c 'from devcluster import bins; print(bins.binary("helm"))' 2>/dev/null || command -v helm)
IMAGE_TAG ?= 0.1.0
KIND_CLUSTER ?= bgjobs-e2e

# kube-score's checks that the chart fails on purpose (each reason in docs/helm.md, "kube-score"):
# the operator is one active replica by design (Recreate, no PDB, no anti-affinity), has one
# health endpoint (kopf's) for both probes, pins image tags with IfNotPresent (clusters that
# preload images, like make e2e's), sets no CPU limit, and NetworkPolicies are opt-in.
KUBE_SCORE_VERSION ?= v1.20.0
KUBE_SCORE ?= $(or $(BGJOBS_CACHE),$(HOME)/.cache/bgjobs)/bin/kube-score-$(KUBE_SCORE_VERSION)/kube-score
CHART_RENDERED := $(or $(TMPDIR),/tmp)/bgjobs-chart-rendered.yaml
KUBE_SCORE_FLAGS := --output-format ci --ignore-container-cpu-limit \
  --ignore-test deployment-replicas,deployment-strategy,deployment-has-poddisruptionbudget \
  --ignore-test deployment-has-host-podantiaffinity,pod-probes-identical \
  --ignore-test container-image-pull-policy,pod-networkpolicy

# checkov (PyPI, its own virtualenv: a large install kept out of .venv). Skipped everywhere,
# each for the reason in docs/helm.md "Policy checks": pinned tags pulled IfNotPresent
# (CKV_K8S_15), digests optional (image.digest; CKV_K8S_43), NetworkPolicies opt-in
# (CKV2_K8S_6). Findings on one object are skipped on it (checkov.io/skipN annotations).
CHECKOV_VERSION ?= 3.3.30
CHECKOV_VENV ?= $(or $(BGJOBS_CACHE),$(HOME)/.cache/bgjobs)/checkov-$(CHECKOV_VERSION)
CHECKOV_SKIP := CKV_K8S_15,CKV_K8S_43,CKV2_K8S_6

crds: venv ## generate crds/ from the API models, and the chart's copy
	$(PY) -m bgjobs.api.crdgen crds charts/bgjobs/crds

chart-lint: venv ## helm lint, helm template, kube-score and checkov on charts/bgjobs: default values and each charts/bgjobs/ci/*-values.yaml
	@test -x "$(HELM)" || { echo "no helm: run make cluster-bins"; exit 1; }
	@test -x "$(KUBE_SCORE)" || GOBIN=$(dir $(KUBE_SCORE)) go install github.com/zegl/kube-score/cmd/kube-score@$(KUBE_SCORE_VERSION)
	@test -x "$(CHECKOV_VENV)/bin/checkov" || { python3 -m venv $(CHECKOV_VENV) && $(CHECKOV_VENV)/bin/pip install -q checkov==$(CHECKOV_VERSION); }
	@for values in "" charts/bgjobs/ci/*-values.yaml; do \
	  echo "== charts/bgjobs $${values:-(default values)}"; \
	  $(HELM) lint --strict charts/bgjobs $${values:+-f $$values} >/dev/null || exit 1; \
	  $(HELM) template bgjobs charts/bgjobs --namespace bgjobs $${values:+-f $$values} > $(CHART_RENDERED) || exit 1; \
	  $(KUBE_SCORE) score $(KUBE_SCORE_FLAGS) $(CHART_RENDERED) || exit 1; \
	  $(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download --framework kubernetes --skip-check $(CHECKOV_SKIP) \
	    -f $(CHART_RENDERED) > $(CHART_RENDERED).checkov || { cat $(CHART_RENDERED).checkov; exit 1; }; \
	done; echo "chart OK"

images: ## build bgjobs/operator and bgjobs/worker: Docker when a daemon answers, else podman --isolation chroot (BASE=image)
	$(PYTHON) -m devcluster.images build --tag $(IMAGE_TAG) $(if $(BASE),--base $(BASE))

image-deps: ## install podman and mmdebstrap (Debian packages) to build images without Docker
	@command -v podman >/dev/null && command -v mmdebstrap >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman mmdebstrap; }

base-image: image-deps ## a python3 base image from Debian's packages (mmdebstrap + podman import; cached by recipe)
	$(PYTHON) -m devcluster.images base

images-debian: image-deps ## make images with podman on the base-image: what CI and make e2e use, no registry needed
	IMAGE_BUILDER=podman $(PYTHON) -m devcluster.images build --tag $(IMAGE_TAG) --debian-base
	$(PYTHON) -m devcluster.images sizes --tag $(IMAGE_TAG)

kind-e2e: images ## (needs Docker + kind; not run in CI) install the chart on kind, run examples/backgroundjob-*.yaml
	@command -v kind >/dev/null && command -v kubectl >/dev/null || { echo "kind-e2e needs kind and kubectl"; exit 1; }
	kind get clusters | grep -qx $(KIND_CLUSTER) || kind create cluster --name $(KIND_CLUSTER)
	printf 'FROM bgjobs/worker:$(IMAGE_TAG)\nCOPY examples/ /app/examples/\n' | \
	  docker build -f - -t bgjobs/worker-examples:$(IMAGE_TAG) .
	kind load docker-image --name $(KIND_CLUSTER) bgjobs/operator:$(IMAGE_TAG) bgjobs/worker-examples:$(IMAGE_TAG)
	$(HELM) upgrade --install bgjobs charts/bgjobs --kube-context kind-$(KIND_CLUSTER) \
	  --namespace bgjobs --create-namespace --wait --timeout 5m \
	  --set redis.bundled.enabled=true --set worker.image=bgjobs/worker-examples:$(IMAGE_TAG) \
	  --set 'worker.taskModules={examples.tasks}'
	$(HELM) test bgjobs --kube-context kind-$(KIND_CLUSTER) --namespace bgjobs
	@for f in examples/backgroundjob-*.yaml; do \
	  want=Succeeded; [[ $$f == *deadletter* ]] && want=Failed; \
	  kubectl --context kind-$(KIND_CLUSTER) apply -n default -f $$f && \
	  kubectl --context kind-$(KIND_CLUSTER) wait -n default -f $$f --timeout=300s \
	    --for=jsonpath='{.status.phase}'=$$want || exit 1; \
	done
	kubectl --context kind-$(KIND_CLUSTER) get backgroundjobs,deadletters -n default
	@echo "kind-e2e passed; delete the cluster with: kind delete cluster --name $(KIND_CLUSTER)"

.PHONY: crds chart-lint images image-deps base-image images-debian kind-e2e

bench: system-deps venv cluster-bins ## benchmarks vs baselines on a devcluster of their own (~10 min); writes docs/benchmarks.md
	$(PY) -m bench

.PHONY: bench

screenshots: system-deps venv cluster-bins ## dashboard screenshots (devcluster + examples + headless chromium) into docs/screenshots/
	$(PY) -m devcluster.screenshots

.PHONY: screenshots

chaos: system-deps venv cluster-bins ## failure injection (operator, Redis, API server, etcd, node) during bursts of jobs, workflows, batches and queued jobs, plus 5 min of 50/s load; writes docs/reliability.md (CHAOS_N=500)
	$(PY) -m bench.chaos

.PHONY: chaos

FUZZ_COUNT ?= 1000
FUZZ_SEED ?= 1
fuzz: system-deps venv cluster-bins ## fuzzed manifests (FUZZ_COUNT=1000, FUZZ_SEED=1) vs a devcluster + operator; writes docs/reliability.md
	$(PY) -m tests.fuzz --count $(FUZZ_COUNT) --seed $(FUZZ_SEED)

.PHONY: fuzz

.PHONY: help system-deps venv cluster-bins cluster-up cluster-down demo lint typecheck unit integration test e2e
