# openclaw-gateway — `make run` serves ws://127.0.0.1:18789, `make test` runs every test.
SHELL := /bin/bash
SWIFT ?= swift
PORT ?= 18789
# Debian's python3 (pytest and websockets come from apt), whatever python3 is first on PATH.
PYTHON ?= /usr/bin/python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := libsystemd-dev pkg-config systemd python3 python3-pytest python3-websockets iproute2

BIN_DIR = $(shell $(SWIFT) build --show-bin-path)
RELEASE_BIN_DIR = $(shell $(SWIFT) build -c release --show-bin-path)

.PHONY: all deps build release run test unit-test integration-test bench clean

all: build

# Installs what a fresh Debian machine with Swift lacks; does nothing when all is there.
deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

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
	OPENCLAW_GATEWAY_BIN=$(BIN_DIR)/openclaw-gateway $(PYTHON) -m pytest -q -p no:cacheprovider tests/

clean:
	rm -rf .build

bench: release
	$(PYTHON) bench/lockbench.py --bin $(RELEASE_BIN_DIR)/openclaw-gateway
