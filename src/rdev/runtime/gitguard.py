"""Before a command of kind git runs, read the repository's effective config with git itself
(`git config --list`, under the same environment and cwd) and refuse to run if it names a
program rdev cannot switch off by name (domain/git_env.py). Run at start, not at submit, so
config written while the command waited in the queue is seen too."""

from __future__ import annotations

import asyncio

from rdev.domain import git_env
from rdev.domain.errors import CommandRejected, ExecFailed
from rdev.domain.models import Command, Project
from rdev.ports import Backend, Execution

MAX_LISTING_BYTES = 1 << 20
TIMEOUT_SECONDS = 30.0


async def check_repository(backend: Backend, project: Project, command: Command) -> None:
    execution = await backend.exec(
        project, git_env.LIST_CONFIG_ARGV, env=command.env, cwd=command.cwd
    )
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS):
            stdout, stderr = await _collect(execution)
            status = await execution.wait()
    except TimeoutError:
        await execution.cancel(grace_seconds=1)
        raise CommandRejected("reading the repository's git config timed out") from None
    if status.exit_code is None:  # the check itself could not run: not a refusal
        raise ExecFailed(
            f"rdev could not check the repository's git config: {status.error or 'lost'}",
            details={"reason": "config_check"},
        )
    if status.exit_code != 0:
        why = stderr.decode("utf-8", "replace").strip()[-500:] or status.error or "no reason"
        raise CommandRejected(
            f"rdev could not read the repository's git config: {why}",
            details={"reason": "config_unreadable"},
        )
    bad = git_env.unsafe_repo_config(git_env.parse_listing(stdout))
    if bad:
        raise CommandRejected(
            "the repository's git config names programs or paths a git-only command may not "
            f"use: {', '.join(bad)} (remove them with a shell command to run git here)",
            details={"reason": "repo_config", "keys": bad},
        )


async def _collect(execution: Execution) -> tuple[bytes, bytes]:
    out = bytearray()
    err = bytearray()
    async for chunk in execution.output():
        target = out if chunk.stream == "stdout" else err
        target += chunk.data
        if len(out) > MAX_LISTING_BYTES:
            await execution.cancel(grace_seconds=1)
            raise CommandRejected("the repository's git config is too large to check")
        del err[:-4096]
    return bytes(out), bytes(err)
