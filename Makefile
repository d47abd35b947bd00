# Set-up and the two jobs of the README. Everything installs into .venv from the project's files.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# A CPU build of torch first (small and quick); GPU users install their own torch before `make`.
TORCH  ?= torch==2.13.0

.PHONY: setup audit test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev,ray]"
	touch $@

# The main job: the shipped audits on the built-in model, with an HTML report.
audit: setup
	$(BIN)/python -m pytest audits --fl-json reports/results.json --fl-html reports/audit.html

# The test suite (tiny models, plus a few real-model facts through the trace cache).
test: setup
	$(BIN)/python -m pytest tests -n 2

clean:
	rm -rf $(VENV) reports/*.html reports/*.json
