"""Exec over websockets: statuses, refusals, stdin, framing, and real process lifecycles."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.stream import WsApiClient

from .server import FakeKubeApi
from .wsclient import V4, V5, ExecStream, exec_url, open_exec

NS = "default"


async def eventually(predicate: Callable[[], Any], within: float = 10) -> None:
    """Poll ``predicate`` until true, failing after ``within`` seconds."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - process exits have no event to await
            await asyncio.sleep(0.02)


async def start(
    http: aiohttp.ClientSession,
    kube_api: FakeKubeApi,
    *command: str,
    pod: str = "p",
    protocols: tuple[str, ...] = (V5,),
    **flags: str,
) -> ExecStream:
    url = exec_url(kube_api.url, pod, command, NS, **flags)
    return await open_exec(http, url, kube_api.token, protocols)


async def run(http: aiohttp.ClientSession, kube_api: FakeKubeApi, *command: str) -> ExecStream:
    return await (await start(http, kube_api, *command)).finish()


@pytest.fixture(autouse=True)
def pod(kube_api: FakeKubeApi) -> None:
    kube_api.create_pod("p")


async def test_client_exec_success(kube_api: FakeKubeApi, ws_core_v1: client.CoreV1Api) -> None:
    command: Any = ["sh", "-c", "echo hello; echo oops >&2"]  # the stubs say str; lists work
    out = await ws_core_v1.connect_get_namespaced_pod_exec(
        "p", NS, command=command, stderr=True, stdout=True
    )
    assert sorted(out.splitlines()) == ["hello", "oops"]
    record = kube_api.requests[-1]
    assert record.path.endswith("/pods/p/exec") and record.header("Sec-WebSocket-Protocol") == V4


async def test_client_exec_exit_code(ws_core_v1: client.CoreV1Api) -> None:
    command: Any = ["sh", "-c", "exit 3"]
    ctx: Any = await ws_core_v1.connect_get_namespaced_pod_exec(
        "p", NS, command=command, stdout=True, _preload_content=False
    )
    async with ctx as ws:
        frames = [msg.data async for msg in ws]
    status = b"".join(f[1:] for f in frames if f[0] == 3)
    assert WsApiClient.parse_error_data(status) == 3


async def test_success_frames(kube_api: FakeKubeApi, http: aiohttp.ClientSession) -> None:
    stream = await run(http, kube_api, "sh", "-c", "echo out; echo err >&2")
    assert stream.ws.protocol == V5
    assert stream.frames[:2] == [(1, b""), (2, b"")]  # initial empty frames
    assert (stream.stdout, stream.stderr) == ("out\n", "err\n")
    assert stream.status == {"metadata": {}, "status": "Success"}
    assert stream.frames[-1][0] == 3 and stream.ws.close_code == 1000


async def test_non_zero_exit(kube_api: FakeKubeApi, http: aiohttp.ClientSession) -> None:
    stream = await run(http, kube_api, "sh", "-c", "exit 3")
    assert stream.status == {
        "metadata": {},
        "status": "Failure",
        "message": "command terminated with non-zero exit code: error executing command "
        "[sh -c exit 3], exit code 3",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
    }
    killed = await run(http, kube_api, "sh", "-c", "kill -TERM $$")
    assert killed.status is not None
    assert killed.status["details"]["causes"][0]["message"] == "143"


async def test_executable_not_found(kube_api: FakeKubeApi, http: aiohttp.ClientSession) -> None:
    stream = await run(http, kube_api, "no-such-cmd", "x")
    status = stream.status
    assert status is not None and stream.stdout == ""
    assert (status["status"], status["reason"], status["code"]) == ("Failure", "InternalError", 500)
    assert 'exec: "no-such-cmd": executable file not found in $PATH: unknown' in status["message"]
    assert "OCI runtime exec failed" in status["details"]["causes"][0]["message"]


async def refusal(http: aiohttp.ClientSession, kube_api: FakeKubeApi, url: str, proto: str) -> Any:
    headers = {
        "Authorization": f"Bearer {kube_api.token}",
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Protocol": proto,
    }
    async with http.get(url, headers=headers) as resp:
        return resp.status, (await resp.json())["reason"]


@pytest.mark.parametrize(
    ("pod_name", "flags", "proto", "tweak", "expected"),
    [
        ("gone", {}, V5, None, (404, "NotFound")),
        ("p", {}, V5, "forbid", (403, "Forbidden")),
        ("p", {"container": "nope"}, V5, None, (400, "BadRequest")),
        ("p", {}, V5, "pending", (400, "BadRequest")),
        ("p", {}, "v9.channel.k8s.io", None, (400, "BadRequest")),
        ("two", {}, V5, None, (400, "BadRequest")),  # two containers, none chosen
    ],
)
async def test_refused_before_upgrade(
    kube_api: FakeKubeApi,
    http: aiohttp.ClientSession,
    pod_name: str,
    flags: dict[str, str],
    proto: str,
    tweak: str | None,
    expected: tuple[int, str],
) -> None:
    kube_api.create_pod("two", containers=("dev", "sidecar"))
    kube_api.faults.forbid_exec = tweak == "forbid"
    if tweak == "pending":
        kube_api.update_pod("p", phase="Pending")
    url = exec_url(kube_api.url, pod_name, ["true"], NS, **flags)
    assert await refusal(http, kube_api, url, proto) == expected
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await open_exec(http, url, kube_api.token, (proto,))
    assert caught.value.status == expected[0]


async def test_protocol_preference(kube_api: FakeKubeApi, http: aiohttp.ClientSession) -> None:
    both = await start(http, kube_api, "true", protocols=(V4, V5))
    assert both.ws.protocol == V5
    v4 = await (await start(http, kube_api, "sh", "-c", "exit 2", protocols=(V4,))).finish()
    assert (
        v4.ws.protocol == V4 and v4.status is not None and v4.status["reason"] == "NonZeroExitCode"
    )
    await both.finish()
    old = await (await start(http, kube_api, "false", protocols=("channel.k8s.io",))).finish()
    assert old.data(3).startswith(b"command terminated with non-zero exit code")


async def test_stdin_and_v5_close(kube_api: FakeKubeApi, http: aiohttp.ClientSession) -> None:
    stream = await start(http, kube_api, "cat", stdin="true")
    await stream.send(0, b"ab")
    await stream.send(0, "c\u00e9".encode())
    await stream.send(255, bytes([0]))  # CLOSE stdin -> EOF
    await stream.finish()
    assert stream.stdout == "ab\u00e9".replace("\u00e9", "c\u00e9")
    assert stream.status == {"metadata": {}, "status": "Success"}


async def test_v4_stdin_ends_only_when_the_socket_closes(
    kube_api: FakeKubeApi, http: aiohttp.ClientSession
) -> None:
    target = kube_api.pod_dir("p") / "got.txt"
    stream = await start(http, kube_api, "sh", "-c", "cat > /workspace/got.txt", stdin="true",
                         protocols=(V4,))  # fmt: skip
    await stream.send(0, b"data")
    await stream.send(255, bytes([0]))  # not a CLOSE in v4: ignored
    await eventually(lambda: target.exists() and target.read_bytes() == b"data")
    assert kube_api.running_processes("p")
    await stream.ws.close()
    await eventually(lambda: not kube_api.running_processes("p"))


async def test_output_split_inside_utf8(kube_api: FakeKubeApi, http: aiohttp.ClientSession) -> None:
    kube_api.exec_options.frame_size = 3
    text = "h\u00e9llo w\u00f6rld \u20ac\u2603\n"
    stream = await run(http, kube_api, "printf", text)
    payloads = [p for ch, p in stream.frames if ch == 1 and p]
    assert max(len(p) for p in payloads) == 3
    undecodable = 0
    for p in payloads:
        try:
            p.decode()
        except UnicodeDecodeError:
            undecodable += 1
    assert undecodable > 0
    assert stream.stdout == text and stream.status == {"metadata": {}, "status": "Success"}


async def test_pod_deleted_mid_exec(kube_api: FakeKubeApi, http: aiohttp.ClientSession) -> None:
    stream = await start(http, kube_api, "sh", "-c", "echo ready; exec sleep 1000")
    await stream.read_until(lambda s: "ready" in s.stdout)
    assert kube_api.processes_in_pod_dir("p")
    kube_api.delete_pod("p")
    await stream.finish()
    assert stream.status is None and stream.ws.close_code != 1000
    await eventually(lambda: not kube_api.processes_in_pod_dir("p"))


async def test_background_process_outlives_exec(
    kube_api: FakeKubeApi, http: aiohttp.ClientSession
) -> None:
    stream = await run(http, kube_api, "sh", "-c", "sleep 1000 >/dev/null 2>&1 & echo $$")
    assert stream.status == {"metadata": {}, "status": "Success"}
    pgid = int(stream.stdout)
    assert kube_api.running_processes("p") == []  # the exec'd shell itself exited
    leftovers = kube_api.processes_in_pod_dir("p")
    assert leftovers and all(os.getpgid(pid) == pgid for pid in leftovers)
    killer = await run(http, kube_api, "kill", "-KILL", "--", f"-{pgid}")
    assert killer.status == {"metadata": {}, "status": "Success"}
    await eventually(lambda: not kube_api.processes_in_pod_dir("p"))


async def test_inherited_stdout_holds_exec_open(
    kube_api: FakeKubeApi, http: aiohttp.ClientSession
) -> None:
    """Like containerd, the exec ends at output EOF, not when the exec'd process exits."""
    stream = await start(http, kube_api, "sh", "-c", "sleep 1000 & echo $!")
    await stream.read_until(lambda s: s.stdout.endswith("\n"))
    await eventually(lambda: not kube_api.running_processes("p"))  # the shell has exited
    finishing = asyncio.ensure_future(stream.finish())
    done, _ = await asyncio.wait({finishing}, timeout=0.3)
    assert not done and stream.status is None
    os.kill(int(stream.stdout), 9)
    await finishing
    assert stream.status == {"metadata": {}, "status": "Success"}

    kube_api.exec_options.io_drain_timeout = 0.1
    drained = await run(http, kube_api, "sh", "-c", "sleep 1000 & echo started")
    assert drained.stdout == "started\n" and drained.status is not None


async def test_workspace_maps_to_pod_dir(
    kube_api: FakeKubeApi, http: aiohttp.ClientSession
) -> None:
    pod_dir = kube_api.pod_dir("p")
    (pod_dir / "sub").mkdir()
    (pod_dir / "sub" / "notes.txt").write_text("hi")
    assert (await run(http, kube_api, "cat", "/workspace/sub/notes.txt")).stdout == "hi"
    stream = await run(
        http, kube_api, "sh", "-c", "cd /workspace/sub && pwd; cd / && cd - >/dev/null"
    )
    assert stream.stdout.splitlines()[0] == str(pod_dir / "sub")
    assert (await run(http, kube_api, "pwd")).stdout == f"{pod_dir}\n"
    assert (await run(http, kube_api, "echo", "/workspaces")).stdout == "/workspaces\n"


async def test_disconnect_leaves_process_unless_configured(
    kube_api: FakeKubeApi, http: aiohttp.ClientSession
) -> None:
    for kill, alive in ((False, True), (True, False)):
        kube_api.exec_options.kill_on_disconnect = kill
        stream = await start(http, kube_api, "sh", "-c", "echo ready; exec sleep 1000")
        await stream.read_until(lambda s: "ready" in s.stdout)
        [pid] = kube_api.running_processes("p")
        await stream.ws.close()
        if alive:
            with pytest.raises(TimeoutError):
                await eventually(lambda: not kube_api.running_processes("p"), within=0.3)
            os.kill(pid, 9)
        await eventually(lambda: not kube_api.running_processes("p"))


async def test_tty_merges_stderr(kube_api: FakeKubeApi, http: aiohttp.ClientSession) -> None:
    stream = await (await start(http, kube_api, "sh", "-c", "echo a >&2", tty="true")).finish()
    assert (stream.stdout, stream.data(2)) == ("a\n", b"")
