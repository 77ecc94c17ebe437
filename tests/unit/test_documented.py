"""What OpenAPI documents holds for what rdev does: the request examples are requests rdev
accepts (schemathesis mixes them into its generated bodies, and clients copy them), and every
event a stream can send matches the documented event schema, while events off that schema do
not (the stream was once documented as one string, which no event is)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from rdev.adapters.http import sse
from rdev.adapters.http.documented import EVENTS, SSE_EVENT
from rdev.adapters.http.schemas import ClaudeRun, GitRun, ShellRun
from rdev.domain import git, policy
from rdev.domain.claude import shell_grants
from rdev.domain.models import CommandStatus, Event, EventType, Project, ProjectStatus
from rdev.services.commands import build_shell_argv
from tests.support import off_event_schema

# request examples


def _examples(model: type[BaseModel]) -> list[dict[str, Any]]:
    examples: list[dict[str, Any]] = model.model_json_schema()["examples"]
    assert examples, f"{model.__name__} documents no example"
    return examples


@pytest.mark.parametrize("body", _examples(GitRun))
def test_git_examples_pass_the_git_policy(body: dict[str, Any]) -> None:
    run = GitRun.model_validate(body)
    assert git.check_args(run.args)[:2] == ("git", run.args[0])
    if run.cwd is not None:
        policy.check_relative_path(run.cwd)


@pytest.mark.parametrize("body", _examples(ClaudeRun))
def test_claude_examples_need_no_shell_rights(body: dict[str, Any]) -> None:
    run = ClaudeRun.model_validate(body)
    assert run.resume_session is None  # a session must be one the project ran: no example has it
    assert shell_grants(run.permission_mode, run.allowed_tools) == []


@pytest.mark.parametrize("body", _examples(ShellRun))
def test_shell_examples_pass_the_shell_policy_without_raw_shell(body: dict[str, Any]) -> None:
    run = ShellRun.model_validate(body)
    project = Project(id="p", status=ProjectStatus.RUNNING)
    assert build_shell_argv(command=run.command, argv=run.argv, project=project)
    if run.cwd is not None:
        policy.check_relative_path(run.cwd)
    policy.check_env(run.env)


# stream events


def _parse(text: str) -> list[dict[str, Any]]:
    """Frames as an SSE client parses them: fields per event; the last id carries over."""
    events: list[dict[str, Any]] = []
    last_id: str | None = None
    for block in text.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            name, _, value = line.partition(": ")
            fields[name] = int(value) if name == "retry" else value
        if "data" not in fields:
            continue
        last_id = fields.get("id", last_id)
        if last_id is not None:
            fields["id"] = last_id
        events.append(fields)
    return events


def _conforms(event: dict[str, Any]) -> bool:
    return off_event_schema(SSE_EVENT, event) is None


CID = "cmd_0123456789abcdef01234567"
SENT: dict[EventType, dict[str, Any]] = {
    EventType.STATUS: {"status": "queued", "queue_position": 3},
    EventType.OUTPUT: {"line": "héllo \x1b[0m", "stream": "stderr"},
    EventType.MESSAGE: {"type": "result", "session_id": "s", "total_cost_usd": 0.01},
    EventType.TRUNCATED: {"limit_bytes": 1024},
    EventType.COMPLETE: {"status": "succeeded", "exit_code": 0, "duration_ms": 12},
}


def test_every_frame_rdev_writes_matches_the_documented_event() -> None:
    text = f"retry: {sse.RETRY_MS}\n" + sse.bare(
        EventType.CONNECTED, {"project": "demo", "stream_id": CID, "status": "running"}
    )
    batch = [Event(CID, seq, type_, data) for seq, (type_, data) in enumerate(SENT.items(), 1)]
    text += sse.frames(batch[:2]) + sse.heartbeat() + "".join(sse.frame(e) for e in batch[2:])
    text += sse.bare(EventType.ERROR, {"code": "SLOW_CONSUMER", "message": "too slow"})
    events = _parse(text)
    assert [e["event"] for e in events] == [
        "connected", "status", "output", "heartbeat", "message", "truncated", "complete", "error",
    ]  # fmt: skip
    assert events[-2]["id"] == f"{CID}:final"
    assert [e for e in events if not _conforms(e)] == []
    assert {t.value for t in EventType} == {e["event"] for e in events}


@pytest.mark.parametrize(
    "event",
    [
        {"event": "output", "data": '"a line"'},  # data not an object
        {"event": "output", "data": '{"line": "x"}'},  # no stream
        {"event": "output", "data": '{"line": "x", "stream": "stdin"}'},
        {"event": "status", "data": '{"status": "sleeping"}'},
        {"event": "complete", "data": "{}"},
        {"event": "error", "data": '{"code": "X"}'},
        {"event": "connected", "data": '{"project": "demo"}'},
        {"event": "status", "data": "not json"},
        {"event": "notice", "data": "{}"},  # not an event rdev sends
        {"event": "heartbeat", "data": '{"timestamp": "t"}', "id": "no-sequence"},
        {"event": "heartbeat", "data": '{"timestamp": "t"}', "id": f"{CID}:-1"},
        {"event": "heartbeat", "data": '{"timestamp": "t"}', "comment": "x"},
        {"data": '{"timestamp": "t"}'},  # no event name
    ],
)
def test_events_off_the_documented_schema_are_refused(event: dict[str, Any]) -> None:
    assert not _conforms(event)


def test_both_stream_routes_document_events_not_one_string() -> None:
    content = EVENTS[200]["content"]["text/event-stream"]
    assert content["itemSchema"] is SSE_EVENT
    # the whole stream: a sequence of those events (a generator needs `items` to read it)
    assert content["schema"] == {"type": "array", "items": SSE_EVENT}
    statuses = {s.value for s in CommandStatus}
    for branch in SSE_EVENT["oneOf"]:
        fields = branch["properties"]["data"]["contentSchema"]["properties"]
        if "status" in fields:
            assert set(fields["status"]["enum"]) == statuses
