# lanmesh build, test, demo and bench. Works as root on a fresh Debian 12:
# every target that needs packages or tools runs scripts/deps.sh first.
#
#   make build   host binaries into bin/, stripped router builds into bin/<os>_<arch>/
#   make test    vet, unit tests (-race), end-to-end tests, 5 s of fuzzing per target
#   make fuzz    longer fuzzing (FUZZTIME=1m)
#   make demo    the namespace demo (installs and builds only what it runs)
#   make bench   size, throughput (host, and kernel vs userspace in x86-64/MIPS VMs), firewall, dns,
#                coord-scale, abuse, router (packaged agent in the MIPS VM), revocation and plugins tables into bench/results/
#   make lint    gofmt, go vet, lanmesh-vet (S8, CI skips), go mod tidy check, staticcheck, shellcheck
#   make clean

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

GO_ROOT ?= /usr/local/go
# Go may be installed but not on root's PATH on a fresh machine.
export PATH := $(GO_ROOT)/bin:$(HOME)/go/bin:$(PATH)
GOBIN_DIR := $(shell p=$$(go env GOBIN 2>/dev/null); [ -n "$$p" ] || p=$$(go env GOPATH 2>/dev/null)/bin; echo $$p)
export PATH := $(GOBIN_DIR):$(PATH)

BIN ?= bin
# The version stamped into binaries; main.version/main.commit in each cmd.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS_X := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

# Binaries built for the host. The first two must exist; the others are
# built only once their package has a main.
HOST_CMDS := lanmesh lanmesh-coord
HOST_OPTIONAL_CMDS := lanmesh-derp lanmesh-plugins lanmesh-idp-oidc lanmesh-idp-local
# The router binary, cross-built for every ROUTER_PLATFORMS entry.
ROUTER_CMD := lanmesh
# Router targets: os/arch[/variant] for the stripped lanmesh builds.
ROUTER_PLATFORMS := linux/mipsle/softfloat linux/mips/softfloat linux/arm/7 linux/arm64 linux/amd64
# Also stripped for amd64 so `make bench` can report their sizes.
SERVER_CMDS := lanmesh-coord
SERVER_OPTIONAL_CMDS := lanmesh-derp lanmesh-idp-oidc lanmesh-idp-local

# Test knobs. End-to-end tests live in packages whose import path has an
# /e2e element: they run once, without -race, one package at a time.
UNIT_TIMEOUT ?= 10m
E2E_TIMEOUT ?= 15m
# Fuzzing per target in make test; make fuzz defaults to 1m.
FUZZTIME ?= 5s
TESTFLAGS ?=
# Bench knobs: repetitions and duration of each throughput run.
BENCH_N ?= 5
BENCH_TIME ?= 10s
BENCH_FLAGS ?=
# e.g. DEMO_FLAGS="--once --nat-a hard" (see go run ./cmd/lanmesh-demo --help)
DEMO_FLAGS ?=

# lanmesh-coord also goes into the arm and arm64 packages (modernc.org/sqlite
# has no MIPS port, so MIPS routers get the agent only).
PKG_COORD_PLATFORMS := linux/arm/7 linux/arm64
PKG_VERSION ?= 0.1.0
PKG_RELEASE ?= 1

.PHONY: packages all build build-host build-cross deps test vet vet-own tidy-check test-unit test-e2e fuzz fuzz-short demo bench lint clean proto

all: build

# Regenerates the plugin protocol's Go code (protoc and its Go plugins come
# from scripts/deps.sh).
proto:
	cd plugins/sdk/internal/pb && PATH="$$(go env GOPATH)/bin:$$PATH" protoc --go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative idp.proto

deps:
	@scripts/deps.sh

build: build-host build-cross

build-host:
	@mkdir -p $(BIN)
	@for c in $(HOST_CMDS) $(HOST_OPTIONAL_CMDS); do \
		opt=0; case " $(HOST_OPTIONAL_CMDS) " in *" $$c "*) opt=1;; esac; \
		scripts/build.sh "$$c" "$(BIN)/$$c" "$$opt" host "$(LDFLAGS_X)"; \
	done

build-cross:
	@for p in $(ROUTER_PLATFORMS); do \
		IFS=/ read -r os arch variant <<<"$$p"; \
		scripts/build.sh $(ROUTER_CMD) "$(BIN)/$${os}_$${arch}/$(ROUTER_CMD)" 0 "$$p" "$(LDFLAGS_X)"; \
	done
	@for c in $(SERVER_CMDS) $(SERVER_OPTIONAL_CMDS); do \
		opt=0; case " $(SERVER_OPTIONAL_CMDS) " in *" $$c "*) opt=1;; esac; \
		scripts/build.sh "$$c" "$(BIN)/linux_amd64/$$c" "$$opt" linux/amd64 "$(LDFLAGS_X)"; \
	done

# Tests find the prebuilt binaries here instead of building their own.
export LANMESH_BIN_DIR := $(abspath $(BIN))

# Every phase runs even when an earlier one failed, so one CI run shows
# all failures; the summary at the end names the failed phases.
test: deps build
	@failed=""; \
	for phase in vet test-unit test-e2e fuzz-short; do \
		t0=$$SECONDS; echo "=== $$phase"; \
		if $(MAKE) --no-print-directory $$phase; then echo "=== $$phase ok ($$((SECONDS - t0))s)"; \
		else echo "=== $$phase FAILED ($$((SECONDS - t0))s)"; failed="$$failed $$phase"; fi; \
	done; \
	if [ -n "$$failed" ]; then echo "make test: FAILED:$$failed"; exit 1; fi; \
	echo "make test: all passed"

# vet: the standard analyzers, lanmesh's own (cmd/lanmesh-vet: secrets
# compared only in constant time, S8; tests skip only through
# internal/testenv, so CI=true fails instead of skipping) and go mod tidy.
vet: vet-own tidy-check
	go vet ./...

vet-own:
	@mkdir -p $(BIN)
	go build -o $(BIN)/lanmesh-vet ./cmd/lanmesh-vet
	go vet -vettool=$(abspath $(BIN))/lanmesh-vet ./...

# Fails when `go mod tidy` would change go.mod or go.sum.
tidy-check:
	@if ! out=$$(go mod tidy -diff 2>&1); then \
		echo "go.mod/go.sum are not tidy; run go mod tidy. It would change:"; echo "$$out"; exit 1; \
	fi

# Unit packages run without -race: internal/opkg gunzips and checks every
# cross-built package (TestPackages: 24 s plain, 410 s under -race, and it
# has no goroutines of its own to race).
NORACE_PKGS := github.com/lanmesh/lanmesh/internal/opkg

test-unit:
	@pkgs=$$(go list ./... | grep -Ev '/e2e(/|$$)' | grep -Fvx -f <(tr ' ' '\n' <<<"$(NORACE_PKGS)") || true); \
	echo "go test -race -timeout $(UNIT_TIMEOUT) <$$(wc -w <<<"$$pkgs") packages>"; \
	go test -race -timeout $(UNIT_TIMEOUT) $(TESTFLAGS) $$pkgs; \
	echo "go test -timeout $(UNIT_TIMEOUT) $(NORACE_PKGS)"; \
	go test -timeout $(UNIT_TIMEOUT) $(TESTFLAGS) $(NORACE_PKGS)

test-e2e:
	@pkgs=$$(go list ./... | grep -E '/e2e(/|$$)' || true); \
	if [ -z "$$pkgs" ]; then echo "test-e2e: no e2e packages"; exit 0; fi; \
	echo "go test -p 1 -timeout $(E2E_TIMEOUT) $$pkgs"; \
	go test -p 1 -count=1 -timeout $(E2E_TIMEOUT) $(TESTFLAGS) $$pkgs

fuzz-short:
	@FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

# make fuzz runs each target for 1m unless FUZZTIME is given (make fuzz FUZZTIME=10m).
fuzz: deps
	@FUZZTIME=$(if $(filter command line environment,$(origin FUZZTIME)),$(FUZZTIME),1m) scripts/fuzz.sh

# The demo installs and builds only what it runs, so a fresh machine
# reaches the first packet quickly (README.md has the measurement):
# scripts/deps.sh demo (iproute2, nftables, ping, dnsmasq; no test tools,
# no staticcheck) and one go build of the two binaries it starts plus the
# demo itself, for the host only (no router cross-builds). The install
# (network and dpkg) runs while Go compiles (CPU): the build needs none of
# those packages.
DEMO_CMDS := lanmesh lanmesh-coord lanmesh-demo
demo:
	@mkdir -p $(BIN)
	@scripts/deps.sh demo & deps=$$!; \
	echo "build: $(addprefix $(BIN)/,$(DEMO_CMDS))"; \
	CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "$(LDFLAGS_X)" -o $(BIN)/ $(addprefix ./cmd/,$(DEMO_CMDS)) || { wait $$deps; exit 1; }; \
	wait $$deps || { echo "make demo: scripts/deps.sh demo failed (see above)"; exit 1; }
	$(BIN)/lanmesh-demo $(DEMO_FLAGS)

bench: deps build packages
	go build -o $(BIN)/lanmesh-bench ./cmd/lanmesh-bench
	$(BIN)/lanmesh-bench -bin $(abspath $(BIN)) -out bench/results -n $(BENCH_N) -t $(BENCH_TIME) $(BENCH_FLAGS)

packages: deps build-cross
	@for p in $(PKG_COORD_PLATFORMS); do \
		IFS=/ read -r os arch variant <<<"$$p"; \
		scripts/build.sh lanmesh-coord "$(BIN)/$${os}_$${arch}/lanmesh-coord" 0 "$$p" "$(LDFLAGS_X)"; \
	done
	go run ./cmd/lanmesh-packages --bin $(BIN) --feed firmware/openwrt --out $(BIN)/packages --version $(PKG_VERSION) --release $(PKG_RELEASE)

lint:
	@unformatted=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*')); \
	if [ -n "$$unformatted" ]; then echo "gofmt: these files need formatting (gofmt -w):"; echo "$$unformatted"; exit 1; fi
	@$(MAKE) --no-print-directory vet
	@command -v staticcheck >/dev/null || scripts/deps.sh
	staticcheck ./...
	shellcheck scripts/*.sh .ci/run

clean:
	rm -rf $(BIN)
	go clean -testcache
