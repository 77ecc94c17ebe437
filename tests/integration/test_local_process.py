"""The local backend's spawn (adapters/local/process.py) against real files: every way a program
can fail to start is an ExecFailed naming the errno (never an OSError escaping to the runner,
which left the command `running` until its lease was swept to `lost`), and the tree it starts
ends with it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from rdev.adapters.local import tree
from rdev.adapters.local.process import start_process
from rdev.domain.errors import ExecFailed
from tests.support import eventually, marked_processes

Setup = Callable[[Path], tuple[list[str], str]]  # workspace -> (argv, cwd)


def _file(ws: Path, name: str, data: bytes, mode: int) -> str:
    (ws / name).write_bytes(data)
    (ws / name).chmod(mode)
    return f"./{name}"


def _loop(ws: Path) -> str:
    (ws / "loop").symlink_to(ws / "loop")
    return "./loop"


CASES: dict[str, tuple[Setup, str, str]] = {
    # name: (setup, errno name, start of the message)
    "garbage": (
        lambda ws: ([_file(ws, "g", b"\x00\x01junk\n", 0o755)], str(ws)),
        "ENOEXEC", "not an executable file or script: ./g",
    ),
    "empty_file": (
        lambda ws: ([_file(ws, "e", b"", 0o755)], str(ws)),
        "ENOEXEC", "not an executable file or script",
    ),
    "not_executable": (
        lambda ws: ([_file(ws, "s", b"#!/bin/sh\necho no\n", 0o644)], str(ws)),
        "EACCES", "executable not permitted: ./s",
    ),
    "directory": (lambda ws: (["."], str(ws)), "EACCES", "executable not permitted"),
    "missing": (lambda ws: (["./nope"], str(ws)), "ENOENT", "executable not found: ./nope"),
    "missing_in_path": (
        lambda ws: (["no-such-program-xyz"], str(ws)), "ENOENT", "executable not found",
    ),
    "long_name": (lambda ws: (["x" * 300], str(ws)), "ENAMETOOLONG", "executable name too long"),
    "long_path": (
        lambda ws: (["/" + "/".join(["d" * 200] * 25)], str(ws)),
        "ENAMETOOLONG", "executable name too long: /ddd",
    ),
    "through_a_file": (
        lambda ws: ([_file(ws, "f", b"", 0o644) + "/x"], str(ws)), "ENOTDIR", "cannot run",
    ),
    "symlink_loop": (lambda ws: ([_loop(ws)], str(ws)), "ELOOP", "cannot run"),
    "huge_argument": (
        lambda ws: (["echo", "a" * 200_000], str(ws)), "E2BIG", "arguments and environment",
    ),
    "cwd_vanished": (
        lambda ws: (["true"], str(ws / "gone")), "ENOENT", "cannot enter the working directory",
    ),
    "cwd_is_a_file": (
        lambda ws: (["true"], str(ws / _file(ws, "cwdfile", b"", 0o644))),
        "ENOTDIR", "cannot enter the working directory",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
async def test_every_spawn_error_is_exec_failed_naming_the_errno(tmp_path: Path, case: str) -> None:
    setup, errno_name, message = CASES[case]
    argv, cwd = setup(tmp_path)
    with pytest.raises(ExecFailed) as info:
        await start_process(argv, cwd=cwd, env={"PATH": os.environ["PATH"]}, stdin=None,
                            marker=f"cmd_spawn_{case}")  # fmt: skip
    assert info.value.message.startswith(message), info.value.message
    assert info.value.message.endswith(f"({errno_name})"), info.value.message
    assert info.value.details["errno"] == errno_name


async def test_a_nul_in_an_argument_is_exec_failed_not_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ExecFailed):
        await start_process(["echo", "a\0b"], cwd=str(tmp_path), env={}, stdin=None,
                            marker="cmd_spawn_nul")  # fmt: skip


async def test_kill_command_ends_marked_processes_however_detached(tmp_path: Path) -> None:
    """What a sweep does for a crashed replica's command: no Execution, only the marker."""
    script = "setsid sleep 9301 & (sh -c 'sleep 9302 &' &); exec sleep 9303"
    execution = await start_process(["sh", "-c", script], cwd=str(tmp_path), env={},
                                    stdin=None, marker="cmd_sweep_target")  # fmt: skip
    await eventually(lambda: len(marked_processes("cmd_sweep_target")) == 3, timeout=10)
    assert await asyncio.to_thread(tree.end, "cmd_sweep_target") == 3
    assert marked_processes("cmd_sweep_target") == []
    status = await asyncio.wait_for(execution.wait(), 10)
    assert status.exit_code == -9
