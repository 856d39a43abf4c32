# Fresh machine: `make train` or `make test` creates .venv, installs the pinned stack and builds the extension.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PY ?= python3
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PIP := $(PYTHON) -m pip --disable-pip-version-check
NODE_DIR := export/examples/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed-stamp
SOURCES := setup.py requirements.txt $(wildcard csrc/*.cpp csrc/*.h csrc/cuda/*.cpp csrc/cuda/*.cu csrc/cuda/*.h)

.PHONY: install train test bench clean gpu-check

install: $(STAMP) $(NODE_STAMP)

$(STAMP): $(SOURCES)
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PIP) install -q -r requirements.txt 2>&1 | { grep -v "^WARNING: Location" || true; }
	$(PIP) show torch >/dev/null
	MAX_JOBS=2 $(PIP) install -q --no-build-isolation -e . 2>&1 | { grep -v "^WARNING: Location" || true; }
	$(PYTHON) -c "import torch, pixelcnn._C"
	touch $(STAMP)

# The Node.js example's onnxruntime-node (its CPU library ships in the npm package; the install script would fetch
# the CUDA provider from outside the registry, so it is told to skip that).
$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	if command -v npm >/dev/null; then \
	  cd $(NODE_DIR) && ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund --loglevel=error && \
	  touch node_modules/.installed-stamp; \
	else echo "npm not found: the Node.js example's test will be skipped (apt-get install nodejs npm)"; fi

train: $(STAMP)
	$(PYTHON) -m pixelcnn.train --compile

test: $(STAMP) $(NODE_STAMP)
	$(PYTHON) -m pytest -q -ra

bench: $(STAMP) $(NODE_STAMP)
	$(PYTHON) -m pytest benchmarks --benchmark-only --benchmark-json=benchmarks/results/latest.json
	$(PYTHON) -m benchmarks.report benchmarks/results/latest.json

# One command for the day a GPU appears (benchmarks/gpu_check.py): builds the extension, runs the tests (the GPU ones
# run there), times the masked-conv kernel and writes benchmarks/results/<gpu-name>.md; without a GPU it says so and
# runs the static SASS checks. Uses the venv when there is one, else the system python3 (torch >= 2.11, triton >= 3.6).
GPU_PYTHON ?= $(if $(wildcard $(PYTHON)),$(PYTHON),$(PY))
gpu-check:
	$(GPU_PYTHON) -m benchmarks.gpu_check

clean:
	rm -rf build *.egg-info pixelcnn/_C*.so .pytest_cache .benchmarks
