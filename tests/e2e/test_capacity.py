"""Bounded resources through the real server: open event streams per key (429
TOO_MANY_STREAMS) and per replica (503 OVERLOADED), requests in flight per replica, deadlines
for a request's head and body, the head size limit, and the connection budget that sheds the
oldest unfinished request instead of refusing a new client. The flood test with 256 descriptors
is tests/e2e/test_overload.py."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from rdev.config import Settings
from tests.e2e.conftest import Launch
from tests.support import Running, eventually, make_project, serve, wait_status

SettingsFactory = Callable[..., Settings]


async def _sleeper(rdev: Running) -> str:
    resp = await rdev.admin.post("/projects/demo/shell", json={"argv": ["sleep", "60"]})
    assert resp.status_code == 201, resp.text
    cid: str = resp.json()["data"]["command_id"]
    return cid


@contextlib.asynccontextmanager
async def held_stream(client: httpx.AsyncClient, path: str) -> AsyncIterator[httpx.Response]:
    """A stream held open (its `connected` event read) for the block; closed after."""
    async with client.stream("GET", path) as resp:
        if resp.status_code == 200:
            lines = resp.aiter_lines()
            while (await anext(lines)) != "event: connected":
                pass
            resp.lines = lines  # type: ignore[attr-defined]  # for a test to read on
        else:
            await resp.aread()
        yield resp


def _port(rdev: Running) -> int:
    return int(rdev.url.rsplit(":", 1)[1])


async def _raw(rdev: Running) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", _port(rdev))


async def _closed_by_server(reader: asyncio.StreamReader, within: float) -> bytes:
    """Everything the server sent until it closed the connection (fails past `within`)."""
    data = b""
    async with asyncio.timeout(within):
        while chunk := await reader.read(65536):
            data += chunk
    return data


@pytest.fixture
async def streams(launch: Launch) -> AsyncIterator[Running]:
    async with launch(max_streams_per_key=3, max_streams=5, sse_heartbeat_seconds=0.2) as rdev:
        yield rdev


async def test_a_key_holds_at_most_its_streams_and_gets_them_back_as_they_end(
    streams: Running,
) -> None:
    cid = await _sleeper(streams)
    reader = streams.client(await streams.new_key(scopes=["commands:read"]))
    paths = [f"/commands/{cid}/events", f"/projects/demo/events?stream_id={cid}"]
    async with contextlib.AsyncExitStack() as held:
        for i in range(3):  # both routes count against the same key
            resp = await held.enter_async_context(held_stream(reader, paths[i % 2]))
            assert resp.status_code == 200
        for path in paths:
            refused = await reader.get(path)
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"]["code"] == "TOO_MANY_STREAMS"
            assert refused.json()["error"]["details"] == {"limit": 3}
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.headers["connection"] == "close"
        # other keys, and the key's ordinary requests, are not affected
        other = streams.client(await streams.new_key(scopes=["commands:read"]))
        async with held_stream(other, paths[0]) as resp:
            assert resp.status_code == 200
        assert (await reader.get(f"/commands/{cid}")).status_code == 200
        # a resume after `complete` is answered 204 and needs no slot
        finished = await streams.admin.post("/projects/demo/shell", json={"argv": ["true"]})
        fid = finished.json()["data"]["command_id"]
        await wait_status(streams.admin, fid, "succeeded")
        done = await reader.get(
            f"/commands/{fid}/events", headers={"Last-Event-ID": f"{fid}:final"}
        )
        assert done.status_code == 204
    # the streams have ended: the slots come back (the server notices by its next heartbeat)

    async def can_stream() -> bool:
        async with held_stream(reader, paths[0]) as resp:
            return resp.status_code == 200

    assert await eventually(can_stream, timeout=10)
    await streams.admin.post(f"/commands/{cid}/cancel")


async def test_the_replica_streams_limit_is_503_with_retry_after_and_probes_still_answer(
    streams: Running,
) -> None:
    cid = await _sleeper(streams)
    keys = [await streams.new_key(scopes=["commands:read"]) for _ in range(3)]
    async with contextlib.AsyncExitStack() as held:
        for i in range(5):
            client = streams.client(keys[i % 3])
            resp = await held.enter_async_context(held_stream(client, f"/commands/{cid}/events"))
            assert resp.status_code == 200
        refused = await streams.client(keys[2]).get(f"/commands/{cid}/events")
        assert refused.status_code == 503, refused.text
        body = refused.json()
        assert body["error"]["code"] == "OVERLOADED"
        assert body["error"]["details"] == {"resource": "streams", "limit": 5}
        assert body["meta"]["request_id"] == refused.headers["x-request-id"]
        assert int(refused.headers["retry-after"]) >= 1
        for path in ("/health", "/ready", "/projects"):
            assert (await streams.admin.get(path)).status_code == 200
        # refused before any work: bad input still answers for itself
        bad = await streams.admin.get(f"/commands/{cid}/events", headers={"Last-Event-ID": "x"})
        assert bad.status_code == 400
    await streams.admin.post(f"/commands/{cid}/cancel")


async def test_a_stream_outlives_the_header_and_body_deadlines(launch: Launch) -> None:
    async with launch(
        header_timeout_seconds=0.5, body_timeout_seconds=0.5, sse_heartbeat_seconds=0.3
    ) as rdev:
        cid = await _sleeper(rdev)
        started = time.monotonic()
        beats = 0
        async with rdev.admin.stream("GET", f"/commands/{cid}/events") as resp:
            assert resp.status_code == 200
            async for line in resp.aiter_lines():
                beats += line == "event: heartbeat"
                if time.monotonic() - started > 2.5:
                    break
        assert beats >= 4
        await rdev.admin.post(f"/commands/{cid}/cancel")


# The connection guard does not depend on the backend: the local one serves it.


@pytest.fixture
def guarded(settings_factory: SettingsFactory) -> Callable[..., Any]:
    def start(**overrides: Any) -> Any:
        settings = settings_factory(**overrides)
        make_project(settings.workspace_root, "demo")
        return serve(settings)

    return start


async def test_requests_in_flight_are_bounded_per_replica_and_probes_are_not(
    guarded: Callable[..., Any],
) -> None:
    async with guarded(max_requests_in_flight=2) as rdev:
        auth = f"Authorization: Bearer {rdev.admin_key}\r\n"
        slow = []
        for _ in range(2):  # two submissions whose bodies are still coming: in flight
            reader, writer = await _raw(rdev)
            writer.write(
                f"POST /projects/demo/git HTTP/1.1\r\nHost: x\r\n{auth}"
                "Content-Type: application/json\r\nContent-Length: 19\r\n\r\n{".encode()
            )
            slow.append((reader, writer))

        async def refused() -> httpx.Response | None:
            resp = await rdev.admin.get("/projects")
            return resp if resp.status_code == 503 else None

        resp = await eventually(refused, timeout=5)
        assert resp.json()["error"]["code"] == "OVERLOADED"
        assert resp.json()["error"]["details"] == {"resource": "requests", "limit": 2}
        assert resp.headers["retry-after"] == "1"
        assert resp.headers["connection"] == "close"
        for path in ("/health", "/ready"):
            assert (await rdev.client().get(path)).status_code == 200
        for reader, writer in slow:  # the bodies arrive; the submissions are answered
            writer.write(b'"args":["status"]}')
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 201"), head
            writer.close()
        assert (await rdev.admin.get("/projects")).status_code == 200


@pytest.mark.parametrize(
    "sent",
    [
        b"",  # a connection that never says anything
        b"G",
        b"GET /health HTTP/1.1\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: aaaa",
        b"POST /projects/demo/git HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n",
    ],
)
async def test_a_head_not_finished_in_time_is_cut_off(
    guarded: Callable[..., Any], sent: bytes
) -> None:
    async with guarded(header_timeout_seconds=1) as rdev:
        reader, writer = await _raw(rdev)
        started = time.monotonic()
        writer.write(sent)
        got = await _closed_by_server(reader, within=5)
        assert 0.9 <= time.monotonic() - started < 5
        if sent:
            assert got.startswith(b"HTTP/1.1 408 "), got
            assert b'"REQUEST_TIMEOUT"' in got and b"connection: close" in got.lower()
        else:
            assert got == b""
        writer.close()
        assert (await rdev.client().get("/health")).status_code == 200


async def test_a_head_trickled_in_within_the_deadline_is_served(
    guarded: Callable[..., Any],
) -> None:
    async with guarded(header_timeout_seconds=2) as rdev:
        reader, writer = await _raw(rdev)
        for piece in (b"GET /health HT", b"TP/1.1\r\nHost: x\r\n", b"\r\n"):
            writer.write(piece)
            await asyncio.sleep(0.3)  # the pacing is what is under test
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200"), head
        writer.close()


async def test_an_idle_keep_alive_connection_gets_a_fresh_head_deadline(
    guarded: Callable[..., Any],
) -> None:
    async with guarded(header_timeout_seconds=1) as rdev:
        reader, writer = await _raw(rdev)
        for _ in range(3):  # requests a little apart on one connection, each one in time
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200"), head
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            await asyncio.sleep(0.6)  # less than the deadline, more than half of it
        writer.write(b"GET /health HTTP/1.1\r\n")  # and then one that stalls
        assert (await _closed_by_server(reader, within=5)).startswith(b"HTTP/1.1 408 ")
        writer.close()


async def test_a_body_not_finished_in_time_is_cut_off(guarded: Callable[..., Any]) -> None:
    async with guarded(body_timeout_seconds=1, header_timeout_seconds=1) as rdev:
        reader, writer = await _raw(rdev)
        started = time.monotonic()
        writer.write(
            f"POST /projects/demo/git HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            f"{rdev.admin_key}\r\nContent-Type: application/json\r\n"
            'Content-Length: 100\r\n\r\n{"args":'.encode()
        )
        got = await _closed_by_server(reader, within=6)
        assert 0.9 <= time.monotonic() - started < 6
        assert b" 201 " not in got  # never taken as a submission
        writer.close()
        resp = await rdev.admin.post("/projects/demo/git", json={"args": ["status"]})
        assert resp.status_code == 201


async def test_an_oversized_head_is_431_and_closed(guarded: Callable[..., Any]) -> None:
    async with guarded() as rdev:
        reader, writer = await _raw(rdev)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        for _ in range(80):  # 80 KiB of header, never finished
            writer.write(b"X-Pad: " + b"a" * 1017 + b"\r\n")
            await writer.drain()
        got = await _closed_by_server(reader, within=5)
        assert got.startswith(b"HTTP/1.1 431 "), got[:200]
        assert b'"HEADERS_TOO_LARGE"' in got
        writer.close()


@pytest.fixture
def budget_of_16(settings_factory: SettingsFactory) -> Any:
    """rdev whose connection budget is 16: this process's descriptor limit less a reserve."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    settings = settings_factory(fd_reserve=soft - 16, sse_heartbeat_seconds=0.2)
    make_project(settings.workspace_root, "demo")
    return serve(settings)


async def _connections(rdev: Running, n: int, send: bytes) -> list[Any]:
    conns = []
    for _ in range(n):
        reader, writer = await _raw(rdev)
        writer.write(send)
        await writer.drain()
        conns.append((reader, writer))
    return conns


async def _was_shed(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), 0.5) == b""
    except ConnectionResetError:
        return True  # aborted: reset at once
    except TimeoutError:
        return False  # still open


async def test_at_the_budget_a_slow_sender_is_shed_for_a_new_client(budget_of_16: Any) -> None:
    async with budget_of_16 as rdev:
        slow = await _connections(rdev, 16, b"GET /health HTTP/1.1\r\nX-Slow: a")
        fresh = rdev.client(limits=httpx.Limits(max_keepalive_connections=0))
        for _ in range(3):  # each new client finds the budget full and sheds the oldest
            assert (await fresh.get("/health")).status_code == 200
            slow += await _connections(rdev, 1, b"GET /health HTTP/1.1\r\nX-Slow: a")
        shed = [await _was_shed(reader) for reader, _ in slow]
        assert shed[:3] == [True] * 3, shed  # the longest waiting went first
        assert not any(shed[3:]), shed
        for _reader, writer in slow:
            writer.close()


async def test_at_the_budget_silent_new_connections_have_a_grace_then_are_shed(
    budget_of_16: Any,
) -> None:
    async with budget_of_16 as rdev:
        silent = await _connections(rdev, 16, b"")
        # in the same instant, none may be shed yet (the server may not have read them)
        reader, writer = await _raw(rdev)
        refused = await _closed_by_server(reader, within=5)
        assert refused.startswith(b"HTTP/1.1 503 "), refused
        assert b'"OVERLOADED"' in refused and b"retry-after: 1" in refused.lower()
        writer.close()

        async def served() -> bool:  # what a client told Retry-After does
            resp = await rdev.client(limits=httpx.Limits(max_keepalive_connections=0)).get(
                "/health"
            )
            return resp.status_code == 200

        assert await eventually(served, timeout=5, interval=0.3)
        assert await _was_shed(silent[0][0])
        assert not await _was_shed(silent[-1][0])
        for _reader, w in silent:
            w.close()


async def test_streams_and_requests_being_answered_are_never_shed(budget_of_16: Any) -> None:
    async with budget_of_16 as rdev:
        cid = await _sleeper(rdev)
        client = rdev.client(rdev.admin_key)
        async with contextlib.AsyncExitStack() as held:
            # the stream limit is three quarters of the budget: 12
            opened = []
            for _ in range(12):
                resp = await held.enter_async_context(
                    held_stream(client, f"/commands/{cid}/events")
                )
                assert resp.status_code == 200
                opened.append(resp)
            # four connections left: slow senders fill them, honest clients shed them
            for _ in range(20):
                await _connections(rdev, 2, b"GET /health HTTP/1.1\r\nX-Slow: a")
                fresh = rdev.client(limits=httpx.Limits(max_keepalive_connections=0))
                assert (await fresh.get("/health")).status_code == 200
            for resp in opened:  # every stream is still live: its heartbeats come
                async with asyncio.timeout(5):
                    while (await anext(resp.lines)) != "event: heartbeat":
                        pass
        await rdev.admin.post(f"/commands/{cid}/cancel")
