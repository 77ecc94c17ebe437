"""The SDK and the CLI client work without the server's dependencies: imported in a fresh
interpreter where the server's libraries and rdev's server modules cannot be imported, they
still load, and `rdev run --help` still answers."""

from __future__ import annotations

import subprocess
import sys

SERVER_ONLY = [
    "fastapi", "starlette", "sqlalchemy", "psycopg", "psycopg_pool", "kubernetes_asyncio",
    "uvicorn", "aiohttp", "pydantic_settings", "alembic",
    "structlog", "redis", "limits", "purgatory", "stamina", "prometheus_client", "yaml",
    "rdev.domain", "rdev.ports", "rdev.runtime", "rdev.services", "rdev.adapters",
    "rdev.bootstrap", "rdev.config", "rdev.clock", "rdev.logsetup",
]  # fmt: skip

# the SDK needs even less: not pydantic (which this typer uses), typer or rich
NOT_FOR_THE_SDK = [*SERVER_ONLY, "pydantic", "pydantic_core", "typer", "rich", "click"]


def run(code: str, blocked: list[str] = SERVER_ONLY) -> subprocess.CompletedProcess[str]:
    poison = f"import sys\nfor name in {blocked!r}:\n    sys.modules[name] = None\n"
    return subprocess.run([sys.executable, "-c", poison + code], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip


def test_the_poisoning_works() -> None:
    proc = run("import rdev.config")
    assert (
        proc.returncode != 0 and "ModuleNotFoundError: import of rdev.config halted" in proc.stderr
    )


def test_the_sdk_imports_without_the_server() -> None:
    proc = run("import rdev.client as c; c.Client('http://x'); print(len(c.__all__))",
               NOT_FOR_THE_SDK)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) >= 20


def test_the_cli_client_runs_without_the_server() -> None:
    code = "import sys; sys.argv = ['rdev', 'run', '--help']; from rdev.cli import main; main()"
    proc = run(code)
    assert proc.returncode == 0, proc.stderr
    assert "--cancel-on-interrupt" in proc.stdout
