# Every target sets up .venv itself: a fresh clone needs only Python 3.11.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck pytest demo bench dev e2e clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# The sandbox and the benches are dev tools that the wheel never ships: the checkout itself goes on the venv's path.
	$(BIN)/python -c "import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()['purelib'], 'changeloop-checkout.pth').write_text('$(CURDIR)\n')"
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy workflows/ activities/ servicenow/ config/

# Test processes (pytest-xdist): each starts its own Temporal dev server, sandbox and worker on free ports, so tests
# never share one. Two fit this project's two-core CI; PYTEST_WORKERS=0 runs everything in this process.
PYTEST_WORKERS ?= 2

pytest: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS)

test: lint typecheck pytest

demo: $(STAMP)
	$(BIN)/changeloop demo

dev: $(STAMP)
	$(BIN)/changeloop dev

# Quick sizes (a few minutes); `make bench FULL=1` runs the issue's sizes (README "Performance"). Never part of `make test`.
bench: $(STAMP)
	$(BIN)/python -m bench $(if $(filter-out 0,$(FULL)),--full)

# The Temporal UI in headless Chromium against `changeloop dev` (README "End-to-end UI check"); never part of `make test`.
# Playwright from PyPI drives Debian's /usr/bin/chromium (e2e/chromium.py installs it with apt-get when missing).
E2E_STAMP := $(VENV)/.e2e-installed
$(E2E_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev,e2e]'
	touch $(E2E_STAMP)

e2e: $(E2E_STAMP)
	$(BIN)/python -m e2e

clean:
	rm -rf $(VENV) .changeloop .pytest_cache .mypy_cache .ruff_cache
