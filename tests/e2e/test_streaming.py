"""The SSE protocol: resume without loss, framing that survives any output, the output cap,
slow consumers, fan-out and heartbeats."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Callable
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
