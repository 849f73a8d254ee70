# The README's two commands live here: `make demo` and `make test`.
# Each creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev

.PHONY: demo test bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## demo: synthetic world -> train a small CycleGAN on the CPU -> scored translations
demo: $(STAMP)
	$(BIN)/cyclekit quickstart

## bench: speed benchmarks against the official training step (CPU or CUDA); rewrites the
## issue-5 section of BENCHMARKS.md
bench: $(STAMP)
	$(BIN)/python benchmarks/run.py --write-md BENCHMARKS.md

## test: the whole test suite (CPU only, no network)
test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs .pytest_cache
