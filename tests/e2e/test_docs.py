"""The examples of docs/sdk.md, docs/quickstart.md, docs/cli.md and docs/streaming.md, run as
written against a real rdev: the Python blocks of sdk.md in order in one namespace (and
quickstart.md's one, its printout checked), and the `$` lines of the
`console` blocks of cli.md and streaming.md in one `sh` per file, in order (so a variable set
on one line is there on the next, as in a terminal), each line's stdout compared with the
lines under it.

The one placeholder rule: `…` in an expected line matches any text within that line (an id, a
timestamp, a duration); everything else must match exactly, line for line."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from tests.support import Running

LOCAL = pytest.mark.parametrize("backend", ["local"], indirect=True)
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


@LOCAL
async def test_the_sdk_examples_run(rdev: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RDEV_URL", rdev.url)
    monkeypatch.setenv("RDEV_API_KEY", rdev.admin_key)
    code = "\n".join(blocks("sdk.md", "python"))
    assert code.count("client.") > 10
    namespace: dict[str, object] = {}
    # the blocking client in a thread: the server runs on this thread's event loop
    await asyncio.to_thread(exec, compile(code, "docs/sdk.md", "exec"), namespace)


@LOCAL
async def test_the_quickstart_python_runs(rdev: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RDEV_URL", rdev.url)
    monkeypatch.setenv("RDEV_API_KEY", rdev.admin_key)
    [code] = blocks("quickstart.md", "python")
    printed: list[str] = []  # the block's `print`s (the server logs to stdout too)
    namespace = {"print": lambda *args: printed.append(" ".join(map(str, args)))}
    await asyncio.to_thread(exec, compile(code, "docs/quickstart.md", "exec"), namespace)
    assert printed == ["hello", "succeeded"]


SEP = "\x1e"  # between the outputs of two `$` lines


def matches(expected: list[str], got: list[str]) -> bool:
    """Line for line; `…` in an expected line matches anything within that line."""
    return len(expected) == len(got) and all(
        re.fullmatch(".*".join(map(re.escape, want.split("…"))), line) is not None
        for want, line in zip(expected, got, strict=True)
    )


def test_the_placeholder_rule_is_strict() -> None:
    assert matches(["id: cmd_…:3", "x"], ["id: cmd_01ab:3", "x"])
    assert matches(["a…b"], ["ab"])
    assert not matches(["id: cmd_…:3"], ["id: cmd_01ab:4"])
    assert not matches(["a…"], ["a", "b"])  # within a line, never across lines
    assert not matches(["exit 0"], ["exit 0 "])
    assert not matches(["hello"], [])


async def run_console(name: str, rdev: Running, tmp_path: Path) -> int:
    """Every `$` line of `name`'s console blocks, in one `sh`; returns how many ran."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RDEV_")}
    env.update(
        RDEV_URL=rdev.url, RDEV_API_KEY=rdev.admin_key, XDG_CONFIG_HOME=str(tmp_path / "cfg"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", NO_COLOR="1",
    )  # fmt: skip
    steps = [step for block in blocks(name, "console") for step in examples(block)]
    script = "".join(f"{command}\nprintf '{SEP}'\n" for command, _ in steps)
    proc = await asyncio.create_subprocess_exec(
        "sh", "-c", script, env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    outputs = out.decode().split(SEP)
    assert len(outputs) == len(steps) + 1 and outputs[-1] == "", (out.decode(), err.decode())
    for (command, expected), got in zip(steps, outputs, strict=False):
        assert matches(expected, got.splitlines()), (command, got, err.decode())
    return len(steps)


@LOCAL
async def test_the_cli_examples_run(rdev: Running, tmp_path: Path) -> None:
    assert await run_console("cli.md", rdev, tmp_path) >= 6


@LOCAL
async def test_the_streaming_curl_examples_run(rdev: Running, tmp_path: Path) -> None:
    assert await run_console("streaming.md", rdev, tmp_path) >= 5
