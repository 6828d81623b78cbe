# Tidings build, test and release helpers. `make help` lists the targets.

SHELL       := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# make test fuzzes each target for a count of inputs, not a duration: with
# a duration, Go 1.26's fuzz coordinator can report "context deadline
# exceeded" as a failure when the time runs out on a busy machine
# (golang/go#75804, fixed in Go 1.27).
FUZZTIME ?= 20000x

# Fuzz targets as package:FuzzFunction pairs.
FUZZ_TARGETS := \
	./auth:FuzzClaims \
	./broker:FuzzTopic \
	./session:FuzzCommand \
	./transport/ws:FuzzFrame \
	./transport/sse:FuzzCursor \
	./transport/ws:FuzzInflate \
	./transport/httpapi:FuzzPublishBody \
	./transport/httpapi:FuzzControlBody \
	./transport/stream:FuzzStreamCommands \
	./hooks:FuzzAnswer \
	./store/redis:FuzzEnvelopeRoundTrip \
	./store/redis:FuzzDecodeRelayed \
	./transport/clientip:FuzzClientIP \
	./config:FuzzConfig \
	./cmd/loadgen:FuzzServerFrame \
	./cmd/loadgen:FuzzMessageRoundTrip

# Memory-bound tests that also run without the race detector, which slows
# them and inflates the heap they measure: at full size (a million topics).
# The hostile clients suite (internal/abuse) runs after them, alone: it
# measures a broker process and a well-behaved client's latency, which
# other test packages running at the same time would blur.
MEMORY_TESTS := TestChurnedTopicsAreFreed|TestWildcardPatternsAreBounded|TestHistoryIsBoundedNodeWide

STATICCHECK_VERSION := v0.8.2
GOBIN_DIR   := $(firstword $(subst :, ,$(shell $(GO) env GOPATH)))/bin
STATICCHECK := $(GOBIN_DIR)/staticcheck

# Debian packages the tests need, as binary:package pairs; a package is
# installed only when its binary is missing. gcc is what -race needs (cgo);
# node runs the example hooks backend.
APT_DEPS := redis-server:redis-server redis-cli:redis-tools chromium:chromium gcc:gcc node:nodejs

# apt-get needs root; use sudo otherwise.
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

# fuzz-one runs one package:FuzzFunction pair for the given time. go test
# passes when -fuzz matches nothing, so first check that the target exists.
fuzz-pkg = $(firstword $(subst :, ,$(1)))
fuzz-fn  = $(lastword $(subst :, ,$(1)))
define fuzz-one
@list="$$($(GO) test -list '^$(fuzz-fn)$$' $(fuzz-pkg))"; grep -qx '$(fuzz-fn)' <<<"$$list" || { echo 'fuzz: no $(fuzz-fn) in $(fuzz-pkg)' >&2; exit 1; }
$(GO) test -run '^$$' -fuzz '^$(fuzz-fn)$$' -fuzztime $(2) $(fuzz-pkg)

endef

# gofmt -l prints nothing when every file is formatted.
define gofmt-check
@echo 'gofmt -l .'; out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt: these files need formatting (run gofmt -w):" >&2; echo "$$out" >&2; exit 1; fi
endef

.PHONY: help run build deps tools test lint bench fuzz helm-test loadtest dist dist-test

help:
	@echo 'make run        start the broker on :8080 (in-memory store)'
	@echo 'make build      build bin/broker (version $(VERSION))'
	@echo 'make deps       install missing test dependencies (apt packages, then make tools)'
	@echo 'make tools      install staticcheck $(STATICCHECK_VERSION) if missing'
	@echo 'make test       deps, gofmt, go vet, staticcheck, go test -race, memory and hostile-client suites, short fuzzing (FUZZTIME=$(FUZZTIME))'
	@echo 'make lint       gofmt, go vet, staticcheck'
	@echo 'make bench      run the benchmarks'
	@echo 'make fuzz       run each fuzz target for 60s (FUZZTIME=... to change)'
	@echo 'make loadtest   run every load scenario at a small size (a few minutes) and print the tables'
	@echo 'make helm-test  lint, render and schema-check the Helm chart, test it and the Dockerfile'
	@echo 'make dist       release archives in dist/ for VERSION=$(VERSION): linux and darwin, amd64 and arm64, checksums, SBOM, chart'
	@echo 'make dist-test  build the release archives of a test version and check them (part of make test)'

run:
	$(GO) run ./cmd/broker

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o bin/broker ./cmd/broker

# Quiet and idempotent: prints and installs only what is missing.
deps: tools
	@missing=""; \
	for pair in $(APT_DEPS); do \
		command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "deps: installing$$missing"; \
		$(SUDO) apt-get update -qq; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# The Go tools that lint needs, installed when missing.
tools:
	@if [ ! -x '$(STATICCHECK)' ]; then \
		echo 'tools: installing staticcheck $(STATICCHECK_VERSION)'; \
		GOBIN='$(GOBIN_DIR)' $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION); \
	fi

test: deps
	$(gofmt-check)
	$(GO) vet ./...
	$(STATICCHECK) ./...
	$(GO) test -race -count=1 -timeout 20m ./...
	$(GO) test -count=1 -run '$(MEMORY_TESTS)' ./broker ./store/memory
	$(GO) test -count=1 -run TestHostileClients ./internal/abuse -abuse
	$(foreach t,$(FUZZ_TARGETS),$(call fuzz-one,$(t),$(FUZZTIME)))
	$(MAKE) --no-print-directory helm-test
	$(MAKE) --no-print-directory dist-test

# dist builds the release archives (scripts/dist.sh); the chart is packaged
# with appVersion $(VERSION) when helm is installed (make helm-test does).
dist:
	HELM='$(HELM)' GO='$(GO)' scripts/dist.sh '$(VERSION)' dist

# dist-test builds the archives of a test version in a temporary directory
# and checks them: the four archives, checksums, the SBOM, the chart's
# appVersion and the binary's -version.
dist-test:
	HELM='$(HELM)' GO='$(GO)' scripts/dist-test.sh

lint: tools
	$(gofmt-check)
	$(GO) vet ./...
	$(STATICCHECK) ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# A target-specific value: `make fuzz` runs 60s per target, `make test` 20 000 inputs;
# FUZZTIME=... on the command line overrides both.
fuzz: FUZZTIME = 60s
fuzz:
	$(foreach t,$(FUZZ_TARGETS),$(call fuzz-one,$(t),$(FUZZTIME)))

# helm-test checks the chart and the Dockerfile without a cluster, a
# registry or a schema download: helm lint --strict and helm template over
# the default values and every ci/*-values.yaml, kubeconform -strict on what
# they render against JSON schemas generated from the OpenAPI spec of pinned
# Kubernetes releases (the oldest the chart supports and a current one),
# promtool on the PrometheusRule's rule groups (check rules on every values
# file's, test rules on the defaults'), then the Go tests of deploy/tools, a
# module of its own. helm, kubeconform and promtool are built with go
# install into GOBIN_DIR when missing or of another version (promtool, the
# first time, takes several minutes).
HELM_VERSION        := v3.22.0
KUBECONFORM_VERSION := v0.8.0
PROMTOOL_VERSION    := v0.316.0
KUBE_VERSIONS       := 1.30.14 1.37.2
HELM                := $(GOBIN_DIR)/helm
KUBECONFORM         := $(GOBIN_DIR)/kubeconform
PROMTOOL            := $(GOBIN_DIR)/promtool
CHART               := deploy/helm/tidings
K8S_SCHEMAS         := '$(CURDIR)/deploy/tools/.schemas/{{ .NormalizedKubernetesVersion }}{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json'
CRD_SCHEMAS         := '$(CURDIR)/deploy/tools/crd-schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json'

# go-tool installs binary $(1) from package $(2) at module version $(3)
# unless GOBIN_DIR already has it built from that version.
define go-tool
@have="$$({ $(GO) version -m '$(GOBIN_DIR)/$(1)' 2>/dev/null || true; } | awk '$$1 == "mod" {print $$3}')"; \
if [ "$$have" != '$(3)' ]; then \
	echo 'helm-test: installing $(1) $(3)'; \
	GOBIN='$(GOBIN_DIR)' $(GO) install '$(2)@$(3)'; \
fi
endef

helm-test:
	$(call go-tool,helm,helm.sh/helm/v3/cmd/helm,$(HELM_VERSION))
	$(call go-tool,kubeconform,github.com/yannh/kubeconform/cmd/kubeconform,$(KUBECONFORM_VERSION))
	$(call go-tool,promtool,github.com/prometheus/prometheus/cmd/promtool,$(PROMTOOL_VERSION))
	cd deploy/tools && $(GO) run ./cmd/k8s-schemas -out .schemas $(KUBE_VERSIONS)
	@for values in '' $(CHART)/ci/*-values.yaml; do \
		echo "helm lint --strict $(CHART) $${values:+-f $$values}"; \
		'$(HELM)' lint --strict --quiet --kube-version $(firstword $(KUBE_VERSIONS)) $(CHART) $${values:+-f "$$values"}; \
		for kv in $(KUBE_VERSIONS); do \
			echo "helm template $(CHART) $${values:+-f $$values} --kube-version $$kv | kubeconform -strict"; \
			'$(HELM)' template tidings $(CHART) --namespace tidings --kube-version "$$kv" $${values:+-f "$$values"} \
			| '$(KUBECONFORM)' -strict -summary -kubernetes-version "$$kv" \
				-schema-location $(K8S_SCHEMAS) -schema-location $(CRD_SCHEMAS); \
		done; \
	done
	@# The PrometheusRule's spec.groups, as a Prometheus rule file
	@# (deploy/tools/cmd/prom-rules), for every values file with the rule on.
	@dir="$$(mktemp -d)"; trap 'rm -rf "$$dir"' EXIT; \
	(cd deploy/tools && $(GO) build -o "$$dir/prom-rules" ./cmd/prom-rules); \
	for values in '' $(CHART)/ci/*-values.yaml; do \
		echo "helm template $(CHART) $${values:+-f $$values} --set prometheusRule.enabled=true | prom-rules | promtool check rules"; \
		'$(HELM)' template tidings $(CHART) --namespace tidings --kube-version $(firstword $(KUBE_VERSIONS)) \
			$${values:+-f "$$values"} --set prometheusRule.enabled=true | "$$dir/prom-rules" > "$$dir/rules.yaml"; \
		'$(PROMTOOL)' check rules --lint-fatal "$$dir/rules.yaml"; \
	done; \
	echo 'helm template $(CHART) --set prometheusRule.enabled=true | prom-rules | promtool test rules deploy/tools/prometheus/rules-test.yaml'; \
	'$(HELM)' template tidings $(CHART) --namespace tidings --kube-version $(firstword $(KUBE_VERSIONS)) \
		--set prometheusRule.enabled=true | "$$dir/prom-rules" > "$$dir/rules.yaml"; \
	cp deploy/tools/prometheus/rules-test.yaml "$$dir/"; \
	'$(PROMTOOL)' test rules "$$dir/rules-test.yaml"
	cd deploy/tools && $(GO) vet ./... && HELM='$(HELM)' $(GO) test -count=1 ./...

# loadtest runs every cmd/loadgen scenario at a size that takes a few
# minutes on a 2-core machine; docs/BENCHMARKS.md gives the full-size
# commands. LOADGEN_FLAGS is added to every run (e.g. LOADGEN_FLAGS=-runs=3).
# Everything runs on loopback, and each run stops on its own.
LOADGEN_FLAGS ?=
loadtest:
	@command -v redis-server >/dev/null 2>&1 || { echo 'loadtest: installing redis-server'; $(SUDO) apt-get update -qq; $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }
	@dir="$$(mktemp -d)"; trap 'rm -rf "$$dir"' EXIT; \
	$(GO) build -o "$$dir/broker" ./cmd/broker; \
	$(GO) build -o "$$dir/loadgen" ./cmd/loadgen; \
	lg() { echo; echo "### loadgen $$*"; "$$dir/loadgen" -broker-bin "$$dir/broker" -timeout 5m "$$@" $(LOADGEN_FLAGS) | tail -n +2; }; \
	lg -scenario idle -conns 10000 -duration 3s; \
	lg -scenario broadcast -conns 1000 -rates 20k,50k,100k,200k,400k -duration 3s; \
	lg -scenario fanout-many -conns 2000 -topics 2000 -rate 2000 -duration 5s; \
	lg -scenario wildcard -conns 1000 -rate 200 -duration 5s; \
	lg -scenario churn -conns 500 -churn-rate 200 -rate 50 -duration 5s; \
	lg -scenario cluster -conns 500 -rate 50 -duration 5s
