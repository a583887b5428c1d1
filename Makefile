# The README's two commands. Each sets everything up first (idempotent), then does its job.
PYTHON ?= python3

.PHONY: setup run test
setup:
	bash .ci/setup

run: setup
	clutchcall demo

test: setup
	$(PYTHON) -m pytest -q
