"""The runner against twins on virtual time: how each ending is recorded (exit, timeout,
cancel, a kill that fails, a start that fails, abandon at shutdown), Claude's stream-json
lines, and the end hook. Timeouts of a minute pass in microseconds."""

from __future__ import annotations

import json
from datetime import timedelta

from rdev.domain.errors import ExecFailed
from rdev.domain.models import Command, CommandKind, CommandStatus
from rdev.ports import Finish
from rdev.runtime.limits import DispatchLimits
from rdev.runtime.runner import Runner
from tests.fakes import T0, FakeExecution, RecordingTracer, VirtualTimeLoop, run_virtual
from tests.support import eventually
from tests.unit.runtime_support import World

LIMITS = DispatchLimits(kill_grace_seconds=5.0)


async def start(w: World, cid: str = "cmd_a", **fields: object) -> tuple[Runner, Command]:
    await w.queue(cid, **fields)  # type: ignore[arg-type]
    (cmd,) = await w.store.claim(
        owner="r1", lease_until=T0 + timedelta(days=1), now=w.loop.clock(), slots=1,
        project_limit=lambda _p: 5,
    )  # fmt: skip
    runner = Runner(
        cmd, backend=w.backend, commands=w.store, log=w.log, hub=w.hub, limits=LIMITS,
        clock=w.loop.clock, on_end=w.on_end,
    )  # fmt: skip
    return runner, cmd


def test_an_exit_is_recorded_with_its_output_and_terminal_events() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        w = World(loop)
        runner, _ = await start(w)
        w.backend.on_exec = lambda ex: (
            ex.emit(b"one\ntwo\n"),
            ex.emit(b"err", "stderr"),
            ex.exit(3),
        )
        await runner.run()
        assert w.types("cmd_a") == [
            "status", "status", "output", "output", "output", "status", "complete",
        ]  # fmt: skip
        events = w.events("cmd_a")
        assert [e.seq for e in events] == list(range(1, 8))
        assert events[4].data == {"line": "err", "stream": "stderr", "partial": True}
        assert events[-1].data == {"status": "failed", "exit_code": 3, "duration_ms": 0}
        cmd = w.store.commands["cmd_a"]
        assert (cmd.status, cmd.exit_code, cmd.output_bytes) == (CommandStatus.FAILED, 3, 11)
        assert [(cid, f.status) for cid, f in w.ended] == [("cmd_a", CommandStatus.FAILED)]

    run_virtual(main)


def test_a_command_past_its_timeout_is_stopped_and_timed_out() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        w = World(loop)
        runner, _ = await start(w, timeout_seconds=60)
        await runner.run()  # the fake process never exits by itself
        execution = w.backend.started["cmd_a"]
        assert execution.cancels == [LIMITS.kill_grace_seconds]
        cmd = w.store.commands["cmd_a"]
        assert cmd.status is CommandStatus.TIMED_OUT and cmd.exit_code == -15
        error, complete = w.events("cmd_a")[-2:]
        assert error.data == {"code": "TIMEOUT", "message": "command exceeded 60 s"}
        assert complete.data == {"status": "timed_out", "exit_code": -15, "duration_ms": 60000}

    run_virtual(main)


def test_cancel_stops_the_process_and_records_cancelled_without_an_error() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        w = World(loop)
        runner, _ = await start(w)
        task = loop.create_task(runner.run())
        await eventually(lambda: "cmd_a" in w.backend.started)
        runner.cancel()
        await task
        assert w.backend.started["cmd_a"].cancels == [LIMITS.kill_grace_seconds]
        assert w.types("cmd_a")[-2:] == ["status", "complete"]
        assert w.store.commands["cmd_a"].status is CommandStatus.CANCELLED
        assert loop.time() < 1  # at once, not at the timeout

    run_virtual(main)


def test_a_kill_that_fails_leaves_the_command_lost_with_kill_failed() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        w = World(loop)
        w.backend.kill_exit = None  # SIGTERM and SIGKILL do nothing
        runner, _ = await start(w, timeout_seconds=30)
        await runner.run()
        cmd = w.store.commands["cmd_a"]
        assert cmd.status is CommandStatus.LOST and cmd.exit_code is None
        assert w.events("cmd_a")[-2].data["code"] == "KILL_FAILED"
        # the timeout, then the kill grace and the runner's own ten seconds of slack
        assert 30 + LIMITS.kill_grace_seconds + 10 <= loop.time() < 50

    run_virtual(main)


def test_a_start_that_fails_is_recorded_as_failed_with_its_code() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        w = World(loop)
        w.backend.exec_error = ExecFailed("no such program: run")
        runner, _ = await start(w)
        await runner.run()
        assert w.types("cmd_a") == ["status", "status", "status", "error", "complete"]
        assert w.events("cmd_a")[3].data == {
            "code": "EXEC_FAILED",
            "message": "no such program: run",
        }
        assert w.store.commands["cmd_a"].status is CommandStatus.FAILED

    run_virtual(main)


def test_a_process_the_backend_lost_track_of_is_lost() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        w = World(loop)
        w.backend.on_exec = lambda ex: ex.exit(None, error="pod gone", code_name="EXEC_LOST")
        runner, _ = await start(w)
        await runner.run()
        assert w.store.commands["cmd_a"].status is CommandStatus.LOST
        assert w.events("cmd_a")[-2].data == {"code": "EXEC_LOST", "message": "pod gone"}

    run_virtual(main)


def test_abandon_at_shutdown_records_lost_with_the_reason() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        w = World(loop)
        runner, _ = await start(w)
        task = loop.create_task(runner.run())
        await eventually(lambda: "cmd_a" in w.backend.started)
        runner.abandon("SHUTDOWN", "the replica shut down")
        await task
        assert w.store.commands["cmd_a"].status is CommandStatus.LOST
        assert w.events("cmd_a")[-2].data == {
            "code": "SHUTDOWN",
            "message": "the replica shut down",
        }

    run_virtual(main)


def claude_lines(*objs: object) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objs)


def test_claude_lines_become_messages_and_the_result_line_is_recorded() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        w = World(loop)
        runner, _ = await start(w, kind=CommandKind.CLAUDE)
        seen: list[str | None] = []

        def script(ex: FakeExecution) -> None:
            ex.emit(claude_lines({"type": "system", "subtype": "init", "session_id": "s-1"}))
            ex.emit(b"not json\n[1, 2]\n")

        async def check_then_exit() -> None:
            await eventually(lambda: w.store.commands["cmd_a"].claude.session_id)
            seen.append(w.store.commands["cmd_a"].claude.session_id)  # stored before the end
            execution = w.backend.started["cmd_a"]
            execution.emit(claude_lines(
                {"type": "assistant", "message": {"content": "hi"}},
                {"type": "result", "total_cost_usd": 0.25, "num_turns": 3, "is_error": False,
                 "session_id": "s-1"},
            ))  # fmt: skip
            execution.exit(0)

        w.backend.on_exec = script
        task = loop.create_task(runner.run())
        await eventually(lambda: "cmd_a" in w.backend.started)
        await check_then_exit()
        await task
        assert seen == ["s-1"]
        types = w.types("cmd_a")
        assert types[2:7] == ["message", "output", "output", "message", "message"]
        cmd = w.store.commands["cmd_a"]
        assert cmd.status is CommandStatus.SUCCEEDED
        assert (cmd.claude.session_id, cmd.claude.total_cost_usd, cmd.claude.num_turns) == (
            "s-1", 0.25, 3,
        )  # fmt: skip
        assert cmd.claude.is_error is False

    run_virtual(main)


def test_a_result_line_with_wrong_types_records_nothing_wrong() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        w = World(loop)
        runner, _ = await start(w, kind=CommandKind.CLAUDE)
        bad = {"type": "result", "total_cost_usd": "lots", "num_turns": True, "is_error": "no"}
        w.backend.on_exec = lambda ex: (ex.emit(claude_lines(bad)), ex.exit(0))
        await runner.run()
        claude = w.store.commands["cmd_a"].claude
        assert (claude.total_cost_usd, claude.num_turns, claude.is_error) == (None, None, None)

    run_virtual(main)


def test_a_command_finished_elsewhere_is_not_recorded_twice() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        w = World(loop)
        runner, _ = await start(w)
        task = loop.create_task(runner.run())
        await eventually(lambda: "cmd_a" in w.backend.started)
        await w.store.finish("cmd_a", Finish(CommandStatus.LOST, loop.clock()), [])
        w.backend.started["cmd_a"].exit(0)
        await task
        assert w.store.commands["cmd_a"].status is CommandStatus.LOST
        assert w.ended == []  # the end hook hears of an ending once, from whoever made it

    run_virtual(main)


def test_a_traced_command_is_one_span_and_its_process_gets_its_traceparent() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        w = World(loop)
        tracer = RecordingTracer(carried_={"cmd_a": "00-" + "b" * 32 + "-" + "c" * 16 + "-01"})
        _, cmd = await start(w)
        runner = Runner(
            cmd, backend=w.backend, commands=w.store, log=w.log, hub=w.hub, limits=LIMITS,
            clock=w.loop.clock, on_end=w.on_end, tracer=tracer,
        )  # fmt: skip
        w.backend.on_exec = lambda ex: ex.exit(0)
        await runner.run()
        [span] = tracer.spans
        assert span.name == "command shell" and span.ended
        assert span.parent == "00-" + "b" * 32 + "-" + "c" * 16 + "-01"  # the carried request
        assert span.start == cmd.created_at  # its life starts when it was queued
        assert span.attributes == {
            "rdev.project": cmd.project_id, "rdev.command.id": "cmd_a",
            "rdev.command.kind": "shell", "rdev.command.status": "succeeded",
            "rdev.command.exit_code": 0,
        }  # fmt: skip
        assert span.events == ["running", "complete"]
        assert w.backend.env["cmd_a"]["TRACEPARENT"] == f"00-{'a' * 32}-{1:016x}-01"
        assert tracer.carried("cmd_a") is None  # handed over once

    run_virtual(main)


def test_an_untraced_command_gets_no_traceparent() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        w = World(loop)
        runner, cmd = await start(w)
        w.backend.on_exec = lambda ex: ex.exit(0)
        await runner.run()
        assert w.backend.env["cmd_a"] == dict(cmd.env)
        assert "TRACEPARENT" not in w.backend.env["cmd_a"]

    run_virtual(main)
