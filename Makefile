# The two commands a new user needs (see README.md):
#   make demo  - install everything, bring up the emulated DPU lab, show it, tear it down
#   make test  - install everything, run linters and the whole test suite
#   make image - the dpunet image, localhost/dpunet:<version>, built here without a registry
#                (ARCH=arm64 for the DPU's; see docs/kubernetes.md "The image")
VENV ?= .venv
BENCH_OUT ?= bench-results
BIN := $(VENV)/bin

.PHONY: demo test lint deps unit image test-other-release bench-controller

deps:
	@VENV=$(VENV) scripts/install-deps.sh

demo: deps
	$(BIN)/dpunet lab demo

lint: deps
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

unit: deps
	$(BIN)/pytest -m "not lab"

image: deps
	VENV=$(VENV) scripts/build-image.sh $(if $(ARCH),--arch $(ARCH))

# CI, after `make test`: unit tests and `make demo` in a chroot of the other
# supported Debian release (13 on a Debian 12 host, 12 on 13).
test-other-release: deps
	scripts/other-release.sh

# The controller's measurement of docs/performance.md ("Controller"), into $(BENCH_OUT);
# on the other release: TARGETS=bench-controller make test-other-release (the results
# come back to bench-results/<suite>/).
bench-controller: deps
	$(BIN)/dpunet bench controller --ports 2000,10000 --sample 1000 --concurrency 32 \
		--out-dir $(BENCH_OUT)
