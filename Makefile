# Thin wrappers. The only prerequisites are python3 (3.11+), git and make: uv is installed
# into .tools/ from PyPI, pinned, and it installs everything else from uv.lock.
UV_VERSION := 0.13.9
PYTHON ?= python3
UV := .tools/bin/uv
VENV := .venv/.synced

.PHONY: run test lint bench fmt clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV): $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --quiet
	@touch $(VENV)

run: $(VENV)  ## start rdev on SQLite + local backend with a demo project
	.venv/bin/rdev serve --demo

test: $(VENV)  ## the whole test suite
	.venv/bin/pytest

lint: $(VENV)
	.venv/bin/ruff check src tests bench
	.venv/bin/ruff format --check src tests bench
	.venv/bin/mypy src
	.venv/bin/lint-imports

bench: $(VENV)
	.venv/bin/python -m bench

fmt: $(VENV)
	.venv/bin/ruff format src tests bench
	.venv/bin/ruff check --fix src tests bench

clean:
	rm -rf .venv .tools .rdev .pytest_cache .mypy_cache .ruff_cache
