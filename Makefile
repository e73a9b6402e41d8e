# One-command install and test. PYTHON may point at any Python >= 3.10 (3.11 recommended).
PYTHON ?= python3
VENV ?= .venv
# torch 2.13 is pinned first so pip does not resolve a newer multi-GB CUDA build on CPU machines;
# on a GPU machine set TORCH="torch==2.13.0 --index-url <your CUDA wheel index>" or pre-install torch.
TORCH ?= torch==2.13.0

.PHONY: install test test-fast demo clean

install:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install $(TORCH)
	$(VENV)/bin/pip install -e ".[dev]"
	@echo "installed: activate with 'source $(VENV)/bin/activate'"

test:
	$(VENV)/bin/pytest -q

test-fast:
	$(VENV)/bin/pytest -q -m "not slow and not cluster"

clean:
	rm -rf runs .pytest_cache
