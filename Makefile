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
# the demo serves the repository's pretrained MNIST model (pretrained/mnist, `make pretrained` re-makes it)
PRETRAINED := pretrained/mnist
WEB_MODEL := $(PRETRAINED).sampler.onnx
WEB_PORT ?= 8000
WEB_PRECISION ?= float64
SOURCES := setup.py requirements.txt $(wildcard csrc/*.cpp csrc/*.h csrc/cuda/*.cpp csrc/cuda/*.cu csrc/cuda/*.h \
	csrc/cuda/*.cuh csrc/emulation/*.cpp csrc/emulation/*.h)

.PHONY: install train test bench clean lint format figures chromium web-demo web-screenshot gpu-check sanitize pretrained \
	gpu-image-tree test-gpu-image gpu-rehearse

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
$(WEB_MODEL): $(PRETRAINED)/model.safetensors | $(STAMP)
	$(PYTHON) -m export onnx --checkpoint $< --sampler --precision $(WEB_PRECISION) --out $@ || { rm -f $@; exit 1; }

$(RUN_DIR)/best.pt: | $(STAMP)
	$(PYTHON) -m pixelcnn.train --compile

train: $(STAMP)
	$(PYTHON) -m pixelcnn.train --compile

# lint and the sanitizer run first: they take seconds and fail fast; then the main lane, then the GPU-image lane
test: $(STAMP) $(NODE_STAMP) $(WEB_STAMP) chromium lint sanitize
	$(PYTHON) -m pytest -q -ra
	$(MAKE) --no-print-directory test-gpu-image

# Second lane: the GPU machine's own stack (requirements-gpu-image.txt: torch 2.11, triton 3.6) in .venv-gpu-image.
# Its extension is built against torch 2.11 (CUDA sources included) in a copy of the tree, build/gpu-image/src, so
# that its pixelcnn/_C*.so (same Python ABI tag) never overwrites the main lane's in-place build; the copy keeps its
# build dir, so only changed sources recompile. The browser and Node tests stay in the main lane.
GPU_VENV := .venv-gpu-image
GPU_PYTHON_LANE := $(CURDIR)/$(GPU_VENV)/bin/python
GPU_STAMP := $(GPU_VENV)/.installed-stamp
GPU_TREE := build/gpu-image/src
$(GPU_STAMP): requirements-gpu-image.txt
	test -x $(GPU_VENV)/bin/python || $(PY) -m venv $(GPU_VENV)
	$(GPU_PYTHON_LANE) -m pip --disable-pip-version-check install -q -r requirements-gpu-image.txt 2>&1 \
	  | { grep -v "^WARNING: Location" || true; }
	touch $(GPU_STAMP)

gpu-image-tree: $(GPU_STAMP)
	mkdir -p $(GPU_TREE)
	find $(GPU_TREE) -mindepth 1 -maxdepth 1 ! -name build ! -name pixelcnn -exec rm -rf {} +
	find $(GPU_TREE)/pixelcnn -mindepth 1 ! -name '_C*.so' -delete 2>/dev/null || true
	git ls-files -co --exclude-standard -z | xargs -0 cp -p --parents -t $(GPU_TREE)
	cd $(GPU_TREE) && MAX_JOBS=2 TORCH_CUDA_ARCH_LIST=9.0 $(GPU_PYTHON_LANE) setup.py -q build_ext --inplace \
	  2>&1 | { grep -v "^WARNING\|warning:" || true; }
	cd $(GPU_TREE) && $(GPU_PYTHON_LANE) -c "import torch, pixelcnn._C as c; assert torch.__version__.startswith('2.11'), \
	  torch.__version__; print('gpu-image lane:', torch.__version__, c.__file__)"

# The lane's tests (the CI budget on 2 cores): every test of the Triton op, the precision/TF32/autocast rules, the
# exports, the CUDA emulation, the extension, gpu_check and the SASS checks, and the model/sampling tests they build
# on; GPU_LANE_TESTS=tests runs the whole suite there.
GPU_LANE_TESTS ?= tests/test_triton_masked_conv.py tests/test_triton_auto.py tests/test_triton_gpu_check.py \
	tests/test_triton_sass.py tests/test_precision.py tests/test_cropped_conv.py tests/test_export.py \
	tests/test_step_export.py tests/test_sampler_onnx.py tests/test_cuda_emulated.py \
	tests/test_cuda_emulation_selftest.py tests/test_cuda_static.py tests/test_extension.py tests/test_inference.py \
	tests/test_sampling.py tests/test_masks.py tests/test_model_inputs.py tests/test_reference_model.py \
	tests/test_gated_extension.py tests/test_gated_cuda_emulated.py
test-gpu-image: gpu-image-tree
	cd $(GPU_TREE) && PIXELCNN_SHARED_DATA=$(CURDIR)/../shared/data $(GPU_PYTHON_LANE) -m pytest -q -ra \
	  -p no:cacheprovider $(GPU_LANE_TESTS) --ignore=tests/test_web.py --deselect \
	  tests/test_step_export.py::test_node_onnxruntime_draws_the_same_images_as_python --deselect \
	  tests/test_step_export.py::test_node_example_rejects_bad_input

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

# The pretrained MNIST model in pretrained/mnist (config.json, model.safetensors, model card, samples at the seed's
# temperature 0.6) and the README's sample pictures (0.6 beside 1.0): the default-size model on the 9,000 real MNIST
# images of ../shared/data, test bits/dim on the 1,000 held out (about 35 min on 2 busy CPU cores).
PRETRAINED_RUN := runs/mnist-pretrained
PRETRAINED_TRAIN := python -m pixelcnn.train --dataset folder --data-dir ../shared/data/mnist-t10k-folder --channels 1 \
	--epochs 13 --compile --save-dir runs --model-name mnist-pretrained
pretrained: $(STAMP)
	$(VENV)/bin/$(PRETRAINED_TRAIN)
	$(PYTHON) -m pixelcnn.sample --checkpoint $(PRETRAINED_RUN)/best.pt --out $(PRETRAINED_RUN)/samples-t0.6.png \
	  --n-per-class 8 --seed 1 --temperature 0.6
	$(PYTHON) -m pixelcnn.sample --checkpoint $(PRETRAINED_RUN)/best.pt --out $(PRETRAINED_RUN)/samples-t1.0.png \
	  --n-per-class 8 --seed 1 --temperature 1.0
	rm -rf $(PRETRAINED) && $(PYTHON) -m pixelcnn.hub $(PRETRAINED_RUN)/best.pt $(PRETRAINED) --title "PixelCNN MNIST" \
	  --data "The 9,000 real MNIST test images 0-8999 (../shared/data/mnist-t10k-folder/train; the MNIST training \
	images are not available offline here); test bits/dim on the 1,000 held-out images 9000-9999 (test/)." \
	  --command "$(PRETRAINED_TRAIN)" --samples $(PRETRAINED_RUN)/samples-t0.6.png \
	  --samples-caption "One row per class, temperature 0.6 (the seed's), seed 1."
	cp $(PRETRAINED_RUN)/samples-t0.6.png docs/images/mnist-samples-t0.6.png
	cp $(PRETRAINED_RUN)/samples-t1.0.png docs/images/mnist-samples-t1.0.png

# One command for a lent GPU (benchmarks/gpu_check.py, <= 8 min on the H200): builds the extension (sm_90,
# MAX_JOBS=16), runs the GPU tests, times the masked-conv kernels, the CUDA sampler and a seed-size train step, and
# writes <gpu-name>.md/.json to GPU_OUT (the device tool's $OUT), the summary table last. Without a GPU it runs the
# static SASS checks. Uses the venv when there is one, else the system python3 (the GPU machine: torch 2.11, triton
# 3.6). Through the device tool, from the repository root, nothing carried:  make gpu-check GPU_OUT=$OUT
GPU_PYTHON ?= $(if $(wildcard $(PYTHON)),$(PYTHON),$(PY))
GPU_OUT ?= benchmarks/results
gpu-check:
	PYTHONUNBUFFERED=1 timeout 470 $(GPU_PYTHON) -m benchmarks.gpu_check --out $(GPU_OUT)

# The same steps on the CPU under the GPU image's stack (tiny sizes, Triton interpreter): the plan, then the report.
gpu-rehearse: gpu-image-tree
	cd $(GPU_TREE) && PYTHONUNBUFFERED=1 $(GPU_PYTHON_LANE) -m benchmarks.gpu_check --rehearse --out $(CURDIR)/build/rehearsal

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
