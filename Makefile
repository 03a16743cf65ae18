# Quick start: `make demo` and `make test` on a fresh machine with Python >= 3.10 and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
STAMP_TEST := $(VENV)/.installed-test
STAMP_DEMO := $(VENV)/.installed-demo

.PHONY: demo test wheel lint bench clean

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

# The wheel check builds the sdist and wheel, installs the wheel into a fresh virtualenv in a temp
# directory and smoke-tests it there (scripts/check_wheel.py); the suite runs last, so its summary closes.
test: $(STAMP_TEST)
	$(PY) -m ruff check .
	$(PY) scripts/check_wheel.py
	$(PY) -m pytest -q

wheel: $(STAMP_TEST)
	$(PY) scripts/check_wheel.py

lint: $(STAMP_TEST)
	$(PY) -m ruff check .
	$(PY) -m mypy hubkit

bench: $(STAMP_TEST)
	$(PY) scripts/bench_engine.py

clean:
	rm -rf $(VENV) .demo build dist *.egg-info
