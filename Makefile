# mod_invites_register (native): build, install, test, run.
# Verbs follow Prosody's Makefile: all, test, test-%, lint, install, run, bench, clean.

LUA_VERSION ?= 5.4
LUA ?= lua$(LUA_VERSION)
CARGO ?= cargo
PLUGIN_DIR ?= /usr/local/lib/prosody/modules
MODULE := mod_invites_register
LIB := invites_register
FEATURE := lua$(subst .,,$(LUA_VERSION))
BUILD := build/lua$(LUA_VERSION)
VENV := .venv
PYTHON := $(VENV)/bin/python

.PHONY: all build install run test test-rust test-spec test-e2e test-hostile test-slow lint bench clean deps

all: build

build: $(BUILD)/$(LIB).so

$(BUILD)/$(LIB).so: Cargo.toml Cargo.lock $(wildcard src/*.rs)
	$(CARGO) build --release --no-default-features --features $(FEATURE)
	mkdir -p $(BUILD)
	cp target/release/lib$(LIB).so $@

install: build
	install -d $(PLUGIN_DIR)/$(MODULE)
	install -m 644 lua/$(MODULE).lua $(PLUGIN_DIR)/$(MODULE)/$(MODULE).lua
	install -m 644 $(BUILD)/$(LIB).so $(PLUGIN_DIR)/$(MODULE)/$(LIB).so

$(VENV)/.stamp: tests/e2e/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r tests/e2e/requirements.txt
	touch $@

deps:
	sh tools/install-deps.sh

test: deps
	sh tools/test-all.sh

test-rust:
	$(CARGO) test --no-default-features --features $(FEATURE)

test-spec: build
	busted --lua=$(LUA) --cpath='$(BUILD)/?.so' spec/

test-%: build
	busted --lua=$(LUA) --cpath='$(BUILD)/?.so' spec/$*_spec.lua

test-e2e: build $(VENV)/.stamp
	$(PYTHON) -m pytest -q tests/e2e

# The full generated hostile corpus (E2E_HOSTILE_SEED, E2E_HOSTILE_COUNT), well under 5 min.
test-hostile: build $(VENV)/.stamp
	$(PYTHON) -m pytest -q -m hostile tests/e2e

# Long resource runs (10,000 registrations + 10,000 failed preauths, sliding window): ~7 min.
test-slow: build $(VENV)/.stamp
	$(PYTHON) -m pytest -q -m slow tests/e2e

run: deps build
	sh tools/run.sh

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --no-default-features --features $(FEATURE) -- -D warnings
	luacheck lua spec tests/e2e/plugins
	sh tools/check-layers.sh

clean:
	$(CARGO) clean
	rm -rf build $(VENV)

# Compatibility matrix (README.md, "Compatibility").
.PHONY: test-matrix test-lua-versions
LUA_VERSIONS ?= 5.1 5.2 5.3 5.4

# e2e suite for Prosody {0.12.3, 13.0.1, newest 13.0.x} x storage {internal, sqlite, postgres}, minus
# 0.12 x {internal, sqlite} (`make test` runs those); per-cell summary, "N passed, N failed".
test-matrix: build $(VENV)/.stamp
	bash tools/matrix/run-matrix.sh

# Native library built for each Lua in LUA_VERSIONS, busted specs run with that Lua.
test-lua-versions:
	bash tools/matrix/lua-versions.sh $(LUA_VERSIONS)

# Throughput, stock vs ours, on private Prosody servers (bench/bench.py; BENCHMARKS.md).
# `bench` ~15-25 min writes BENCHMARKS.md; `bench-quick` < 3 min writes build/bench-quick.md.
# Extra options through BENCH_ARGS, e.g. BENCH_ARGS="--timing" or "--data-root /dev/shm".
.PHONY: bench-quick bench-native
BENCH_ARGS ?=

bench: build
	python3 bench/bench.py --profile full $(BENCH_ARGS)

bench-quick: build
	python3 bench/bench.py --profile quick $(BENCH_ARGS)

bench-native: build
	$(LUA) bench/native.lua $(BUILD)

# Packages for admins without cargo (README.md, "Installing"); artefacts in dist/ with SHA256SUMS.
# `dist`: dist/mod_invites_register-<version>-lua<X.Y>-<arch>.tar.gz (LUA_VERSION=5.4 default).
# `deb`: dist/prosody-mod-invites-register_<version>_<arch>.deb (Lua 5.4, Debian's Prosody).
# `rock`: dist/rocks/ (a .src.rock and its manifest) for `prosodyctl install --server=dist/rocks`.
.PHONY: dist deb rock test-dist test-deb test-rock test-packages invite

dist:
	bash packaging/dist.sh $(LUA_VERSION)

deb:
	bash packaging/deb.sh

rock:
	bash packaging/rock.sh

# Build each artefact, install it, register accounts through the installed copy (as root).
test-dist:
	bash tests/packaging/test-dist.sh

test-deb: $(VENV)/.stamp
	bash tests/packaging/test-deb.sh

test-rock:
	bash tests/packaging/test-rock.sh

test-packages: test-dist test-deb test-rock

# A fresh invite URI for the server `make run` started (same PORT / XMPP_HOST as make run).
invite:
	@sh tools/run.sh invite
