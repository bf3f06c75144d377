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

.PHONY: all build install run test test-rust test-spec test-e2e lint bench clean deps

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
