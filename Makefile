# ptlm-course: the two commands a student needs are `make lab` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch first, pinned: on the course's reference machines this picks the local CPU wheel instead of
# gigabytes of CUDA packages. Override on your laptop if you like, e.g. `make lab TORCH=torch`.
TORCH  ?= torch==2.13.0

.PHONY: lab test test-browser doctor install exercises notebooks solutions clean help

help:
	@echo "make lab        create .venv, install the course, open it in JupyterLab (prints a Start here URL)"
	@echo "make test       create .venv, install everything, run every test (unit tests + notebooks)"
	@echo "                (+ the browser tests in tests/browser when /usr/bin/chromium exists)"
	@echo "make test-browser  only the browser tests: JupyterLab in headless Chromium, every widget"
	@echo "make doctor     check this environment and say what to fix"
	@echo "make exercises  regenerate exercises/ from solutions/"
	@echo "make notebooks  re-execute notebooks/ with the full budget and store their outputs"
	@echo "make solutions  re-execute solutions/ and store their outputs"

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml tools/jupyterlab/overrides.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# JupyterLab settings: no news or update pop-ups covering the course
	mkdir -p $(VENV)/share/jupyter/lab/settings
	cp tools/jupyterlab/overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	touch $@

# JupyterLab at the repository root (notebooks/, exercises/, solutions/), landing on notebook 00;
# it prints one "Start here: <url>" line to copy (remote machine, container, WSL).
lab: install
	$(BIN)/python tools/lab.py

test: install
	PTLM_BUDGET=small $(BIN)/python -m pytest

test-browser: install
	PTLM_BUDGET=small $(BIN)/python -m pytest tests/browser -m browser -rs

doctor: install
	$(BIN)/python -m ptlm_course doctor

exercises: install
	$(BIN)/python -m ptlm_course.exercises solutions exercises

notebooks: install
	PTLM_BUDGET=full $(BIN)/python tools/execute_notebooks.py notebooks/*.ipynb

solutions: install
	PTLM_BUDGET=full $(BIN)/python tools/execute_notebooks.py solutions/*.ipynb

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
