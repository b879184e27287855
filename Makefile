# cerniq.ops — the two commands: `make demo` and `make test`.
# Both set up what they need first (Debian packages, pinned virtualenvs).
SHELL := /bin/bash
VENV ?= .venv

.PHONY: help bootstrap demo demo-incidents demo-local demo-down lab lab-down test test-fast sanity lint unit integration rules hostile runner molecule lab-test fresh-test build changelog clean

help:
	@echo "make demo       run the main job: the runbook end to end on the podman lab (see README)"
	@echo "make demo-incidents  the lab broken and diagnosed, left for running the procedures by hand"
	@echo "make demo-local the same procedures against local throwaway servers (no containers, ~90 s)"
	@echo "make demo-down  remove what the demo created"
	@echo "make test       the whole test suite (every layer; README lists them)"
	@echo "make test-fast  every layer but the container ones (Molecule, lab, fresh machine)"
	@echo "make lab        the podman lab: database, redis, monitor, worker hosts (docs/lab.md)"
	@echo "make build      build the collection tarball into build/"

bootstrap:
	@scripts/bootstrap.sh

demo: bootstrap
	@scripts/demo.sh

demo-incidents: bootstrap
	@scripts/demo.sh incidents

demo-local: bootstrap
	@scripts/demo.sh local

demo-down: bootstrap
	@scripts/demo.sh down

lab: bootstrap
	@scripts/lab.sh up

lab-down:
	@scripts/lab.sh down

test: bootstrap
	@scripts/run-tests.sh all

test-fast: bootstrap
	@scripts/run-tests.sh fast

sanity lint unit integration rules hostile runner molecule: bootstrap
	@scripts/run-tests.sh $@

lab-test: bootstrap
	@scripts/run-tests.sh lab

fresh-test: bootstrap
	@scripts/run-tests.sh fresh

build: bootstrap
	@mkdir -p build && $(VENV)/bin/ansible-galaxy collection build --force --output-path build .

changelog: bootstrap
	@PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/antsibull-changelog release

clean:
	rm -rf build tests/output .pytest_cache
