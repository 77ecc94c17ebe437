"""The output cap through the real server on both backends: it bounds bytes and events, keeps
the head and the tail (where errors are), accounts for what it dropped, costs little past the
cap, and can stop the command instead (`on_output_limit: "kill"`)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Launch
from tests.support import (
    Running,
    SseEvent,
    eventually,
    processes_under,
    read_sse,
    read_to_end,
    wait_status,
)

MAX_BYTES = 256 * 1024
MAX_EVENTS = 1000


@pytest.fixture
async def capped(launch: Launch) -> AsyncIterator[Running]:
    async with launch(max_output_bytes=MAX_BYTES, max_output_events=MAX_EVENTS) as running:
        yield running


async def _run(rdev: Running, script: str, kind: str = "shell", **extra: Any) -> str:
    body = {"argv": ["sh", "-c", script], **extra}
    resp = await rdev.admin.post(f"/projects/demo/{kind}", json=body)
    assert resp.status_code == 201, resp.text
    cid: str = resp.json()["data"]["command_id"]
    return cid


def _outputs(events: list[SseEvent]) -> list[str]:
    return [e.data["line"] for e in events if e.event == "output"]


def _truncated(events: list[SseEvent]) -> list[dict[str, Any]]:
    return [e.data for e in events if e.event == "truncated"]


def _seq_bytes(first: int, last: int) -> int:
    return sum(len(str(i)) + 1 for i in range(first, last + 1))


async def test_a_flood_of_short_lines_is_bounded_by_events_and_keeps_head_and_tail(
    capped: Running,
) -> None:
    n = 300_000  # ~2 MB: within the byte cap's reach only through the event cap
    cid = await _run(capped, f"seq 1 {n}")
    events = await read_to_end(capped.admin, f"/commands/{cid}/events")
    head, tail = MAX_EVENTS - MAX_EVENTS // 10, MAX_EVENTS // 10
    lines = _outputs(events)
    assert lines == [str(i) for i in range(1, head + 1)] + [
        str(i) for i in range(n - tail + 1, n + 1)
    ]
    limit, end = _truncated(events)
    assert limit == {
        "phase": "limit",
        "limit_bytes": MAX_BYTES,
        "limit_events": MAX_EVENTS,
        "action": "truncate",
        "tail_bytes": MAX_BYTES // 10,
        "tail_events": tail,
    }
    assert end == {
        "phase": "end",
        "action": "truncate",
        "dropped_bytes": _seq_bytes(head + 1, n - tail),
        "dropped_lines": n - head - tail,
        "tail_bytes": _seq_bytes(n - tail + 1, n),
        "tail_lines": tail,
    }
    kinds = [e.event for e in events if e.event in ("output", "truncated")]
    assert kinds == ["output"] * head + ["truncated", "truncated"] + ["output"] * tail
    done = await wait_status(capped.admin, cid, "succeeded")
    assert done["truncated"] is True
    assert done["output_bytes"] == _seq_bytes(1, n)


async def test_a_flood_of_long_lines_is_bounded_by_bytes_and_the_error_at_the_end_survives(
    capped: Running,
) -> None:
    script = (
        "head -c 5000000 /dev/zero | tr '\\0' 'x' | fold -w 99; echo;"
        "echo 'error: the build failed' >&2; exit 3"
    )
    cid = await _run(capped, script)
    events = await read_to_end(capped.admin, f"/commands/{cid}/events")
    outputs = [e.data for e in events if e.event == "output"]
    stored = sum(len(o["line"].encode()) + 1 for o in outputs)
    assert stored <= MAX_BYTES
    assert len(outputs) <= MAX_EVENTS
    assert outputs[0]["line"] == "x" * 99
    # the two pipes are read independently: only the order within each stream is certain
    assert [o["line"] for o in outputs if o["stream"] == "stderr"] == ["error: the build failed"]
    assert [o["line"] for o in outputs if o["stream"] == "stdout"][-2:] == ["x" * 99, "x" * 5]
    limit, end = _truncated(events)
    assert limit["phase"] == "limit" and end["phase"] == "end"
    assert stored + end["dropped_bytes"] == 5_000_000 + 50_506 + len("error: the build failed\n")
    done = await wait_status(capped.admin, cid, "failed")
    assert done["exit_code"] == 3 and done["truncated"] is True


async def test_output_endpoint_shows_head_a_marker_for_the_gap_and_tail(capped: Running) -> None:
    cid = await _run(capped, "seq 1 5000; echo 'fatal: at the end' >&2")
    await wait_status(capped.admin, cid, "succeeded")
    resp = await capped.admin.get(f"/commands/{cid}/output")
    assert resp.status_code == 200
    text = resp.text.split("\n")
    head = [str(i) for i in range(1, 901)]
    tail = [str(i) for i in range(5000 - 98, 5001)] + ["fatal: at the end"]
    assert text[:900] == head
    assert text[901:] == [*tail, ""]
    dropped = 5000 - 900 - 99
    assert text[900] == (
        f"[rdev: output cap reached; {_seq_bytes(901, 4901):,} bytes ({dropped:,} lines) "
        "dropped here; the first and the last part kept]"
    )


async def test_output_under_the_cap_is_all_stored_with_no_truncation(capped: Running) -> None:
    n = 950  # past the head share (900 events) but within the cap: nothing need be dropped
    cid = await _run(capped, f"seq 1 {n}")
    events = await read_to_end(capped.admin, f"/commands/{cid}/events")
    assert _outputs(events) == [str(i) for i in range(1, n + 1)]
    limit, end = _truncated(events)
    assert limit["phase"] == "limit"
    assert end["dropped_bytes"] == 0 and end["dropped_lines"] == 0 and end["tail_lines"] == 50
    resp = await capped.admin.get(f"/commands/{cid}/output")
    assert resp.text == "".join(f"{i}\n" for i in range(1, n + 1))  # no marker: nothing is missing


async def test_yes_past_the_cap_runs_to_its_timeout_with_bounded_log(capped: Running) -> None:
    cid = await _run(capped, "exec yes", timeout_seconds=3)
    events = await read_to_end(capped.admin, f"/commands/{cid}/events")
    lines = _outputs(events)
    assert len(lines) == MAX_EVENTS and set(lines) == {"y"}
    _, end = _truncated(events)
    assert end["dropped_lines"] > 100_000 and end["dropped_bytes"] == 2 * end["dropped_lines"]
    done = await wait_status(capped.admin, cid, "timed_out")
    assert done["output_bytes"] == 2 * (MAX_EVENTS + end["dropped_lines"])
    assert await capped.app.store.events.last_seq(cid) < MAX_EVENTS + 10


async def test_reading_past_the_cap_costs_little(capped: Running) -> None:
    """CPU of this whole process (server, client and, on kubernetes, the test API server that
    relays `yes`) over 2 s of `yes` past the cap, while /health stays quick. The exact figure
    for the server alone is bench/output_cap.py's; this bound is loose so CI stays stable."""
    cid = await _run(capped, "exec yes", timeout_seconds=60)
    await read_sse(capped.admin, f"/commands/{cid}/events", until="truncated")
    cpu0, t0 = time.process_time(), time.monotonic()
    slowest = 0.0
    while time.monotonic() - t0 < 2.0:
        started = time.monotonic()
        assert (await capped.admin.get("/health")).status_code == 200
        slowest = max(slowest, time.monotonic() - started)
        await asyncio.sleep(0.1)  # a sampling interval, not a wait for a condition
    share = (time.process_time() - cpu0) / (time.monotonic() - t0)
    await capped.admin.post(f"/commands/{cid}/cancel")
    await wait_status(capped.admin, cid, "cancelled")
    assert share < 0.35, f"{share:.0%} of a core past the cap"
    assert slowest < 0.5


async def test_on_output_limit_kill_stops_the_command_at_the_cap(capped: Running) -> None:
    started = time.monotonic()
    cid = await _run(capped, "exec yes", on_output_limit="kill", timeout_seconds=60)
    events = await read_to_end(capped.admin, f"/commands/{cid}/events")
    assert time.monotonic() - started < 30  # well before the timeout
    lines = _outputs(events)
    assert len(lines) == MAX_EVENTS and set(lines) == {"y"}  # the whole cap, no tail
    limit, end = _truncated(events)
    assert limit["action"] == "kill" and limit["tail_events"] == 0
    assert end["action"] == "kill" and end["tail_lines"] == 0
    assert [e.data["code"] for e in events if e.event == "error"] == ["OUTPUT_LIMIT"]
    assert events[-1].event == "complete" and events[-1].data["status"] == "failed"
    done = await wait_status(capped.admin, cid, "failed")
    assert done["on_output_limit"] == "kill" and "output" in done["error"]
    await eventually(lambda: not processes_under(capped.workspace("demo")))
    resp = await capped.admin.get(f"/commands/{cid}/output")
    marker = (
        f"[rdev: output cap reached; the command was stopped; {end['dropped_bytes']:,} bytes "
        f"({end['dropped_lines']:,} lines) after it not kept]\n"
    )
    assert resp.text == "y\n" * MAX_EVENTS + marker


async def test_kill_mode_under_the_cap_changes_nothing(capped: Running) -> None:
    cid = await _run(capped, "seq 1 10", on_output_limit="kill")
    events = await read_to_end(capped.admin, f"/commands/{cid}/events")
    assert _outputs(events) == [str(i) for i in range(1, 11)]
    assert _truncated(events) == []
    done = await wait_status(capped.admin, cid, "succeeded")
    assert done["truncated"] is False and done["on_output_limit"] == "kill"


@pytest.mark.parametrize("value", ["stop", "KILL", "", None, 1, ["kill"]])
async def test_on_output_limit_accepts_only_truncate_or_kill(capped: Running, value: Any) -> None:
    for kind, body in (
        ("shell", {"argv": ["true"]}),
        ("git", {"args": ["status"]}),
        ("claude", {"prompt": "hi"}),
    ):
        resp = await capped.admin.post(
            f"/projects/demo/{kind}", json={**body, "on_output_limit": value}
        )
        assert resp.status_code == 422, (kind, resp.text)
        assert resp.json()["error"]["code"] == "VALIDATION_ERROR"


async def test_git_and_claude_accept_on_output_limit(capped: Running) -> None:
    resp = await capped.admin.post(
        "/projects/demo/git", json={"args": ["status"], "on_output_limit": "kill"}
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["data"]["on_output_limit"] == "kill"
    resp = await capped.admin.post(
        "/projects/demo/claude", json={"prompt": "hi", "on_output_limit": "truncate"}
    )
    assert resp.status_code == 201, resp.text
    done = await wait_status(capped.admin, resp.json()["data"]["command_id"], "succeeded")
    assert done["on_output_limit"] == "truncate" and done["session_id"]


async def test_claude_past_the_cap_keeps_its_final_result(launch: Launch, tmp_path: Path) -> None:
    fake = tmp_path / "chatty-claude"
    result = {"type": "result", "is_error": False, "num_turns": 3, "session_id": "sess-tail",
              "total_cost_usd": 0.5, "result": "done"}  # fmt: skip
    fake.write_text(
        "#!/bin/sh\n"
        'seq 1 20000 | sed \'s/.*/{"type":"assistant","n":&}/\'\n'
        f"echo '{json.dumps(result)}'\n"
    )
    fake.chmod(0o755)
    async with launch(
        max_output_bytes=MAX_BYTES, max_output_events=MAX_EVENTS, claude_bin=str(fake)
    ) as rdev:
        resp = await rdev.admin.post("/projects/demo/claude", json={"prompt": "talk a lot"})
        assert resp.status_code == 201, resp.text
        cid = resp.json()["data"]["command_id"]
        events = await read_to_end(rdev.admin, f"/commands/{cid}/events")
        messages = [e.data for e in events if e.event == "message"]
        assert len(messages) == MAX_EVENTS
        assert messages[-1] == result
        assert messages[-2] == {"type": "assistant", "n": 20000}
        done = await wait_status(rdev.admin, cid, "succeeded")
        assert done["session_id"] == "sess-tail" and done["num_turns"] == 3


async def test_readers_of_a_command_past_the_cap_get_the_tail_live(capped: Running) -> None:
    cid = await _run(capped, "seq 1 100000; sleep 0.5; echo late")
    events = await read_sse(capped.admin, f"/commands/{cid}/events")
    assert events[-1].event == "complete"
    assert _outputs(events)[-2:] == ["100000", "late"]


async def test_idempotency_counts_on_output_limit_but_not_its_default(capped: Running) -> None:
    async def post(body: dict[str, Any]) -> Any:
        return await capped.admin.post(
            "/projects/demo/shell", json=body, headers={"Idempotency-Key": "cap-1"}
        )

    first = await post({"argv": ["true"]})
    assert first.status_code == 201
    same = await post({"argv": ["true"], "on_output_limit": "truncate"})  # the default, spelt out
    assert same.status_code == 200
    assert same.json()["data"]["command_id"] == first.json()["data"]["command_id"]
    other = await post({"argv": ["true"], "on_output_limit": "kill"})
    assert other.status_code == 409
