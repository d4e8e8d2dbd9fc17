# The README's two commands: `make serve` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=
, := ,

.PHONY: serve test check unit bench bench-fleet fuzz demo-camera camera-deps system-deps kube-tools interop-tools node-images clean



# One install into $(VENV) at a time: `make serve` and `make demo-camera` in two
# terminals would otherwise run two pip installs into one venv at once. The
# second make waits for the lock, then checks again whether the target is up to
# date (newer than its prerequisites) and finds the first one's install done.
define locked
	@mkdir -p $(VENV)
	flock $(VENV)/.install.lock bash -c 'set -e; for f in $^; do [ $@ -nt $$f ] || { $(1); exit; }; done; [ -e $@ ] || { $(1); }'
endef

$(BIN)/python:
	$(call locked,{ $(PYTHON) -m venv $(VENV) || { scripts/install-system-deps.sh runtime && $(PYTHON) -m venv $(VENV); }; } && $(BIN)/python -m pip install -q --upgrade pip)

# setup.py compiles the worker's C receive loops: a change to them reinstalls.
$(VENV)/.runtime: pyproject.toml setup.py streamgrid/capture/_luma.c streamgrid/capture/_packets.c streamgrid/capture/_rtp.c | $(BIN)/python
	$(call locked,$(BIN)/python -m pip install -q -e . && touch $@)

$(VENV)/.test: pyproject.toml $(VENV)/.runtime
	$(call locked,$(BIN)/python -m pip install -q -e ".[test]" && touch $@)

## Run the service, embedded runtime, on 127.0.0.1:8080 (frames in ./streamgrid-data).
serve: $(VENV)/.runtime
	$(BIN)/streamgrid serve $(ARGS)

## A live RTSP test camera on rtsp://127.0.0.1:8554/demo (and /gray, /clock).
## Installs only the camera's Debian packages (GStreamer), as root or via sudo.
demo-camera: camera-deps $(VENV)/.runtime
	$(BIN)/streamgrid demo-camera $(ARGS)

camera-deps:
	scripts/install-system-deps.sh camera

system-deps:
	scripts/install-system-deps.sh

## kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy,
## kubectl, helm, CoreDNS and MinIO from the pinned Go modules.
kube-tools:
	bash tools/kube/build.sh

## mediamtx and live555, the RTSP servers of the interoperability tests, from
## pinned sources (cached in ~/.cache/streamgrid/mediamtx and .../live555).
interop-tools: system-deps | $(BIN)/python
	bash tools/mediamtx/build.sh
	PIP="$(abspath $(BIN))/python -m pip" bash tools/live555/build.sh

## The test node's images: a debootstrap Debian base, the Containerfiles built
## with podman, MinIO's, saved as OCI archives (cached in ~/.cache/streamgrid/node).
node-images: system-deps kube-tools $(VENV)/.runtime
	bash tools/node/images.sh

## Lint, types, every test (the fixtures start the RTSP camera, S3 server, control
## planes and the real node), then the benchmark in its short mode, so it cannot
## rot (it asserts nothing about time).
test: system-deps kube-tools interop-tools node-images $(VENV)/.test check
	$(BIN)/pytest $(ARGS)
	$(BIN)/python -m bench --short
	$(BIN)/python -m bench --fleet 200 --short

## The cluster runtime at fleet scale (bench/fleet.py; about 40 minutes): this
## tree's operator and gateway at 1,000, 3,000 and 10,000 VideoStreams, and
## BASELINE's (a checkout of another revision) at 1,000 and 3,000, side by side.
BASELINE ?=
bench-fleet: system-deps kube-tools $(VENV)/.test
	$(BIN)/python -m bench --fleet 1000,3000,10000 --markdown docs/benchmarks.md \
		$(if $(BASELINE),--baseline-tree $(BASELINE) --fleet-baseline 1000$(,)3000) $(ARGS)

## The full benchmark (about 25 minutes); results go to docs/benchmarks.md.
bench: system-deps $(VENV)/.test
	$(BIN)/python -m bench --markdown docs/benchmarks.md $(ARGS)

## Fuzz the C receive loop (streamgrid/capture/_rtp.c) built with ASan and UBSan,
## FUZZ_SECONDS long (10 minutes by default); inputs that crash or hang it land
## in tests/fuzz/corpus/ (commit them: the unit tests replay them). docs/fuzzing.md.
FUZZ_SECONDS ?= 600
fuzz: system-deps $(VENV)/.test
	$(BIN)/python -m tests.fuzz --seconds $(FUZZ_SECONDS) $(ARGS)

check: $(VENV)/.test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: $(VENV)/.test
	$(BIN)/pytest tests/unit $(ARGS)

clean:
	rm -rf $(VENV) streamgrid-data .mypy_cache .ruff_cache .pytest_cache
