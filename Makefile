# The two commands of the README, each doing its own set-up in a local virtualenv (.venv):
#   make demo   train a small CNN on CIFAR-10 (or the embedded sample when CIFAR-10 is not found) and print accuracy
#   make test   install minidl with its test dependencies and run the test suite
# and for contributors (CI runs all three, .ci/run):
#   make lint   ruff check and ruff format --check
#   make docs   build the documentation site into site/ (Sphinx; any warning is an error), executing first the
#               tutorial notebooks whose page is missing or older than its source
# and for the tutorials:
#   make notebooks   execute every notebook of notebooks/ into docs/tutorials/*.ipynb (NB_QUICK=0: full settings)
# and for kernel work:
#   make clean-kernels   delete Numba's cached kernels (after editing a helper that other files' kernels inline:
#               Numba recompiles a kernel only when its own file changes; see CONTRIBUTING.md)
# Variables: PYTHON (the interpreter that creates .venv), TORCH (the PyTorch requirement for the parity tests;
# empty to skip them: `make test TORCH=`), PYTEST_ARGS (extra pytest arguments, e.g. `-m slow`), DATA_DIR (where
# the demo and the notebooks look for data; default: ../shared/data when it exists, else $MINIDL_DATA_DIR and the
# cache), NB_QUICK (1: the notebooks' quick settings, the default; 0: their full settings).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
PYTEST_ARGS ?=
RUFF ?= ruff==0.17.6
LINT_PATHS := minidl tests examples benchmarks scripts assignments notebooks docs/conf.py conftest.py
DATA_DIR ?= $(firstword $(wildcard ../shared/data))
NB_QUICK ?= 1
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.py))
NOTEBOOK_PAGES := $(patsubst notebooks/%.py,docs/tutorials/%.ipynb,$(NOTEBOOKS))
# `$(RUN_NOTEBOOK) OUT.ipynb SOURCE.py`: read the jupytext file, execute it with nbclient in an IPython kernel (in
# notebooks/, figures drawn inline), write the notebook with its outputs
RUN_NOTEBOOK = MINIDL_NOTEBOOK_QUICK=$(NB_QUICK) $(if $(DATA_DIR),MINIDL_DATA_DIR=$(abspath $(DATA_DIR))) \
	$(BIN)/python -c "import sys, jupytext, nbclient; nb = jupytext.read(sys.argv[2]); \
	nbclient.NotebookClient(nb, timeout=None, resources={'metadata': {'path': 'notebooks'}}).execute(); \
	jupytext.write(nb, sys.argv[1])"

.PHONY: demo test docs notebooks install install-test install-docs lint clean clean-kernels

demo: install
	$(BIN)/python examples/train_cifar10.py --quick $(if $(DATA_DIR),--data-dir $(DATA_DIR)) --out runs/demo

test: install-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $@

install-test: $(VENV)/.installed-test
$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test,dist]"
	@if [ -n "$(TORCH)" ]; then \
	  $(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH)" \
	  || echo "PyTorch ($(TORCH)) could not be installed: the parity tests will be skipped"; fi
	touch $@

install-docs: $(VENV)/.installed-docs
$(VENV)/.installed-docs: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[docs,dist]"
	touch $@

# -E: read every page again, so that each build reports every warning (an incremental one repeats none)
docs: install-docs $(NOTEBOOK_PAGES)
	$(BIN)/sphinx-build -E -W --keep-going -b html docs site

# the page of a notebook: executed again only when its source changed (make notebooks: all of them, always)
docs/tutorials/%.ipynb: notebooks/%.py | install-docs
	$(RUN_NOTEBOOK) $@ $<

notebooks: install-docs
	@for nb in $(NOTEBOOKS); do \
	  echo "executing $$nb"; \
	  $(RUN_NOTEBOOK) docs/tutorials/$$(basename $$nb .py).ipynb $$nb || exit 1; done

lint: | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(RUFF)"
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

clean: clean-kernels
	rm -rf $(VENV) build site *.egg-info .pytest_cache .hypothesis docs/tutorials/*.ipynb jupyter_execute

clean-kernels:
	rm -f minidl/backend/__pycache__/*.nbi minidl/backend/__pycache__/*.nbc
