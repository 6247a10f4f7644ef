# Two entry points for a newcomer: `make demo` and `make test`. Both build .venv from pyproject.toml.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install demo test test-fast lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,demo,bench]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m demo

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The in-process lane: pipeline, sender, sweeper, webhook applier and routes, in well under a minute.
test-fast: install
	$(PY) -m pytest -q tests/fast $(PYTEST_ARGS)

# ruff (lint and format) over the tree, mypy over tasks/ and webapi/; all configured in pyproject.toml.
lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

clean:
	rm -rf $(VENV) .demo .pytest_cache
