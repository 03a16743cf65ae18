# Quick start: `make demo` and `make test` on a fresh machine with Python >= 3.10 and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
STAMP_TEST := $(VENV)/.installed-test
STAMP_DEMO := $(VENV)/.installed-demo

.PHONY: demo test lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP_DEMO): $(PY) pyproject.toml
	$(PIP) install -e .
	touch $@

$(STAMP_TEST): $(PY) pyproject.toml
	$(PIP) install -e '.[test,numba,onnx,dask]'
	touch $@

demo: $(STAMP_DEMO)
	$(PY) scripts/demo.py

test: $(STAMP_TEST)
	$(PY) -m ruff check .
	$(PY) -m pytest -q

lint: $(STAMP_TEST)
	$(PY) -m ruff check .
	$(PY) -m mypy hubkit

bench: $(STAMP_TEST)
	$(PY) scripts/bench_engine.py

clean:
	rm -rf $(VENV) .demo build *.egg-info
