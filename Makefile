# Thin wrappers. The only prerequisites are python3 (3.11+), git and make: uv is installed
# into .tools/ from PyPI, pinned, and it installs everything else from uv.lock.
UV_VERSION := 0.13.9
# the real Claude Code CLI the tests run (offline, against tests/claude_api.py)
CLAUDE_CLI_VERSION := 2.1.197
# parallel test workers (pytest-xdist); each worker has its own PostgreSQL database
TEST_WORKERS ?= 3
PYTHON ?= python3
UV := .tools/bin/uv
VENV := .venv/.synced

.PHONY: run test lint bench docs fmt clean claude-cli

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV): $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --quiet
	@touch $(VENV)

run: $(VENV)  ## start rdev on SQLite + local backend with a demo project
	.venv/bin/rdev serve --demo

test: $(VENV)  ## the whole test suite
	@command -v npm >/dev/null && $(MAKE) --no-print-directory claude-cli || \
		echo "npm not found: the real-Claude-CLI tests will skip (make claude-cli needs npm)"
	.venv/bin/pytest -n $(TEST_WORKERS)

claude-cli: .tools/claude-cli/.v$(CLAUDE_CLI_VERSION)  ## the pinned Claude Code CLI, for the tests

.tools/claude-cli/.v$(CLAUDE_CLI_VERSION):
	npm install --prefix .tools/claude-cli --no-audit --no-fund --loglevel=error \
		@anthropic-ai/claude-code@$(CLAUDE_CLI_VERSION)
	@touch $@

lint: $(VENV)
	.venv/bin/ruff check src tests bench
	.venv/bin/ruff format --check src tests bench
	.venv/bin/mypy src
	.venv/bin/lint-imports

bench: $(VENV)
	.venv/bin/python -m bench

docs: $(VENV)  ## regenerate docs/errors.md from the error table
	.venv/bin/python -m rdev.reference errors

fmt: $(VENV)
	.venv/bin/ruff format src tests bench
	.venv/bin/ruff check --fix src tests bench

clean:
	rm -rf .venv .tools .rdev .pytest_cache .mypy_cache .ruff_cache
