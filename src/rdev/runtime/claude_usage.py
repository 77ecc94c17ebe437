"""A finished Claude run's own cost and tokens: its result's figures less its session's
baseline (domain/usage.py), and how they are shown in the `complete` event and the API.

`account` works them out before they are stored; they count once the store has taken the
command's end, in `Runner._finish` where `persist(...)` returned True (`finish.claude.usage`):
counters of spend hang there, not here (a command finished by another replica meanwhile is
not this runner's to count)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rdev.domain.models import ClaudeResult, Command
from rdev.domain.usage import ModelUsage, Reported, resumed_session, run_usage
from rdev.ports import CommandStore
from rdev.runtime.outage import persist


async def account(
    store: CommandStore, cmd: Command, claude: ClaudeResult, reported: Reported | None,
    *, model: str | None,
) -> ClaudeResult:  # fmt: skip
    """`claude` with its run's own usage; unchanged for a run that reported nothing (a run
    cancelled or lost before its result costs what the CLI reports next in its session)."""
    if reported is None:
        return claude
    session = resumed_session(cmd.argv)
    baseline = None
    if session is not None and cmd.started_at is not None:
        started = cmd.started_at
        # waits out a database outage, like the write that follows: a wrong baseline would
        # count the session's earlier turns again
        baseline = await persist(lambda: store.claude_baseline(cmd.project_id, session, started))
    usage = run_usage(reported, baseline, model=model)
    return replace(claude, usage=usage, reported=reported)


def model_view(m: ModelUsage) -> dict[str, Any]:
    return {
        "model": m.model,
        "cost_usd": m.cost_usd,
        "input_tokens": m.tokens.input,
        "output_tokens": m.tokens.output,
        "cache_read_tokens": m.tokens.cache_read,
        "cache_creation_tokens": m.tokens.cache_creation,
    }


def cost_view(claude: ClaudeResult) -> dict[str, Any]:
    """A Claude command's cost fields, the same in `GET /commands/{id}` and `complete`."""
    usage = claude.usage
    return {
        "cost_usd": usage.cost_usd if usage is not None else None,
        "cumulative_cost_usd": claude.total_cost_usd,
        "usage": [model_view(m) for m in usage.models] if usage is not None else [],
    }
