# openclaw-gateway — `make run` serves ws://127.0.0.1:18789, `make test` runs every test.
SHELL := /bin/bash
SWIFT ?= swift
PORT ?= 18789
# Debian's python3 (pytest and websockets come from apt), whatever python3 is first on PATH.
PYTHON ?= /usr/bin/python3
APT_PACKAGES := libsystemd-dev pkg-config systemd python3 python3-pytest python3-websockets python3-jsonschema iproute2 strace
DEB_PACKAGES := libsystemd-dev pkg-config debhelper dpkg-dev lintian
E2E_PACKAGES := systemd-container debootstrap util-linux

BIN_DIR = $(shell $(SWIFT) build --show-bin-path)

.PHONY: all deps build release run test unit-test integration-test bench bench-adopt bench-roots deb e2e clean

all: build

# Installs what a fresh Debian machine with Swift lacks; does nothing when all is there.
deps:
	@packaging/apt-deps.sh $(APT_PACKAGES)

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

run: build
	exec $(BIN_DIR)/openclaw-gateway --port $(PORT)

test: deps
	$(SWIFT) build --build-tests
	$(MAKE) unit-test integration-test

unit-test:
	$(SWIFT) test --skip-build

integration-test:
	OPENCLAW_GATEWAY_BIN=$(BIN_DIR)/openclaw-gateway $(PYTHON) -m pytest -q -rs -p no:cacheprovider tests/

# dist/openclaw-gateway_<version>_<arch>.deb, checked by lintian (no error, no warning).
deb:
	@packaging/apt-deps.sh $(DEB_PACKAGES)
	packaging/build-deb.sh

# The .deb on a real systemd (PID 1 in a systemd-nspawn container): tests/systemd/checks.sh.
e2e:
	@packaging/apt-deps.sh $(DEB_PACKAGES) $(E2E_PACKAGES)
	tests/systemd/e2e.sh

clean:
	rm -rf .build .build-static .build-deb dist

# Figures of the binary as it ships in the .deb: the same flags (packaging/release.mk).
STATIC_SCRATCH := .build-static
RELEASE_TOP := $(CURDIR)
include packaging/release.mk
# SwiftPM links <scratch>/release to the build's product folder.
STATIC_BIN := $(STATIC_SCRATCH)/release
# PEER=path/to/go-gateway adds the peer's figures and the ratios (shared/peers/build.sh builds it);
# the load figures are then taken with the peer's wsload too (WSLOAD=, by default the wsload beside
# PEER when there is one; without it only gateway-load runs).
# RUNS / LOAD_RUNS: how many start-up and load runs (bench/RESULTS.md says which it used).
RUNS ?= 10
LOAD_RUNS ?= 3
WSLOAD ?= $(if $(PEER),$(wildcard $(dir $(PEER))wsload))
bench: deps
	@for f in $(RELEASE_LINK_INPUTS); do [ ! $$f -nt $(STATIC_BIN)/openclaw-gateway ] || rm -f $(STATIC_BIN)/openclaw-gateway; done
	$(SWIFT) build $(RELEASE_FLAGS) --scratch-path $(STATIC_SCRATCH)
	$(PYTHON) bench/bench.py --bin $(STATIC_BIN)/openclaw-gateway --load $(STATIC_BIN)/gateway-load \
		--floor-server $(STATIC_BIN)/startup-floor \
		--runs $(RUNS) --load-runs $(LOAD_RUNS) $(if $(PEER),--peer $(PEER)) $(if $(WSLOAD),--wsload $(WSLOAD)) --markdown bench/last-run.md

# The check and adopt phases of a restart's take-back (RestartHandover.connectedTCP, then
# GatewayServer.restore and resume) on loopback sessions, without systemd: the largest part of
# issue 14's pause. ADOPT_SESSIONS / ADOPT_RUNS.
ADOPT_SESSIONS ?= 8000
ADOPT_RUNS ?= 9
bench-adopt: deps
	$(SWIFT) build $(RELEASE_FLAGS) --scratch-path $(STATIC_SCRATCH) --product handover-adopt
	$(STATIC_BIN)/handover-adopt $(ADOPT_SESSIONS) $(ADOPT_RUNS)

# The start-up figures (no load runs) inside the e2e's Debian 12 and 13 roots, the same binaries
# against each release's glibc and libsystemd (bench/in-root.sh; BENCH_RELEASES=trixie for one).
# Needs root; writes bench/last-run-<release>.md.
BENCH_RELEASES ?= bookworm trixie
bench-roots: deps
	@packaging/apt-deps.sh $(E2E_PACKAGES)
	@for f in $(RELEASE_LINK_INPUTS); do [ ! $$f -nt $(STATIC_BIN)/openclaw-gateway ] || rm -f $(STATIC_BIN)/openclaw-gateway; done
	$(SWIFT) build $(RELEASE_FLAGS) --scratch-path $(STATIC_SCRATCH)
	RUNS=$(RUNS) $(if $(PEER),PEER=$(PEER)) bench/in-root.sh $(STATIC_BIN) $(BENCH_RELEASES)
