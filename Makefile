# Motion: `make run` starts the backend locally, `make test` runs every check. Both set up what is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest deps plan plan-snapshots preflight smoke bench test-image-python clean

REQUIREMENTS := requirements.txt requirements-dev.txt $(wildcard app_code/*/requirements.txt) $(wildcard policy/requirements.txt)

$(STAMP): $(REQUIREMENTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	@touch $(STAMP)

deps:
	@scripts/system-deps.sh

## The main job: Motion's whole backend on this machine (Ctrl-C stops it). PORT_BASE moves its ports.
run: deps $(STAMP)
	$(BIN)/python -m devstack.run $(if $(PORT_BASE),--port-base $(PORT_BASE))

## Drive the running backend (`make run` in another terminal) through every flow.
smoke: $(STAMP)
	$(BIN)/python -m devstack.smoke

## Benchmarks: print figures (not tests).
bench: deps $(STAMP)
	$(BIN)/python bench/mailer_bench.py
	$(BIN)/python bench/files_bench.py
	$(BIN)/python bench/chat_bench.py

## Every check CI runs.
test: deps $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest

## The service tests again on the Python the images and Lambdas run (3.13), in its own virtualenv.
IMAGE_VENV := .venv-image
$(IMAGE_VENV)/.installed: $(REQUIREMENTS)
	@test -x $(IMAGE_VENV)/bin/python || { python=$${IMAGE_PYTHON:-$$(scripts/image-python.sh)} && "$$python" -m venv $(IMAGE_VENV); }
	$(IMAGE_VENV)/bin/python -m pip install -q -r requirements-dev.txt
	@touch $@

test-image-python: deps $(IMAGE_VENV)/.installed
	PATH="$(CURDIR)/$(IMAGE_VENV)/bin:$$PATH" $(IMAGE_VENV)/bin/python -m pytest -p no:cacheprovider tests/services

## Each stack's resources as a tree, from the program under mocks.
plan: $(STAMP)
	$(BIN)/python -m devstack.plan

plan-snapshots: $(STAMP)
	$(BIN)/python -m devstack.plan --write

## Before (and after) a stack's first `pulumi up`: placeholders, missing secrets, unpublished DNS records.
## make preflight STACK=production [OUTPUTS=<file of `pulumi stack output --json`>] [NAMESERVER=host:port]
preflight: $(STAMP)
	@test -n "$(STACK)" || { echo "usage: make preflight STACK=<stack> [OUTPUTS=file] [NAMESERVER=host:port]"; exit 2; }
	$(BIN)/python -m devstack.preflight --stack $(STACK) $(if $(OUTPUTS),--outputs $(OUTPUTS)) $(if $(NAMESERVER),--nameserver $(NAMESERVER))

clean:
	rm -rf $(VENV) $(IMAGE_VENV) .pytest_cache .mypy_cache .ruff_cache
