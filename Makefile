# The README's two commands: `make search` (the main job) and `make test` (the tests). Each installs what it
# needs first, once per level (a venv in .venv, re-done when pyproject.toml or this file change):
#   runtime  torch (pinned) + MitoGAN with its runtime dependencies      make install    (make search)
#   dev      runtime + the test/development extras `.[dev]`             make install-dev (make test)
# `make test` after `make search` adds only the extras.
# PYTHON may point at any Python >= 3.10 (3.11 recommended).
PYTHON ?= python3
VENV ?= .venv
# torch 2.13 is pinned first so pip does not resolve a newer multi-GB CUDA build on CPU machines;
# on a GPU machine set TORCH="torch==2.13.0 --index-url <your CUDA wheel index>" or pre-install torch.
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.mitogan-runtime
DEV_STAMP := $(VENV)/.mitogan-dev
# extra options for `make search`, e.g. ARGS="--trials 4" or ARGS="--data ../shared/data"
ARGS ?=
# test processes (pytest-xdist): 2 fits the 2-core CI machine (the slow suite 25 -> 19 min, the rest 4 -> 2.7 min,
# measured 2026-12-05); TEST_WORKERS=0 runs in this process, one test after another
TEST_WORKERS ?= 2

.PHONY: install install-dev search test test-slow test-long test-all test-fast clean

install: $(STAMP)

install-dev: $(DEV_STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install $(TORCH)
	$(VENV)/bin/pip install -e .
	touch $(STAMP)
	@echo "installed: activate with 'source $(VENV)/bin/activate'"

$(DEV_STAMP): $(STAMP)
	$(VENV)/bin/pip install -e ".[dev]"
	touch $(DEV_STAMP)

search: $(STAMP)
	$(VENV)/bin/mitogan search --space smoke $(ARGS)

# `make test`: every test not marked slow or cluster (minutes); `make test-slow`: the end-to-end searches,
# proofs and multi-process cluster tests that fit CI's budget; `make test-long`: the slow ones marked long, which
# do not (README, Tests: which and why); `make test-all`: all of them in one run. CI (.ci/run) runs test, then
# test-slow.
# the slow files go whole to one worker each (--dist loadfile): their module-wide searches and clusters run once
test: $(DEV_STAMP)
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) -m "not slow and not cluster"

test-slow: $(DEV_STAMP)
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) --dist loadfile -m "(slow or cluster) and not long" --durations=25

test-long: $(DEV_STAMP)
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) --dist loadfile -m long --durations=25

test-all: $(DEV_STAMP)
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) --dist loadfile

test-fast: test

clean:
	rm -rf runs .pytest_cache
