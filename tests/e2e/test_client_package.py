"""The client-only distribution (clients/python, `rdev-client`) for real: its wheel built by
uv from src/, installed into a fresh virtualenv with its dependencies from the package index,
where the server's libraries are not importable, the SDK is, and the venv's own `rdev` talks
to a real rdev under uvicorn."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import Running

ROOT = Path(__file__).resolve().parents[2]
UV = ROOT / ".tools" / "bin" / "uv"
SERVER_ONLY = ["sqlalchemy", "fastapi", "uvicorn", "starlette", "pydantic", "alembic",
               "psycopg", "kubernetes_asyncio", "structlog", "rdev.cli", "rdev.bootstrap"]  # fmt: skip


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    @property
    def rdev(self) -> str:
        return str(self.venv / "bin" / "rdev")


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything that would point the venv at the repository
    (PYTHONPATH, VIRTUAL_ENV) or at a server (RDEV_*)."""
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("RDEV_")}
    return {**env, **extra}


def _uv(*args: str) -> None:
    done = subprocess.run([str(UV), *args], cwd=ROOT, env=_clean_env(), capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, f"uv {' '.join(args)}: {done.stderr}"


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """The wheel, built once per session, in a fresh venv of this Python's version."""
    base = tmp_path_factory.mktemp("client-package")
    _uv("build", "--wheel", "clients/python", "-o", str(base / "dist"))
    (wheel,) = (base / "dist").glob("rdev_client-*.whl")
    venv = base / "venv"
    _uv("venv", "--quiet", "--python", sys.executable, str(venv))
    _uv("pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), str(wheel))
    yield Installed(wheel, venv)


def _py(installed: Installed, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([installed.python, "-c", code], cwd=installed.venv, env=_clean_env(),
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_the_wheel_holds_the_client_packages_and_no_server_code(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as whl:
        names = whl.namelist()
        meta = whl.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        scripts = whl.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    code = sorted(n for n in names if ".dist-info/" not in n)
    src = sorted(
        p.relative_to(ROOT / "src").as_posix()
        for pkg in ("client", "clientcli")
        for p in (ROOT / "src" / "rdev" / pkg).glob("*.py")
    )
    assert code == sorted([*src, "rdev/client/py.typed"])  # no rdev/__init__.py: a namespace
    requires = sorted(re.findall(r"^Requires-Dist: ([\w-]+)", meta, re.M))
    assert requires == ["httpx", "httpx-sse", "rich", "typer"]
    main = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f"\nVersion: {main}\n" in meta
    assert "rdev = rdev.clientcli.main:main" in scripts


@pytest.mark.parametrize("module", SERVER_ONLY)
def test_the_servers_libraries_are_not_installed(installed: Installed, module: str) -> None:
    done = _py(installed, f"import {module}")
    assert done.returncode == 1 and "ModuleNotFoundError" in done.stderr, done


def test_the_sdk_imports_from_the_venv(installed: Installed) -> None:
    done = _py(installed, "import rdev.client, rdev.clientcli.main as m\n"
                          "from rdev.client import Client, AsyncClient\n"
                          "print(rdev.client.__file__); print(m.__file__)")  # fmt: skip
    assert done.returncode == 0, done
    site = installed.venv / "lib"
    assert [Path(f).is_relative_to(site) for f in done.stdout.split()] == [True, True], done


@dataclass
class Done:
    code: int
    out: str
    err: str


async def _run(args: list[str], env: dict[str, str], timeout: float = 60) -> Done:
    proc = await asyncio.create_subprocess_exec(
        *args, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    assert proc.returncode is not None
    return Done(proc.returncode, out.decode(), err.decode())


@pytest.mark.parametrize("backend", ["local"], indirect=True)
async def test_the_venvs_rdev_and_sdk_talk_to_a_real_server(
    installed: Installed, rdev: Running, tmp_path: Path
) -> None:
    env = _clean_env(RDEV_URL=rdev.url, RDEV_API_KEY=rdev.admin_key, COLUMNS="200",
                     NO_COLOR="1", XDG_CONFIG_HOME=str(tmp_path / "config"))  # fmt: skip
    shown = await _run([installed.rdev, "projects"], env)
    assert shown.code == 0 and "demo" in shown.out, shown
    hi = await _run([installed.rdev, "run", "demo", "--", "echo", "hi"], env)
    assert (hi.code, hi.out) == (0, "hi\n"), hi
    failed = await _run([installed.rdev, "run", "demo", "--", "sh", "-c", "echo no >&2; exit 3"],
                        env)  # fmt: skip
    assert (failed.code, failed.out, failed.err) == (3, "", "no\n"), failed
    server_only = await _run([installed.rdev, "serve"], env)
    assert server_only.code == 2 and "No such command 'serve'" in server_only.err, server_only
    made = await _run([installed.rdev, "keys", "create", "--name", "ci", "--scope",
                       "projects:read"], env)  # fmt: skip
    assert made.code == 0 and made.out.startswith("rdev_sk_"), made
    listed = await _run([installed.rdev, "keys", "list", "--json"], env)
    assert listed.code == 0 and {"admin", "ci"} <= {k["name"] for k in json.loads(listed.out)}
    no_db = await _run([installed.rdev, "keys", "list", "--db"], env)
    assert no_db.code == 2 and "No such option" in no_db.err, no_db
    sdk = await _run([installed.python, "-c",
                      "import os\nfrom rdev.client import Client\n"
                      "with Client(os.environ['RDEV_URL'], os.environ['RDEV_API_KEY']) as c:\n"
                      "    h = c.run('demo', ['echo', 'from the sdk'])\n"
                      "    print(h.wait().status, h.output(), end='')"], env)  # fmt: skip
    assert (sdk.code, sdk.out) == (0, "succeeded from the sdk\n"), sdk


def test_both_distributions_in_one_venv_share_files_as_docs_sdk_md_says(
    installed: Installed, tmp_path: Path
) -> None:
    """docs/sdk.md's warning, held to: with `rdev` then `rdev-client` installed, the last one
    owns the `rdev` script while `python -m rdev` still serves; uninstalling `rdev-client` takes
    the shared rdev/client files with it."""
    _uv("build", "--wheel", ".", "-o", str(tmp_path / "dist"))
    (server,) = (tmp_path / "dist").glob("rdev-*.whl")
    both = Installed(installed.wheel, tmp_path / "venv")
    _uv("venv", "--quiet", "--python", sys.executable, str(both.venv))
    for wheel in (server, installed.wheel):
        _uv("pip", "install", "--quiet", "--python", both.python, str(wheel))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, cwd=both.venv, env=_clean_env(), capture_output=True,
                              text=True, timeout=60)  # fmt: skip

    script = run(both.rdev, "serve", "--help")
    assert script.returncode == 2 and "No such command 'serve'" in script.stderr, script
    module = run(both.python, "-m", "rdev", "serve", "--help")
    assert module.returncode == 0 and "--host" in module.stdout, module
    _uv("pip", "uninstall", "--quiet", "--python", both.python, "rdev-client")
    broken = _py(both, "import rdev.client")
    assert broken.returncode == 1 and "No module named 'rdev.client'" in broken.stderr, broken
