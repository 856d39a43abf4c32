# Fresh machine: `make train` or `make test` creates .venv, installs the pinned stack and builds the extension.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PY ?= python3
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PIP := $(PYTHON) -m pip --disable-pip-version-check
SOURCES := setup.py requirements.txt $(wildcard csrc/*.cpp csrc/*.h csrc/cuda/*.cpp csrc/cuda/*.cu csrc/cuda/*.h)

.PHONY: install train test bench clean

install: $(STAMP)

$(STAMP): $(SOURCES)
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PIP) install -q -r requirements.txt 2>&1 | { grep -v "^WARNING: Location" || true; }
	$(PIP) show torch >/dev/null
	MAX_JOBS=2 $(PIP) install -q --no-build-isolation -e . 2>&1 | { grep -v "^WARNING: Location" || true; }
	$(PYTHON) -c "import torch, pixelcnn._C"
	touch $(STAMP)

train: $(STAMP)
	$(PYTHON) -m pixelcnn.train --compile

test: $(STAMP)
	$(PYTHON) -m pytest -q -ra

bench: $(STAMP)
	$(PYTHON) -m pytest benchmarks --benchmark-only --benchmark-json=benchmarks/results/latest.json
	$(PYTHON) -m benchmarks.report benchmarks/results/latest.json

clean:
	rm -rf build *.egg-info pixelcnn/_C*.so .pytest_cache .benchmarks
