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
SOURCES := setup.py requirements.txt $(wildcard csrc/*.cpp csrc/*.h csrc/cuda/*.cpp csrc/cuda/*.cu csrc/cuda/*.h \
	csrc/cuda/*.cuh csrc/emulation/*.cpp csrc/emulation/*.h)

.PHONY: install train test bench clean sanitize gpu-check

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

# On a machine with a CUDA GPU: the GPU-only tests, then the CUDA sampling benchmarks (seed size included).
gpu-check: $(STAMP)
	$(PYTHON) -m pytest -q -ra -m gpu tests
	$(PYTHON) -m pytest benchmarks/bench_sampling_cuda.py --benchmark-only --gpu-sizes \
	  --benchmark-json=benchmarks/results/gpu.json

# The CUDA emulation and the fused sampler kernel's source (no torch) under AddressSanitizer + UBSan.
COMMA := ,
SANITIZE_FLAGS := -std=c++20 -O1 -g -ffp-contract=off -fsanitize=address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer
# ASan builds switch fibers with ucontext, others with the x86-64 fast switch: UBSan alone checks the latter.
sanitize:
	mkdir -p build
	$(CXX) $(SANITIZE_FLAGS) csrc/emulation/selftest.cpp -o build/emulation_selftest
	ASAN_OPTIONS=detect_leaks=1 build/emulation_selftest
	$(CXX) $(subst address$(COMMA),,$(SANITIZE_FLAGS)) csrc/emulation/selftest.cpp -o build/emulation_selftest_ub
	build/emulation_selftest_ub

clean:
	rm -rf build *.egg-info pixelcnn/_C*.so .pytest_cache .benchmarks
