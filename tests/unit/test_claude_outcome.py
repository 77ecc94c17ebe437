"""How a Claude turn ended (domain/claude_outcome.py) and how the runner records it: the result's
subtype, terminal_reason and permission denials, bounded, in the command and its `complete`
event; and the environment a claude command gets, never stored."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from rdev.domain import claude_outcome
from rdev.domain.claude_env import ClaudeEnv
from rdev.domain.models import ClaudeResult, CommandKind, CommandStatus
from rdev.runtime.limits import DispatchLimits
from rdev.runtime.runner import Runner
from tests.fakes import T0, VirtualTimeLoop, run_virtual
from tests.unit.runtime_support import World


def lines(*objs: object) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objs)


def result(**fields: object) -> dict[str, object]:
    return {"type": "result", "subtype": "success", "is_error": False, "session_id": "s-1",
            "num_turns": 2, "terminal_reason": "completed", "permission_denials": []} | fields  # fmt: skip


DENIAL = {"tool_name": "Bash", "tool_use_id": "toolu_1", "tool_input": {"command": "touch x"}}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, "completed"),
        ({"permission_denials": [DENIAL]}, "denied"),
        ({"is_error": True, "subtype": "error_during_execution"}, "error"),
        ({"subtype": "error_max_turns", "is_error": False}, "error"),
        ({"is_error": True, "permission_denials": [DENIAL]}, "error"),
    ],
)
def test_the_outcome_tells_a_denied_turn_from_one_that_did_the_work(
    fields: dict[str, object], expected: str
) -> None:
    obj = result(**fields)
    parsed = ClaudeResult(is_error=bool(obj["is_error"]), **claude_outcome.outcome_fields(obj))
    assert claude_outcome.outcome(parsed) == expected


def test_no_result_means_no_outcome() -> None:
    assert claude_outcome.view(ClaudeResult(session_id="s")) == {
        "outcome": None, "subtype": None, "terminal_reason": None, "permission_denials": [],
    }  # fmt: skip


def test_denials_are_bounded_and_summarised() -> None:
    many = [DENIAL] * 50 + [{"tool_name": "Write", "tool_input": {"file_path": "/a/b"}}]
    assert len(claude_outcome.denials(many)) == claude_outcome.MAX_DENIALS
    assert claude_outcome.denials([DENIAL]) == (("Bash", "touch x"),)
    assert claude_outcome.denials([{"tool_name": "Write", "tool_input": {"file_path": "/a"}}]) == (
        ("Write", "/a"),
    )
    long = {"tool_name": "T" * 500, "tool_input": {"command": "echo " + "y\n" * 1000}}
    ((tool, summary),) = claude_outcome.denials([long])
    assert len(tool) == claude_outcome.MAX_TOOL_CHARS
    assert len(summary) == claude_outcome.MAX_SUMMARY_CHARS and "\n" not in summary
    odd = [{"tool_name": "Mcp", "tool_input": {"a": [1, 2]}}, {"tool_name": 5}, "x", None]
    assert claude_outcome.denials(odd) == (("Mcp", '{"a":[1,2]}'),)
    assert claude_outcome.denials("nope") == ()
    fields = claude_outcome.outcome_fields({"subtype": 3, "terminal_reason": "x" * 999})
    assert fields["subtype"] is None and len(fields["terminal_reason"]) == 64


async def _claimed(w: World, kind: CommandKind, limits: DispatchLimits) -> Runner:
    await w.queue("cmd_a", kind=kind)
    (cmd,) = await w.store.claim(
        owner="r1", lease_until=T0 + timedelta(days=1), now=w.loop.clock(), slots=1,
        project_limit=lambda _p: 5,
    )  # fmt: skip
    return Runner(
        cmd, backend=w.backend, commands=w.store, log=w.log, hub=w.hub, limits=limits,
        clock=w.loop.clock,
    )  # fmt: skip


def test_a_denied_turn_is_recorded_and_its_complete_event_says_so() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        w = World(loop)
        runner = await _claimed(w, CommandKind.CLAUDE, DispatchLimits())
        denied = result(permission_denials=[DENIAL])
        w.backend.on_exec = lambda ex: (ex.emit(lines(denied)), ex.exit(0))
        await runner.run()
        cmd = w.store.commands["cmd_a"]
        assert cmd.status is CommandStatus.SUCCEEDED  # the process did exit 0
        assert cmd.claude.permission_denials == (("Bash", "touch x"),)
        assert (cmd.claude.subtype, cmd.claude.terminal_reason) == ("success", "completed")
        complete = w.events("cmd_a")[-1]
        assert complete.data == {
            "status": "succeeded", "exit_code": 0, "duration_ms": 0, "outcome": "denied",
            "subtype": "success", "terminal_reason": "completed",
            "permission_denials": [{"tool_name": "Bash", "input_summary": "touch x"}],
            # and its cost (runtime/claude_usage.py): the result line reported none
            "cost_usd": 0.0, "cumulative_cost_usd": None, "usage": [],
        }  # fmt: skip

    run_virtual(main)


def test_a_shell_commands_complete_event_has_no_claude_fields() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        w = World(loop)
        runner = await _claimed(w, CommandKind.SHELL, DispatchLimits())
        w.backend.on_exec = lambda ex: ex.exit(0)
        await runner.run()
        assert "outcome" not in w.events("cmd_a")[-1].data

    run_virtual(main)


def test_a_claude_command_gets_the_operators_variables_and_they_are_not_stored() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        w = World(loop)
        w.backend.add_project("demo", claude_env=ClaudeEnv({"AWS_REGION": "eu-west-1"}))
        limits = DispatchLimits(
            claude_env=ClaudeEnv({"ANTHROPIC_API_KEY": "sk-secret"}), claude_max_retries=1
        )
        runner = await _claimed(w, CommandKind.CLAUDE, limits)
        w.backend.on_exec = lambda ex: ex.exit(0)
        await runner.run()
        assert w.backend.env["cmd_a"] == {
            "ANTHROPIC_API_KEY": "sk-secret",
            "AWS_REGION": "eu-west-1",
            "CLAUDE_CODE_MAX_RETRIES": "1",
        }
        cmd = w.store.commands["cmd_a"]
        assert cmd.env == {}
        assert "sk-secret" not in repr(cmd) + repr(limits) + repr(w.events("cmd_a"))

    run_virtual(main)


def test_other_kinds_never_get_the_claude_variables() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        w = World(loop)
        w.backend.add_project("demo", claude_env=ClaudeEnv({"AWS_REGION": "eu-west-1"}))
        limits = DispatchLimits(claude_env=ClaudeEnv({"ANTHROPIC_API_KEY": "sk-secret"}))
        runner = await _claimed(w, CommandKind.SHELL, limits)
        w.backend.on_exec = lambda ex: ex.exit(0)
        await runner.run()
        assert w.backend.env["cmd_a"] == {}

    run_virtual(main)
