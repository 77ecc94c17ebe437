"""The examples of docs/sdk.md and docs/cli.md, run as written against a real rdev: the
Python blocks of sdk.md in order in one namespace, and every `$` line of cli.md's `console`
blocks in `sh`, its stdout compared with the lines under it."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from tests.support import Running

pytestmark = pytest.mark.parametrize("backend", ["local"], indirect=True)
DOCS = Path(__file__).resolve().parents[2] / "docs"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks(name: str, lang: str) -> list[str]:
    return [body for kind, body in BLOCK.findall((DOCS / name).read_text()) if kind == lang]


def examples(text: str) -> list[tuple[str, list[str]]]:
    """(command, expected stdout lines) for each `$ ` line of a console block."""
    found: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            found.append((line[2:], []))
        elif found:
            found[-1][1].append(line)
    return found


async def test_the_sdk_examples_run(rdev: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RDEV_URL", rdev.url)
    monkeypatch.setenv("RDEV_API_KEY", rdev.admin_key)
    code = "\n".join(blocks("sdk.md", "python"))
    assert code.count("client.") > 10
    namespace: dict[str, object] = {}
    # the blocking client in a thread: the server runs on this thread's event loop
    await asyncio.to_thread(exec, compile(code, "docs/sdk.md", "exec"), namespace)


async def test_the_cli_examples_run(rdev: Running, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RDEV_")}
    env.update(
        RDEV_URL=rdev.url, RDEV_API_KEY=rdev.admin_key, XDG_CONFIG_HOME=str(tmp_path / "cfg"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", NO_COLOR="1",
    )  # fmt: skip
    ran = 0
    for block in blocks("cli.md", "console"):
        for command, expected in examples(block):
            proc = await asyncio.create_subprocess_exec(
                "sh", "-c", command, env=env, cwd=tmp_path,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            assert out.decode().splitlines() == expected, (command, err.decode())
            ran += 1
    assert ran >= 6
