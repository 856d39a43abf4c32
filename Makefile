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
WEB_DIR := export/examples/web
WEB_STAMP := $(WEB_DIR)/node_modules/.installed-stamp
RUN_DIR := runs/pixelcnn
WEB_MODEL := $(RUN_DIR)/best.sampler.onnx
WEB_PORT ?= 8000
WEB_PRECISION ?= float64
SOURCES := setup.py requirements.txt $(wildcard csrc/*.cpp csrc/*.h csrc/cuda/*.cpp csrc/cuda/*.cu csrc/cuda/*.h \
	csrc/cuda/*.cuh csrc/emulation/*.cpp csrc/emulation/*.h)

.PHONY: install train test bench clean lint format figures chromium web-demo web-screenshot gpu-check sanitize

install: $(STAMP) $(NODE_STAMP) $(WEB_STAMP) chromium

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

# The web demo's onnxruntime-web (its wasm files ship in the npm package) and puppeteer-core (no browser download).
$(WEB_STAMP): $(WEB_DIR)/package.json $(WEB_DIR)/package-lock.json
	if command -v npm >/dev/null; then \
	  cd $(WEB_DIR) && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error && \
	  touch node_modules/.installed-stamp; \
	else echo "npm not found: the web demo's browser test will be skipped (apt-get install nodejs npm)"; fi

# The browser test drives the distribution's Chromium (CHROMIUM=/path overrides); installed here when root can.
chromium:
	@if [ -n "$$CHROMIUM" ] || command -v chromium >/dev/null || command -v chromium-browser >/dev/null \
	   || command -v google-chrome >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Chromium for the web demo's browser test (apt-get install chromium)"; \
	  apt-get install -y -qq chromium >/dev/null \
	    || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; \
	else echo "Chromium not found: the web demo's browser test will be skipped; install it with" \
	  "'sudo apt-get install chromium' (Debian/Ubuntu) or set CHROMIUM=/path/to/chrome"; fi

# The demo page with the default training run's model (trained first when there is none), served from the checkout.
web-demo: $(WEB_MODEL) $(WEB_STAMP)
	node $(WEB_DIR)/serve.js --model $(WEB_MODEL) --port $(WEB_PORT)

# The README's screenshot: the page as a person uses it (sample, take the first sample, complete it).
web-screenshot: $(WEB_MODEL) $(WEB_STAMP) chromium
	node $(WEB_DIR)/drive.mjs --model $(WEB_MODEL) --screenshot docs/images/web-demo.png

# float64 network: onnxruntime-web runs it, and it draws exactly Python's images for the same uniforms
$(WEB_MODEL): $(RUN_DIR)/best.pt
	$(PYTHON) -m export onnx --checkpoint $< --sampler --precision $(WEB_PRECISION) --out $@ || { rm -f $@; exit 1; }

$(RUN_DIR)/best.pt: | $(STAMP)
	$(PYTHON) -m pixelcnn.train --compile

train: $(STAMP)
	$(PYTHON) -m pixelcnn.train --compile

# lint and the sanitizer run first: they take seconds and fail fast
test: $(STAMP) $(NODE_STAMP) $(WEB_STAMP) chromium lint sanitize
	$(PYTHON) -m pytest -q -ra

bench: $(STAMP) $(NODE_STAMP)
	$(PYTHON) -m pytest benchmarks --benchmark-only --benchmark-json=benchmarks/results/latest.json
	$(PYTHON) -m benchmarks.report benchmarks/results/latest.json

# Python (ruff.toml) and C++/CUDA (csrc/.clang-format) style; `make format` rewrites what `make lint` flags.
CSRC_FILES = $(shell git ls-files 'csrc/*.cpp' 'csrc/*.h' 'csrc/*.cu' 'csrc/*.cuh')
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/clang-format --dry-run -Werror $(CSRC_FILES)

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
	$(VENV)/bin/clang-format -i $(CSRC_FILES)

# README figures: a short run on the real MNIST test images (ImageFolder copy), its loss curve and a sample grid.
SHARED_DATA ?= ../shared/data
FIGURE_RUN := runs/mnist-figures
figures: $(STAMP)
	$(PYTHON) -m pixelcnn.train --dataset folder --data-dir $(SHARED_DATA)/mnist-t10k-folder --channels 1 \
	  --epochs 4 --save-dir runs --model-name mnist-figures --n-per-class 8
	mkdir -p docs/images
	cp $(FIGURE_RUN)/loss_curve.png docs/images/mnist-loss.png
	$(PYTHON) -m pixelcnn.sample --checkpoint $(FIGURE_RUN)/best.pt --out docs/images/mnist-samples.png \
	  --n-per-class 8 --seed 1

# One command for the day a GPU appears (benchmarks/gpu_check.py): builds the extension, runs the tests (the GPU ones
# run there), times the masked-conv kernel and writes benchmarks/results/<gpu-name>.md; without a GPU it says so and
# runs the static SASS checks. Uses the venv when there is one, else the system python3 (torch >= 2.11, triton >= 3.6).
GPU_PYTHON ?= $(if $(wildcard $(PYTHON)),$(PYTHON),$(PY))
# Then the CUDA sampler's benchmarks (seed size included); they skip without a GPU.
gpu-check:
	$(GPU_PYTHON) -m benchmarks.gpu_check
	$(GPU_PYTHON) -m pytest benchmarks/bench_sampling_cuda.py --benchmark-only --gpu-sizes \
	  --benchmark-json=benchmarks/results/gpu-sampling.json

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
