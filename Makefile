# The two commands a new user needs (see README.md):
#   make demo  - install everything, bring up the emulated DPU lab, show it, tear it down
#   make test  - install everything, run linters and the whole test suite
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint deps unit test-other-release

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

# CI, after `make test`: unit tests and `make demo` in a chroot of the other
# supported Debian release (13 on a Debian 12 host, 12 on 13).
test-other-release: deps
	scripts/other-release.sh
