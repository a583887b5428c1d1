# The README's two commands (setup, run, test), plus the developer gates (check, test-fast).
# Each of setup/run/test sets everything up first (idempotent), then does its job.
PYTHON ?= python3

.PHONY: setup run test check test-fast
setup:
	bash .ci/setup

run: setup
	clutchcall demo

test: setup
	$(PYTHON) -m pytest -q

# Lint and types over the whole tree; the rule selection and mypy's strictness (strict on the
# pure core, clutchcall.engine.*) are in pyproject.toml. CI runs this before the tests.
check:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m mypy -p clutchcall

# The unit layer: tests of the pure cores only (no sockets, subprocesses, namespaces, simulated
# calls or benchmark commands), under a minute on an idle 2-core machine (about 45 s of CPU).
# Folders count whole (tests/engine includes the call core's tests); a listed file that has
# moved away is skipped.
FAST_TESTS := $(wildcard tests/engine tests/sim/test_link.py \
	tests/prod/test_moqt_wire.py tests/prod/test_moqt_session.py \
	tests/prod/test_jitter_buffer.py tests/prod/test_jitter_drain.py \
	tests/traces/test_recorded.py tests/traces/test_labels.py \
	tests/traces/test_roundtrip_properties.py)
test-fast:
	$(PYTHON) -m pytest -q -p no:cacheprovider $(FAST_TESTS)
