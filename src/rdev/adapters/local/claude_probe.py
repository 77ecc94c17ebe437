"""The Claude CLI on this server: resolve RDEV_CLAUDE_BIN on the PATH commands get, and run
`--version` (see services/claude_cli.py, which caches the answer)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

from rdev.adapters.local.process import scrubbed_env

TIMEOUT_SECONDS = 30.0


def _version(binary: str) -> tuple[str | None, str | None]:
    env = scrubbed_env({})
    found = shutil.which(binary, path=env["PATH"])
    if found is None:
        return None, f"executable not found: {binary} (ENOENT)"
    try:
        done = subprocess.run(
            [found, "--version"],
            env=env,
            capture_output=True,
            timeout=TIMEOUT_SECONDS,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, f"`--version` gave no answer in {TIMEOUT_SECONDS:g} s"
    except OSError as e:
        return None, f"cannot run {found} ({e.strerror or type(e).__name__})"
    if done.returncode != 0:
        return None, f"`--version` exited with {done.returncode}"
    lines = done.stdout.decode("utf-8", "replace").strip().splitlines()
    return (lines[0][:100] if lines else ""), None


async def claude_version(binary: str) -> tuple[str | None, str | None]:
    """(version, None) when the CLI answers, else (None, why not)."""
    return await asyncio.to_thread(_version, binary)
