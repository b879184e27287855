# cerniq.ops — the two commands: `make demo` and `make test`.
# Both set up what they need first (Debian packages, pinned virtualenvs).
SHELL := /bin/bash
VENV ?= .venv

.PHONY: help bootstrap demo demo-down lab lab-down test test-fast sanity lint unit integration rules molecule build changelog clean

help:
	@echo "make demo       run the main job (see README)"
	@echo "make test       the whole test suite (sanity, lint, unit, integration, rules, molecule)"
	@echo "make test-fast  everything but Molecule"
	@echo "make lab        the podman lab: database, redis, monitor, worker hosts (docs/lab.md)"
	@echo "make build      build the collection tarball into build/"

bootstrap:
	@scripts/bootstrap.sh

demo: bootstrap
	@scripts/demo.sh

demo-down:
	@scripts/demo.sh down

lab: bootstrap
	@scripts/lab.sh up

lab-down:
	@scripts/lab.sh down

test: bootstrap
	@scripts/run-tests.sh all

test-fast: bootstrap
	@scripts/run-tests.sh fast

sanity lint unit integration rules molecule: bootstrap
	@scripts/run-tests.sh $@

build: bootstrap
	@mkdir -p build && $(VENV)/bin/ansible-galaxy collection build --force --output-path build .

changelog: bootstrap
	@$(VENV)/bin/antsibull-changelog release

clean:
	rm -rf build tests/output .pytest_cache
