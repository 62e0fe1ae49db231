# Motion: `make run` starts the backend locally, `make test` runs every check. Both set up what is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest deps lock plan plan-snapshots preflight smoke bench test-image-python clean

# The locks (requirements.txt beside each human-edited requirements.in; `make lock` writes them).
REQUIREMENTS := requirements.txt requirements-dev.txt $(wildcard app_code/*/requirements.txt) $(wildcard policy/requirements.txt)

$(STAMP): $(REQUIREMENTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --require-hashes -r requirements-dev.txt
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

## Regenerate every lock from its requirements.in (PyPI). Pins already in a lock are kept unless
## its ranges exclude them; `make lock UPGRADE=1` moves everything to the newest allowed versions.
## The dev set is resolved first and constrains every other lock, so what the tests run is what
## ships. --universal: one lock valid on every OS/CPU (dev machines, x86_64 CI, the arm64 images and
## Lambdas); --python-version is the lowest Python the lock serves (3.11 where CI and developers
## run, 3.13 in the images and Lambdas). The options are written with `=` and without
## --python-platform because Renovate re-runs the header command and accepts only that form
## (renovatebot/renovate lib/modules/manager/pip-compile/common.ts, allowedOptions).
UV_COMPILE = $(BIN)/uv pip compile --quiet --universal --generate-hashes $(if $(UPGRADE),--upgrade)
lock: $(STAMP)
	$(UV_COMPILE) --python-version=3.11 --output-file=requirements-dev.txt requirements-dev.in
	$(UV_COMPILE) --python-version=3.11 --constraint=requirements-dev.txt --output-file=requirements.txt requirements.in
	$(UV_COMPILE) --python-version=3.11 --constraint=requirements-dev.txt --output-file=policy/requirements.txt policy/requirements.in
	$(UV_COMPILE) --python-version=3.13 --constraint=requirements-dev.txt --output-file=app_code/files/requirements.txt app_code/files/requirements.in
	$(UV_COMPILE) --python-version=3.13 --constraint=requirements-dev.txt --output-file=app_code/chat/requirements.txt app_code/chat/requirements.in
	$(UV_COMPILE) --python-version=3.13 --constraint=requirements-dev.txt --output-file=app_code/mailer/requirements.txt app_code/mailer/requirements.in

## Every check CI runs.
test: deps $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

## The tests also need the exact Python release that compiles the mailer's SDK layer (LAYER_PYTHON):
## found on PATH, in pyenv or among uv's interpreters, else installed with `uv python install`.
LAYER_PYTHON := $(shell sed -n 's/^LAYER_PYTHON = "\(.*\)"/\1/p' components/aws/lambda_layer.py)
pytest: $(STAMP)
	@PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m components.aws.interpreters --install $(LAYER_PYTHON) >/dev/null
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest

## The service tests again on the Python the images and Lambdas run (3.13), in its own virtualenv.
IMAGE_VENV := .venv-image
$(IMAGE_VENV)/.installed: $(REQUIREMENTS)
	@test -x $(IMAGE_VENV)/bin/python || { python=$${IMAGE_PYTHON:-$$(PATH="$(CURDIR)/$(BIN):$$PATH" scripts/runtime-python.sh --install)} && "$$python" -m venv $(IMAGE_VENV); }
	$(IMAGE_VENV)/bin/python -m pip install -q --require-hashes -r requirements-dev.txt
	@touch $@

test-image-python: deps $(STAMP) $(IMAGE_VENV)/.installed
	PATH="$(CURDIR)/$(IMAGE_VENV)/bin:$$PATH" $(IMAGE_VENV)/bin/python -m pytest -p no:cacheprovider tests/services

## Each stack's resources as a tree, from the program under mocks.
plan: $(STAMP)
	$(BIN)/python -m stacktools.plan

plan-snapshots: $(STAMP)
	$(BIN)/python -m stacktools.plan --write

## Before (and after) a stack's first `pulumi up`: placeholders, missing secrets, unpublished DNS records.
## make preflight STACK=production [OUTPUTS=<file of `pulumi stack output --json`>] [NAMESERVER=host:port] [SKIP_SES=1]
preflight: $(STAMP)
	@test -n "$(STACK)" || { echo "usage: make preflight STACK=<stack> [OUTPUTS=file] [NAMESERVER=host:port] [SKIP_SES=1]"; exit 2; }
	$(BIN)/python -m stacktools.preflight --stack $(STACK) $(if $(OUTPUTS),--outputs $(OUTPUTS)) $(if $(NAMESERVER),--nameserver $(NAMESERVER)) $(if $(SKIP_SES),--skip-ses)

clean:
	rm -rf $(VENV) $(IMAGE_VENV) build .pytest_cache .mypy_cache .ruff_cache
