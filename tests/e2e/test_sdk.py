"""The Python SDK (rdev.client) against a real rdev under uvicorn, on both backends: every area
of the API through typed results, errors as exception families, and command streams that
resume through a cut connection without a gap or a duplicate."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rdev.client import (
    AsyncClient,
    AuthError,
    Client,
    Command,
    Conflict,
    Forbidden,
    NotFound,
    ValidationError,
)
from tests.e2e.conftest import Launch
from tests.pgproxy import TcpProxy
from tests.support import Running, eventually

GATED = (
    "for i in 1 2 3 4 5; do echo line$i; done; "
    "while [ ! -f gate ]; do sleep 0.02; done; "
    "for i in 6 7 8 9 10; do echo line$i; done"
)


@pytest.fixture
async def sdk(rdev: Running) -> AsyncClient:
    client = AsyncClient(rdev.url, rdev.admin_key, resume_timeout=20)
    yield client  # type: ignore[misc]
    await client.aclose()


async def test_run_streams_stdout_and_stderr_and_wait_returns_the_exit_code(
    sdk: AsyncClient,
) -> None:
    handle = await sdk.run("demo", ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert isinstance(handle.command, Command) and handle.command.project == "demo"
    events = [e async for e in handle]
    assert events[0].event == "connected" and events[-1].event == "complete"
    assert {(e.stream, e.line) for e in events if e.event == "output"} == {
        ("stdout", "out"), ("stderr", "err"),
    }  # fmt: skip
    final = await handle.wait()  # already at the end: no second stream
    assert (final.status, final.exit_code, final.done) == ("failed", 3, True)
    assert sorted((await handle.output()).splitlines()) == ["err", "out"]


async def test_the_blocking_client_does_what_the_async_one_does(rdev: Running) -> None:
    def work() -> tuple[list[str], list[str], int | None, str]:
        with Client(rdev.url, rdev.admin_key) as client:
            projects = [p.id for p in client.projects()]
            handle = client.run("demo", command="echo hello world")
            lines = [e.line for e in handle if e.line is not None]
            final = handle.wait()
            return projects, lines, final.exit_code, client.project("demo").id

    projects, lines, exit_code, status = await asyncio.to_thread(work)
    assert "demo" in projects and status == "demo"
    assert lines == ["hello world"] and exit_code == 0


async def test_git_and_the_command_list_with_a_status_filter(sdk: AsyncClient) -> None:
    init = await (await sdk.git("demo", ["init", "-q"])).wait()
    assert init.status == "succeeded", init
    status = await sdk.git("demo", ["status", "--short"])
    assert (await status.wait()).exit_code == 0
    failed = await (await sdk.run("demo", ["false"])).wait()
    page = await sdk.commands("demo", status="succeeded")
    ids = [c.command_id for c in page.items]
    assert init.command_id in ids and status.id in ids and failed.command_id not in ids
    first = await sdk.commands("demo", limit=1)
    assert len(first.items) == 1 and first.next_cursor
    rest = await sdk.commands("demo", cursor=first.next_cursor)
    assert first.items[0].command_id not in [c.command_id for c in rest.items]


async def test_claude_events_carry_messages_and_the_cost(sdk: AsyncClient) -> None:
    handle = await sdk.claude("demo", "hello there", max_turns=3)
    messages = [e.data for e in [e async for e in handle] if e.event == "message"]
    assert any(m.get("type") == "assistant" for m in messages), messages
    final = await handle.wait()
    assert final.status == "succeeded" and final.total_cost_usd == pytest.approx(0.0123)


async def test_cancel_through_the_handle(sdk: AsyncClient, rdev: Running) -> None:
    handle = await sdk.run("demo", ["sleep", "30"])
    await eventually(lambda: _running(sdk, handle.id))
    await handle.cancel()
    assert (await handle.wait()).status == "cancelled"


async def _running(sdk: AsyncClient, command_id: str) -> bool:
    return (await sdk.command(command_id)).status == "running"


async def test_claude_config_keys_and_audit(sdk: AsyncClient, rdev: Running) -> None:
    made = await sdk.config_create("demo", "commands", "review", "Review the diff")
    assert (made.type, made.name) == ("commands", "review")
    assert [i.name for i in await sdk.config_list("demo", "commands")] == ["review"]
    await sdk.config_update("demo", "commands", "review", "Review it twice")
    assert (await sdk.config_get("demo", "commands", "review")).content == "Review it twice"
    with pytest.raises(Conflict) as exists:
        await sdk.config_create("demo", "commands", "review", "again")
    assert exists.value.status == 409
    await sdk.config_delete("demo", "commands", "review")
    with pytest.raises(NotFound):
        await sdk.config_get("demo", "commands", "review")

    issued = await sdk.create_key("ci", ["projects:read"], projects=["demo"])
    assert issued.key.startswith("rdev_sk_") and "key=" not in repr(issued)
    assert issued.id in [k.id for k in await sdk.keys()]
    async with AsyncClient(rdev.url, issued.key) as narrow:
        assert [p.id for p in await narrow.projects()] == ["demo"]
        with pytest.raises(Forbidden) as refused:
            await narrow.keys()
        assert refused.value.code == "FORBIDDEN" and refused.value.request_id
    rotated = await sdk.rotate_key(issued.id)
    assert rotated.key != issued.key
    assert (await sdk.revoke_key(issued.id)).revoked_at is not None
    assert (await sdk.key(issued.id)).revoked_at is not None
    async with AsyncClient(rdev.url, rotated.key) as revoked:
        with pytest.raises(AuthError) as denied:
            await revoked.projects()
        assert (denied.value.status, denied.value.code) == (401, "UNAUTHORIZED")
    actions = {e.action for e in (await sdk.audit(limit=200)).items}
    assert {"key.create", "key.rotate", "key.revoke"} <= actions, actions


async def test_refusals_are_exceptions_with_the_stable_code(sdk: AsyncClient) -> None:
    with pytest.raises(NotFound) as missing:
        await sdk.command("cmd_doesnotexist")
    assert missing.value.status == 404 and missing.value.code == "NOT_FOUND"
    with pytest.raises(ValidationError) as invalid:
        await sdk.shell("demo")  # neither argv nor command
    assert invalid.value.status in (400, 422) and invalid.value.message
    with pytest.raises(ValidationError) as bad_resume:
        async for _ in sdk.events((await sdk.run("demo", ["true"])).id, last_event_id="x:1"):
            pass
    assert bad_resume.value.code == "INVALID_EVENT_ID"


async def test_a_cut_connection_mid_stream_resumes_without_gap_or_duplicate(
    rdev: Running,
) -> None:
    host, _, port = rdev.url.removeprefix("http://").rpartition(":")
    proxy = TcpProxy(host, int(port))
    await proxy.start()
    try:
        async with AsyncClient(f"http://127.0.0.1:{proxy.port}", rdev.admin_key) as sdk:
            handle = await sdk.run("demo", ["sh", "-c", GATED])
            lines: list[str] = []
            seqs: list[int] = []
            async for event in handle:
                if event.seq is not None:
                    seqs.append(event.seq)
                if event.line is None:
                    continue
                lines.append(event.line)
                if event.line == "line5":  # the command now waits at its gate
                    await proxy.cut()
                    await proxy.restore()
                    _open_gate(rdev.workspace("demo"))
            assert lines == [f"line{i}" for i in range(1, 11)]
            assert seqs == sorted(set(seqs))
            assert handle.reconnects >= 1 and proxy.connections >= 2
            assert (await handle.wait()).exit_code == 0
    finally:
        await proxy.close()


def _open_gate(workspace: Path) -> None:
    (workspace / "gate").write_text("")


@pytest.mark.slow
async def test_a_slow_consumer_cut_off_by_the_server_resumes_without_loss(launch: Launch) -> None:
    lines = 100_000
    async with (
        launch(sse_buffer_events=10) as rdev,
        AsyncClient(rdev.url, rdev.admin_key, timeout=60) as sdk,
    ):
        handle = await sdk.run("demo", ["sh", "-c", f"sleep 0.5; seq 1 {lines}"])
        events = aiter(handle)
        assert (await anext(events)).event == "connected"
        # stop reading while it writes far more than the buffer holds
        await eventually(lambda: _done(sdk, handle.id), timeout=60)
        got = [e.line async for e in events if e.line is not None]
    assert got == [str(i) for i in range(1, lines + 1)]
    assert handle.reconnects >= 1  # it was cut off (SLOW_CONSUMER) and came back


async def _done(sdk: AsyncClient, command_id: str) -> bool:
    return (await sdk.command(command_id)).done
