"""A Claude run's own cost through the runner, on twins and virtual time: a resumed chain whose
CLI reports cumulative figures is not double counted, a cancelled run in the middle costs
nothing and its spend falls to the next run, and the `complete` event carries the figures."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

from rdev.domain.models import Command, CommandKind, CommandStatus, Event, EventType, Priority
from rdev.runtime.limits import DispatchLimits
from rdev.runtime.runner import Runner
from tests.fakes import T0, FakeExecution, VirtualTimeLoop, run_virtual
from tests.support import eventually
from tests.unit.runtime_support import World

SESSION = "0f8e2b1c-3d4a-4b5c-8d6e-7f8091a2b3c4"
OPUS = "claude-opus-4-8"


def _result(cost: float, tokens: int, run_tokens: int) -> dict[str, Any]:
    return {
        "type": "result", "session_id": SESSION, "total_cost_usd": cost, "num_turns": 1,
        "usage": {"input_tokens": run_tokens, "output_tokens": 0},
        "modelUsage": {OPUS: {"inputTokens": tokens, "outputTokens": 0, "costUSD": cost}},
    }  # fmt: skip


async def _run(w: World, cid: str, lines: list[dict[str, Any]], *, resume: bool) -> Runner:
    await asyncio.sleep(1)  # virtual time: each run starts a second after the last ended
    argv = ("claude", "--print", *([f"--resume={SESSION}"] if resume else []), "--", "hi")
    cmd = Command(
        id=cid, project_id="demo", kind=CommandKind.CLAUDE, argv=argv,
        status=CommandStatus.QUEUED, priority=Priority.NORMAL, created_at=w.loop.clock(),
        timeout_seconds=60,
    )  # fmt: skip
    await w.store.add(cmd, Event(cid, 1, EventType.STATUS, {"status": "queued"}))
    (claimed,) = await w.store.claim(
        owner="r1", lease_until=T0 + timedelta(days=1), now=w.loop.clock(), slots=1,
        project_limit=lambda _p: 5,
    )  # fmt: skip
    runner = Runner(
        claimed, backend=w.backend, commands=w.store, log=w.log, hub=w.hub,
        limits=DispatchLimits(), clock=w.loop.clock,
    )  # fmt: skip
    init = {"type": "system", "subtype": "init", "session_id": SESSION, "model": OPUS}

    def script(ex: FakeExecution) -> None:
        body = b"".join(json.dumps(o).encode() + b"\n" for o in [init, *lines])
        ex.emit(body)
        if lines:
            ex.exit(0)

    w.backend.on_exec = script
    return runner


def _complete(w: World, cid: str) -> dict[str, Any]:
    return next(e.data for e in w.events(cid) if e.type is EventType.COMPLETE)


def test_a_resumed_chain_with_cumulative_figures_is_counted_once() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        w = World(loop)
        # the CLI restores the session's cost: 0.25, then +0.5, a cancelled run that spent
        # 0.125 before its result, then +0.0625
        await (await _run(w, "cmd_1", [_result(0.25, 100, 100)], resume=False)).run()
        await (await _run(w, "cmd_2", [_result(0.75, 300, 200)], resume=True)).run()
        cancelled = await _run(w, "cmd_3", [], resume=True)
        task = loop.create_task(cancelled.run())
        await eventually(lambda: "cmd_3" in w.backend.started)
        cancelled.cancel()
        await task
        await (await _run(w, "cmd_4", [_result(0.9375, 400, 40)], resume=True)).run()
        costs = [_complete(w, f"cmd_{i}")["cost_usd"] for i in range(1, 5)]
        assert costs == [0.25, 0.5, None, 0.1875]
        assert sum(c or 0 for c in costs) == _complete(w, "cmd_4")["cumulative_cost_usd"]
        assert _complete(w, "cmd_4")["usage"] == [
            {"model": OPUS, "cost_usd": 0.1875, "input_tokens": 100, "output_tokens": 0,
             "cache_read_tokens": 0, "cache_creation_tokens": 0}
        ]  # fmt: skip
        stored = w.store.commands["cmd_2"].claude
        assert stored.usage is not None and stored.usage.cost_usd == 0.5
        assert stored.total_cost_usd == 0.75

    run_virtual(main)


def test_a_resumed_chain_with_per_run_figures_keeps_each_figure() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        w = World(loop)
        await (await _run(w, "cmd_1", [_result(0.25, 100, 100)], resume=False)).run()
        await (await _run(w, "cmd_2", [_result(0.25, 100, 100)], resume=True)).run()
        await (await _run(w, "cmd_3", [_result(0.5, 200, 200)], resume=True)).run()
        assert [_complete(w, f"cmd_{i}")["cost_usd"] for i in (1, 2, 3)] == [0.25, 0.25, 0.5]

    run_virtual(main)


def test_a_shell_commands_complete_event_has_no_cost_fields() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        w = World(loop)
        await w.queue("cmd_s")
        (cmd,) = await w.store.claim(
            owner="r1", lease_until=T0 + timedelta(days=1), now=loop.clock(), slots=1,
            project_limit=lambda _p: 5,
        )  # fmt: skip
        runner = Runner(
            cmd, backend=w.backend, commands=w.store, log=w.log, hub=w.hub,
            limits=DispatchLimits(), clock=loop.clock,
        )  # fmt: skip
        w.backend.on_exec = lambda ex: ex.exit(0)
        await runner.run()
        assert set(_complete(w, "cmd_s")) == {"status", "exit_code", "duration_ms"}

    run_virtual(main)
