"""The SSE protocol: resume without loss, framing that survives any output, the output cap,
slow consumers, fan-out and heartbeats."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from rdev.config import Settings
from tests.e2e.conftest import Launch
from tests.support import (
    Running,
    eventually,
    make_project,
    off_event_schema,
    output_text,
    read_sse,
    read_to_end,
    serve,
    wait_status,
)


@pytest.fixture
async def fast(launch: Launch) -> AsyncIterator[Running]:
    async with launch(
        sse_heartbeat_seconds=0.2, max_output_bytes=256 * 1024, sse_buffer_events=50
    ) as running:
        yield running


async def _shell(rdev: Running, script: str, **extra: Any) -> str:
    resp = await rdev.admin.post(
        "/projects/demo/shell", json={"argv": ["sh", "-c", script], **extra}
    )
    assert resp.status_code == 201, resp.text
    cid: str = resp.json()["data"]["command_id"]
    return cid


async def test_reconnect_with_last_event_id_replays_missed_events_once_in_order(
    fast: Running,
) -> None:
    cid = await _shell(fast, "for i in $(seq 1 200); do echo line $i; done")
    head = await read_sse(fast.admin, f"/commands/{cid}/events", stop_after=20)
    last_id = [e.id for e in head if e.id][-1]
    await wait_status(fast.admin, cid, "succeeded")
    for headers, path in (
        ({"Last-Event-ID": last_id}, f"/commands/{cid}/events"),
        ({}, f"/commands/{cid}/events?last_event_id={last_id}"),
        ({"Last-Event-ID": last_id}, f"/projects/demo/events?stream_id={cid}"),
    ):
        tail = await read_sse(fast.admin, path, headers=headers)
        ids = [e.id for e in head + tail if e.id]
        seqs = [int(i.split(":")[1]) for i in ids if not i.endswith(":final")]
        assert seqs == list(range(1, len(seqs) + 1)), "no gap, no repeat"
        lines = [e.data["line"] for e in head + tail if e.event == "output"]
        assert lines == [f"line {i}" for i in range(1, 201)]


@pytest.mark.parametrize("bad", ["garbage", "cmd_other:3", "{cid}:x", "{cid}:-1", "{cid}"])
async def test_malformed_or_foreign_last_event_id_is_400(fast: Running, bad: str) -> None:
    cid = await _shell(fast, "true")
    resp = await fast.admin.get(
        f"/commands/{cid}/events", headers={"Last-Event-ID": bad.format(cid=cid)}
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "INVALID_EVENT_ID"


async def test_framing_survives_long_lines_invalid_utf8_cr_nul_and_ansi(fast: Running) -> None:
    script = (
        "head -c 200000 /dev/zero | tr '\\0' 'a'; echo;"  # one 200 KB line
        "printf 'bad \\377\\376 bytes\\n'; printf 'cr\\ronly\\n'; printf 'nul\\000byte\\n';"
        "printf '\\033[1;31mred\\033[0m\\n'; printf 'caf\\303\\251\\n'"
    )
    cid = await _shell(fast, script)
    events = await read_to_end(fast.admin, f"/commands/{cid}/events")
    outputs = [e.data for e in events if e.event == "output"]
    long_parts = outputs[:4]
    assert [len(p["line"]) for p in long_parts] == [65536, 65536, 65536, 200000 - 3 * 65536]
    assert [p.get("partial", False) for p in long_parts] == [True, True, True, False]
    rest = [p["line"] for p in outputs[4:]]
    assert rest == [
        "bad \ufffd\ufffd bytes",
        "cr\ronly",
        "nul\x00byte",
        "\x1b[1;31mred\x1b[0m",
        "caf\u00e9",
    ]
    assert events[-1].event == "complete"


async def test_joined_lines_hash_equals_the_real_output(fast: Running) -> None:
    script = 'for i in $(seq 1 3000); do echo "$i \u00e9\u6f22\u5b57 \U0001f600 tab\there"; done; printf tail'
    cid = await _shell(fast, script)
    events = await read_to_end(fast.admin, f"/commands/{cid}/events")
    expected = (
        "".join(f"{i} \u00e9\u6f22\u5b57 \U0001f600 tab\there\n" for i in range(1, 3001)) + "tail"
    )
    received = hashlib.sha256(output_text(events).encode()).hexdigest()
    assert received == hashlib.sha256(expected.encode()).hexdigest()


async def test_output_cap_emits_one_truncated_event_and_the_command_runs_on(fast: Running) -> None:
    cid = await _shell(
        fast, "head -c 5000000 /dev/zero | tr '\\0' 'x' | fold -w 99; echo finished >&2; exit 0"
    )
    events = await read_to_end(fast.admin, f"/commands/{cid}/events")
    truncated = [e.data for e in events if e.event == "truncated"]
    assert [t["phase"] for t in truncated] == ["limit", "end"]  # at the cap, then the accounting
    assert truncated[0]["limit_bytes"] == 256 * 1024
    stored = sum(len(e.data["line"]) + 1 for e in events if e.event == "output")
    assert stored <= 256 * 1024
    assert {"line": "finished", "stream": "stderr"} in [
        e.data for e in events if e.event == "output"
    ]  # the last words are kept
    done = await wait_status(fast.admin, cid, "succeeded")
    assert done["truncated"] is True
    assert done["output_bytes"] > 5_000_000


async def test_many_readers_each_receive_every_event(fast: Running) -> None:
    cid = await _shell(fast, "sleep 0.3; for i in $(seq 1 500); do echo $i; done")
    results = await asyncio.gather(
        *(read_to_end(fast.admin, f"/commands/{cid}/events") for _ in range(8))
    )
    for events in results:
        assert [e.data["line"] for e in events if e.event == "output"] == [
            str(i) for i in range(1, 501)
        ]


async def test_heartbeats_keep_a_silent_stream_alive(fast: Running) -> None:
    cid = await _shell(fast, "sleep 1.5; echo awake")
    events = await read_to_end(fast.admin, f"/commands/{cid}/events")
    assert sum(e.event == "heartbeat" for e in events) >= 3
    assert [e.data["line"] for e in events if e.event == "output"] == ["awake"]
    assert "timestamp" in next(e for e in events if e.event == "heartbeat").data


async def test_slow_consumer_is_cut_off_and_resumes_from_the_log_without_loss(
    launch: Launch,
) -> None:
    async with launch(sse_buffer_events=50) as rdev:
        await _check_slow_consumer(rdev, lines=100_000)


async def _read_resuming(client: httpx.AsyncClient, path: str) -> tuple[list[Any], int]:
    """Read a stream to `complete` as a client should: after SLOW_CONSUMER, reconnect with the
    last id seen. Returns the events and how many times it reconnected."""
    events: list[Any] = []
    reconnects = 0
    headers: dict[str, str] = {}
    while True:
        part = await read_sse(client, path, headers=headers)
        events += [e for e in part if e.event not in ("connected", "error")]
        if part[-1].event == "complete":
            return events, reconnects
        assert part[-1].event == "error" and part[-1].data["code"] == "SLOW_CONSUMER", part[-1]
        headers = {"Last-Event-ID": next(e.id for e in reversed(part) if e.id)}
        reconnects += 1


async def _check_slow_consumer(fast: Running, *, lines: int) -> None:
    """One reader stops reading while the command writes far more than its buffer holds: it is
    cut off with SLOW_CONSUMER and resumes from the log without loss. Another reader, reading
    all along, gets every line once and in order whatever happens to the first. (Whether it
    is ever cut off itself depends on how this in-process client keeps up with `seq`.)"""
    cid = await _shell(fast, f"sleep 0.5; seq 1 {lines}")
    other = asyncio.create_task(_read_resuming(fast.admin, f"/commands/{cid}/events"))
    received: list[Any] = []
    slow = fast.client(fast.admin_key, timeout=60)
    async with slow.stream("GET", f"/commands/{cid}/events") as resp:
        chunks = resp.aiter_lines()
        await anext(chunks)
        await wait_status(fast.admin, cid, "succeeded", timeout=60)  # stop reading meanwhile
        current: dict[str, str] = {}
        async for line in chunks:
            if line == "":
                received.append(dict(current))
                current = {}
                continue
            name, _, value = line.partition(": ")
            current[name] = value
    assert received[-1]["event"] == "error" and "SLOW_CONSUMER" in received[-1]["data"]
    last_id = [r["id"] for r in received if "id" in r][-1]
    tail = await read_sse(fast.admin, f"/commands/{cid}/events", headers={"Last-Event-ID": last_id})
    got = [json.loads(r["data"])["line"] for r in received if r.get("event") == "output"]
    got += [e.data["line"] for e in tail if e.event == "output"]
    assert got == [str(i) for i in range(1, lines + 1)]
    others, _ = await other
    assert [e.data["line"] for e in others if e.event == "output"] == got
    seqs = [int(e.id.rsplit(":", 1)[1]) for e in others if e.id and e.event != "complete"]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # every event once, in order


@pytest.mark.slow
async def test_stream_survives_a_minute_of_silence(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory()  # the default 15 s heartbeat
    make_project(settings.workspace_root, "demo")
    async with serve(settings) as rdev:
        cid = await _shell(rdev, "sleep 61; echo still here")
        events = await read_sse(rdev.admin, f"/commands/{cid}/events")
        assert sum(e.event == "heartbeat" for e in events) >= 3
        assert [e.data["line"] for e in events if e.event == "output"] == ["still here"]


@pytest.mark.parametrize("script", ["sleep 30", "while true; do echo tick; sleep 0.01; done"])
async def test_a_client_that_goes_away_frees_its_stream_by_the_next_heartbeat(
    fast: Running, script: str
) -> None:
    cid = await _shell(fast, script)
    opened = asyncio.Event()
    reader = asyncio.create_task(
        read_sse(fast.admin, f"/commands/{cid}/events", until="never", opened=opened)
    )
    await asyncio.wait_for(opened.wait(), 10)
    await eventually(lambda: fast.app.hub.readers(cid) == 1)
    reader.cancel()  # closes the connection
    with contextlib.suppress(asyncio.CancelledError):
        await reader
    await eventually(lambda: fast.app.hub.readers(cid) == 0, timeout=5)  # heartbeat: 0.2 s
    await fast.admin.post(f"/commands/{cid}/cancel")


async def test_openapi_documents_both_streams_as_event_streams(fast: Running) -> None:
    paths = (await fast.admin.get("/openapi.json")).json()["paths"]
    for path in ("/commands/{command_id}/events", "/projects/{project_id}/events"):
        assert list(paths[path]["get"]["responses"]["200"]["content"]) == ["text/event-stream"]


async def test_every_event_of_both_streams_is_as_openapi_documents_it(fast: Running) -> None:
    """Each event, by either route, from the start and resumed, matches the served OpenAPI's
    event schema (both routes once documented the stream as one string)."""
    paths = (await fast.admin.get("/openapi.json")).json()["paths"]
    cid = await _shell(fast, "echo out; echo err >&2")
    await wait_status(fast.admin, cid, "succeeded")
    reads = {
        "/commands/{command_id}/events": (f"/commands/{cid}/events", {}),
        "/projects/{project_id}/events": (f"/projects/demo/events?stream_id={cid}", {}),
    }
    for route, (url, headers) in reads.items():
        documented = paths[route]["get"]["responses"]["200"]["content"]["text/event-stream"]
        for resume in ({}, {"Last-Event-ID": f"{cid}:1"}):
            events = await read_sse(fast.admin, url, headers={**headers, **resume})
            assert [e.event for e in events][:1] == ["connected"]
            assert events[-1].event == "complete", events
            parsed = [
                {"event": e.event, "data": json.dumps(e.data)} | ({"id": e.id} if e.id else {})
                for e in events
            ]
            off = [why for e in parsed if (why := off_event_schema(documented["itemSchema"], e))]
            assert off == [], (route, resume)


# Where a resume may start: the policy is "an id the log cannot have produced is refused", so
# every id is checked against the log itself (durable before published, so a reader that saw
# an event on another replica never finds it missing here).

STREAM_PATHS = ["/commands/{cid}/events", "/projects/demo/events?stream_id={cid}"]


def _seq(event_id: str) -> int:
    return int(event_id.rsplit(":", 1)[1])


async def _finished(
    rdev: Running, script: str = "echo a; echo b; echo c", status: str = "succeeded"
) -> tuple[str, int]:
    """A finished command and the sequence number of its `complete` event."""
    cid = await _shell(rdev, script)
    await wait_status(rdev.admin, cid, status)
    events = await read_sse(rdev.admin, f"/commands/{cid}/events")
    last_numbered = max(_seq(e.id) for e in events if e.id and not e.id.endswith(":final"))
    return cid, last_numbered + 1


async def _resume(rdev: Running, path: str, last_id: str, *, query: bool) -> httpx.Response:
    if query:
        sep = "&" if "?" in path else "?"
        return await rdev.admin.get(f"{path}{sep}last_event_id={last_id}")
    return await rdev.admin.get(path, headers={"Last-Event-ID": last_id})


@pytest.mark.parametrize("query", [False, True], ids=["header", "query"])
@pytest.mark.parametrize("path", STREAM_PATHS)
async def test_resume_ahead_of_a_finished_commands_log_is_400(
    fast: Running, path: str, query: bool
) -> None:
    cid, final_seq = await _finished(fast)
    for ahead in (final_seq + 1, final_seq + 2, 9999, 10**12 - 1):
        resp = await _resume(fast, path.format(cid=cid), f"{cid}:{ahead}", query=query)
        assert resp.status_code == 400, (ahead, resp.text)
        error = resp.json()["error"]
        assert error["code"] == "INVALID_EVENT_ID"
        assert error["details"]["last_seq"] == final_seq


@pytest.mark.parametrize("query", [False, True], ids=["header", "query"])
@pytest.mark.parametrize("path", STREAM_PATHS)
async def test_resume_at_or_after_final_is_204_no_content(
    fast: Running, path: str, query: bool
) -> None:
    cid, final_seq = await _finished(fast)
    for last_id in (f"{cid}:final", f"{cid}:{final_seq}"):
        resp = await _resume(fast, path.format(cid=cid), last_id, query=query)
        assert resp.status_code == 204, (last_id, resp.text)
        assert resp.content == b""


@pytest.mark.parametrize("path", STREAM_PATHS)
async def test_every_resume_point_of_a_finished_command_replays_the_rest_and_ends_with_complete(
    fast: Running, path: str
) -> None:
    cid, final_seq = await _finished(fast)
    for after in range(final_seq):
        headers = {"Last-Event-ID": f"{cid}:{after}"} if after else {}
        events = await read_sse(fast.admin, path.format(cid=cid), headers=headers)
        assert events[0].event == "connected"
        assert events[-1].event == "complete" and events[-1].id == f"{cid}:final"
        numbered = [_seq(e.id) for e in events[1:-1] if e.id]
        assert numbered == list(range(after + 1, final_seq)), after
        assert not any(e.event == "heartbeat" for e in events)


async def test_an_event_source_stops_after_complete(fast: Running) -> None:
    """A browser's EventSource reconnects after any 200 stream ends and stops only on 204 (or
    an error status). Emulated here: it must connect twice and stop, never loop."""
    cid, _ = await _finished(fast)
    last_id: str | None = None
    connections = 0
    while connections < 5:
        connections += 1
        headers = {"Last-Event-ID": last_id} if last_id else {}
        async with fast.admin.stream("GET", f"/commands/{cid}/events", headers=headers) as resp:
            if resp.status_code == 204:
                break
            assert resp.status_code == 200
            async for line in resp.aiter_lines():
                if line.startswith("id: "):
                    last_id = line[4:]
    assert connections == 2
    assert last_id == f"{cid}:final"


async def test_a_finished_command_whose_events_were_pruned_still_ends_with_complete(
    fast: Running,
) -> None:
    cid, _ = await _finished(fast, "exit 3", "failed")
    await fast.app.store.events.prune(datetime.now(UTC) + timedelta(days=1))
    assert await fast.app.store.events.last_seq(cid) == 0
    for headers in ({}, {"Last-Event-ID": f"{cid}:2"}):
        events = await read_sse(fast.admin, f"/commands/{cid}/events", headers=headers)
        assert [e.event for e in events] == ["connected", "complete"]
        assert events[-1].id == f"{cid}:final"
        assert events[-1].data["status"] == "failed" and events[-1].data["exit_code"] == 3
    resp = await fast.admin.get(
        f"/commands/{cid}/events", headers={"Last-Event-ID": f"{cid}:final"}
    )
    assert resp.status_code == 204


async def _gated(rdev: Running, flag: str) -> str:
    """A running command that has written `queued` (1) and `running` (2) and waits for `flag`."""
    cid = await _shell(rdev, f"while [ ! -f {flag} ]; do sleep 0.02; done; echo released")
    await wait_status(rdev.admin, cid, "running")
    await eventually(lambda: _last_seq_is(rdev, cid, 2))
    return cid


async def _last_seq_is(rdev: Running, cid: str, seq: int) -> bool:
    return await rdev.app.store.events.last_seq(cid) == seq


@pytest.mark.parametrize("path", STREAM_PATHS)
async def test_resume_ahead_of_a_running_commands_log_is_400_and_at_its_end_tails(
    fast: Running, path: str
) -> None:
    cid = await _gated(fast, "go")
    url = path.format(cid=cid)
    for last_id in (f"{cid}:3", f"{cid}:50", f"{cid}:final"):
        resp = await fast.admin.get(url, headers={"Last-Event-ID": last_id})
        assert resp.status_code == 400, (last_id, resp.text)
        assert resp.json()["error"]["code"] == "INVALID_EVENT_ID"
    opened = asyncio.Event()
    reader = asyncio.create_task(
        read_sse(fast.admin, url, headers={"Last-Event-ID": f"{cid}:2"}, opened=opened)
    )
    await asyncio.wait_for(opened.wait(), 10)
    (fast.workspace("demo") / "go").touch()
    events = await asyncio.wait_for(reader, 15)
    assert [e.data["line"] for e in events if e.event == "output"] == ["released"]
    assert _seq(next(e.id for e in events if e.id)) == 3  # nothing before what it asked for
    assert events[-1].event == "complete"
