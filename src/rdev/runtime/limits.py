"""The dispatcher's limits and timings, shared by the dispatcher and the runners it starts."""

from __future__ import annotations

from dataclasses import dataclass, field

from rdev.domain.claude_env import ClaudeEnv
from rdev.runtime.outage import DEFAULT_BUFFER_BYTES


@dataclass(frozen=True, slots=True)
class DispatchLimits:
    per_project: int = 5
    per_replica: int = 50
    lease_seconds: float = 30.0
    kill_grace_seconds: float = 5.0
    max_output_bytes: int = 10 * 1024 * 1024
    outage_buffer_bytes: int = DEFAULT_BUFFER_BYTES  # output held per command while the DB is away
    max_output_events: int = 200_000
    poll_seconds: float = 1.0
    claude_bin: str = "claude"
    # RDEV_CLAUDE_ENV's values (its repr shows the names only)
    claude_env: ClaudeEnv = field(default_factory=ClaudeEnv)
    claude_max_retries: int = 2
