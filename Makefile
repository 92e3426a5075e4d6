# minikfac — the two commands a newcomer needs are `make demo` and `make test`.
# Everything runs inside .venv, created with $(PYTHON) -m venv on first use.
# Stamp files in .venv remember what was installed, so repeated runs do not
# reinstall; editing setup.cfg or pyproject.toml triggers a fresh install.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python

BASE_STAMP := $(VENV)/.stamp-base
DEV_STAMP  := $(VENV)/.stamp-dev
DOCS_STAMP := $(VENV)/.stamp-docs

.DEFAULT_GOAL := help
.PHONY: help install demo test lint bench tutorials notebooks docs docs-check clean

help:  ## show this help
	@echo "minikfac make targets:"
	@echo "  make demo       create .venv, install minikfac, train a small net, write report/"
	@echo "  make test       create .venv, install minikfac[dev], run the whole test suite"
	@echo "  make install    create .venv and install minikfac (editable) with its dev tools"
	@echo "  make lint       ruff check (no changes made)"
	@echo "  make bench      run every benchmarks/*.py"
	@echo "  make tutorials  run every tutorials/NN_*.py as a script (figures in report/tutorials/)"
	@echo "  make notebooks  turn the tutorials into .ipynb notebooks next to them (jupytext)"
	@echo "  make docs       build the course site in site/ (executes the tutorials; no network needed)"
	@echo "  make docs-check open every page of site/ in headless Chromium and check it"
	@echo "  make clean      remove .venv and generated reports"
	@echo "Variables: PYTHON=$(PYTHON) (interpreter used to create the venv), VENV=$(VENV)"

$(PY):
	$(PYTHON) -m venv $(VENV)

$(BASE_STAMP): setup.cfg pyproject.toml | $(PY)
	$(PY) -m pip install -e .
	touch $@

# The dev extras include the base install, so they satisfy both stamps.
$(DEV_STAMP): setup.cfg pyproject.toml | $(PY)
	$(PY) -m pip install -e '.[dev]'
	touch $@ $(BASE_STAMP)

# The docs extras add the site's tools (mkdocs, MathJax, selenium) to the dev ones.
$(DOCS_STAMP): setup.cfg pyproject.toml | $(PY)
	$(PY) -m pip install -e '.[dev,docs]'
	touch $@ $(DEV_STAMP) $(BASE_STAMP)

install: $(DEV_STAMP)

demo: $(BASE_STAMP)
	$(BIN)/minikfac demo

# One BLAS thread: the tests use small matrices, and on a shared 2-core machine
# OpenBLAS's default threads made eigh up to 30x slower (the suite 61 s instead of 12 s).
test: $(DEV_STAMP)
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 $(PY) -m pytest -q

lint: $(DEV_STAMP)
	$(PY) -m ruff check .

bench: $(BASE_STAMP)
	@set -e; found=0; \
	for script in benchmarks/*.py; do \
		[ -e "$$script" ] || continue; found=1; \
		echo "== $$script"; $(PY) "$$script"; \
	done; \
	[ $$found = 1 ] || echo "no benchmarks/*.py yet"

tutorials: $(BASE_STAMP)
	@set -e; for script in tutorials/[0-9][0-9]_*.py; do \
		echo "== $$script"; MPLBACKEND=Agg OPENBLAS_NUM_THREADS=1 $(PY) "$$script"; \
	done

notebooks: $(DEV_STAMP)
	$(BIN)/jupytext --to ipynb tutorials/[0-9][0-9]_*.py

# The site: tutorials executed as notebooks (cached in build/notebooks/), pages staged in
# build/site-src/, then mkdocs --strict. docs-check needs Debian's chromium and chromium-driver.
docs: $(DOCS_STAMP)
	$(PY) docs/build_site.py

docs-check: docs
	$(PY) docs/check_site.py

clean:
	rm -rf $(VENV) report build site
