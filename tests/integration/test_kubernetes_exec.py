"""Commands in pods through the exec websocket: output and exit codes, exec failures that are
not exit codes, UTF-8 across frames, env and cwd, v4, stdin, cancel and leftover processes, a
pod deleted mid-command, and HTTP refusals before the upgrade."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rdev.adapters.kubernetes import KubernetesBackend
from rdev.adapters.kubernetes.protocol import V4, V5
from rdev.domain.errors import BackendUnavailable, ExecFailed, InvalidInput
from rdev.domain.models import Project
from tests.integration.kubernetes_support import (
    MakeBackend,
    drain,
    eventually,
    exec_requests,
    joined,
    labels,
    make_backend,
    wrapper_token,
)
from tests.kube.fixtures import kube_api, kubeconfig
from tests.kube.server import FakeKubeApi

__all__ = ["kube_api", "kubeconfig", "make_backend"]  # fixtures used by name


@pytest.fixture
async def backend(kube_api: FakeKubeApi, make_backend: MakeBackend) -> KubernetesBackend:
    kube_api.create_pod("p", labels=labels("web"))
    return await make_backend()


@pytest.fixture
async def project(backend: KubernetesBackend) -> Project:
    return await backend.get_project("web")


async def test_stdout_stderr_and_exit_zero(backend: KubernetesBackend, project: Project) -> None:
    execution = await backend.exec(project, ["sh", "-c", "echo out; echo err >&2"], env={})
    chunks, status = await drain(execution)
    assert (joined(chunks, "stdout"), joined(chunks, "stderr")) == (b"out\n", b"err\n")
    assert (status.exit_code, status.error, status.error_code) == (0, None, None)


async def test_non_zero_exit_code_comes_from_the_status_frame(
    backend: KubernetesBackend, project: Project
) -> None:
    _, status = await drain(await backend.exec(project, ["sh", "-c", "exit 3"], env={}))
    assert status.exit_code == 3 and status.error_code is None
    _, status = await drain(await backend.exec(project, ["false"], env={}))
    assert status.exit_code == 1


@pytest.mark.parametrize("argv0", ["no-such-command", "./missing-script", "/nowhere/bin/x"])
async def test_executable_not_found_is_an_exec_failure_not_an_exit_code(
    backend: KubernetesBackend, project: Project, argv0: str
) -> None:
    chunks, status = await drain(await backend.exec(project, [argv0, "arg"], env={}))
    assert status.exit_code is None and status.error_code == "EXEC_FAILED"
    assert status.error == f"executable not found: {argv0} (ENOENT)"
    assert chunks == []


async def test_a_command_exiting_127_itself_keeps_its_exit_code(
    backend: KubernetesBackend, project: Project
) -> None:
    _, status = await drain(await backend.exec(project, ["sh", "-c", "exit 127"], env={}))
    assert (status.exit_code, status.error_code) == (127, None)


async def test_utf8_split_across_frames_is_reassembled_byte_exact(
    kube_api: FakeKubeApi, backend: KubernetesBackend, project: Project
) -> None:
    kube_api.exec_options.frame_size = 1
    text = "h\u00e9llo w\u00f6rld \u20ac \u2603 \U0001f600\n".encode()
    chunks, status = await drain(
        await backend.exec(project, ["printf", "%s", text.decode()], env={})
    )
    assert status.exit_code == 0
    assert joined(chunks, "stdout") == text
    undecodable = 0
    for _, data in chunks:
        try:
            data.decode()
        except UnicodeDecodeError:
            undecodable += 1
    assert undecodable > 0  # the frames really did split characters


async def test_env_and_cwd_are_applied_and_client_values_stay_literal(
    kube_api: FakeKubeApi, backend: KubernetesBackend, project: Project
) -> None:
    (kube_api.pod_dir("p") / "sub" / "deeper").mkdir(parents=True)
    tricky = "a b $(echo injected) `id` 'q' \"d\" ; exit 9"
    execution = await backend.exec(
        project,
        ["sh", "-c", 'pwd; printf "%s\\n" "$FOO" "$BAR" "$1"', "sh", tricky],
        env={"FOO": tricky, "BAR": ""},
        cwd="sub/deeper",
    )
    chunks, status = await drain(execution)
    lines = joined(chunks, "stdout").decode().splitlines()
    assert status.exit_code == 0
    assert lines == [str(kube_api.pod_dir("p") / "sub" / "deeper"), tricky, "", tricky]
    record = exec_requests(kube_api)[0]
    commands = [v for k, v in record.query if k == "command"]
    assert commands[-5:] == ["sh", "-c", 'pwd; printf "%s\\n" "$FOO" "$BAR" "$1"', "sh", tricky]
    assert (record.param("stdout"), record.param("stderr"), record.param("stdin")) == (
        "true",
        "true",
        "false",
    )


async def test_missing_cwd_is_an_exec_failure(backend: KubernetesBackend, project: Project) -> None:
    _, status = await drain(await backend.exec(project, ["true"], env={}, cwd="nope/here"))
    assert status.exit_code is None and status.error_code == "EXEC_FAILED"
    assert status.error is not None and "directory" in status.error


async def test_invalid_input_is_refused_before_any_exec(
    kube_api: FakeKubeApi, backend: KubernetesBackend, project: Project
) -> None:
    with pytest.raises(InvalidInput):
        await backend.exec(project, ["true"], env={}, cwd="../escape")
    with pytest.raises(InvalidInput):
        await backend.exec(project, ["true"], env={}, cwd="/etc")
    with pytest.raises(InvalidInput):
        await backend.exec(project, ["true"], env={"BAD NAME": "x"})
    with pytest.raises(InvalidInput):
        await backend.exec(project, [], env={})
    assert exec_requests(kube_api) == []


async def test_stdin_is_delivered(backend: KubernetesBackend, project: Project) -> None:
    data = bytes(range(256)) * 300
    execution = await backend.exec(project, ["sh", "-c", "cat; echo done >&2"], env={}, stdin=data)
    chunks, status = await drain(execution)
    assert status.exit_code == 0
    assert joined(chunks, "stdout") == data and joined(chunks, "stderr") == b"done\n"


async def test_v4_only_server_works(kube_api: FakeKubeApi, make_backend: MakeBackend) -> None:
    kube_api.create_pod("p", labels=labels("web"))
    backend = await make_backend(exec_protocols=(V4,))
    project = await backend.get_project("web")
    chunks, status = await drain(
        await backend.exec(project, ["sh", "-c", "echo hi; exit 4"], env={})
    )
    assert (joined(chunks, "stdout"), status.exit_code) == (b"hi\n", 4)
    chunks, status = await drain(
        await backend.exec(project, ["cat"], env={}, stdin=b"no EOF in v4")
    )
    assert (joined(chunks, "stdout"), status.exit_code) == (b"no EOF in v4", 0)
    await backend.write_file(project, "f.txt", b"written over v4")
    assert await backend.read_file(project, "f.txt") == b"written over v4"
    offered = {r.header("Sec-WebSocket-Protocol") for r in exec_requests(kube_api)}
    assert offered == {V4}


async def test_v5_is_preferred(
    kube_api: FakeKubeApi, backend: KubernetesBackend, project: Project
) -> None:
    await drain(await backend.exec(project, ["true"], env={}))
    assert exec_requests(kube_api)[0].header("Sec-WebSocket-Protocol") == f"{V5},{V4}"


async def test_cancel_kills_the_whole_group(
    kube_api: FakeKubeApi, backend: KubernetesBackend, project: Project
) -> None:
    execution = await backend.exec(
        project, ["sh", "-c", "sleep 1000 >/dev/null 2>&1 & sleep 1000"], env={}
    )
    waiting = asyncio.create_task(drain(execution))
    await eventually(lambda: len(kube_api.processes_in_pod_dir("p")) >= 3, within=5)
    await execution.cancel(grace_seconds=2)
    _, status = await asyncio.wait_for(waiting, 10)
    assert status.exit_code == 143  # SIGTERM
    await eventually(lambda: kube_api.processes_in_pod_dir("p") == [], within=5)
    await execution.cancel(grace_seconds=2)  # idempotent, and harmless after the end


async def test_cancel_escalates_to_kill_after_the_grace_period(
    kube_api: FakeKubeApi, backend: KubernetesBackend, project: Project
) -> None:
    script = "trap '' TERM; sleep 1000 & echo ready; wait"
    execution = await backend.exec(project, ["sh", "-c", script], env={})
    seen: list[tuple[str, bytes]] = []
    waiting = asyncio.create_task(drain(execution, seen))
    # "ready": the trap is set (three processes could still be the wrapper, its watcher and
    # the watcher's sleep, and a SIGTERM then would end the command at once)
    await eventually(lambda: joined(seen, "stdout") == b"ready\n", within=5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await execution.cancel(grace_seconds=0.5)
    _, status = await asyncio.wait_for(waiting, 10)
    assert loop.time() - started >= 0.5
    assert status.exit_code == 137  # SIGKILL
    await eventually(lambda: kube_api.processes_in_pod_dir("p") == [], within=5)


async def test_background_child_holding_stdout_does_not_keep_the_command_open(
    kube_api: FakeKubeApi, backend: KubernetesBackend, project: Project
) -> None:
    execution = await backend.exec(project, ["sh", "-c", "sleep 1000 & echo started"], env={})
    chunks, status = await asyncio.wait_for(drain(execution), 10)
    assert (joined(chunks, "stdout"), status.exit_code) == (b"started\n", 0)
    await eventually(lambda: kube_api.processes_in_pod_dir("p") == [], within=5)


async def test_redirected_background_child_is_ended_after_a_normal_exit(
    kube_api: FakeKubeApi, backend: KubernetesBackend, project: Project
) -> None:
    execution = await backend.exec(
        project, ["sh", "-c", "sleep 1000 >/dev/null 2>&1 & exit 5"], env={}
    )
    _, status = await asyncio.wait_for(drain(execution), 10)
    assert status.exit_code == 5
    await eventually(lambda: kube_api.processes_in_pod_dir("p") == [], within=5)


async def test_pid_file_is_removed_after_the_command(
    kube_api: FakeKubeApi, backend: KubernetesBackend, project: Project
) -> None:
    await drain(await backend.exec(project, ["true"], env={}))
    token = wrapper_token(exec_requests(kube_api)[0])
    leftovers = await asyncio.to_thread(lambda: list(Path("/tmp").glob(f"rdev-{token}.*")))
    assert leftovers == []


async def test_pod_deleted_mid_command_is_lost_promptly(
    kube_api: FakeKubeApi, backend: KubernetesBackend, project: Project
) -> None:
    execution = await backend.exec(project, ["sh", "-c", "echo ready; sleep 1000"], env={})
    seen: list[tuple[str, bytes]] = []
    waiting = asyncio.create_task(drain(execution, seen))
    await eventually(lambda: joined(seen, "stdout") == b"ready\n", within=5)
    kube_api.delete_pod("p")
    chunks, status = await asyncio.wait_for(waiting, 5)
    assert joined(chunks, "stdout") == b"ready\n"
    assert (status.exit_code, status.error_code) == (None, "EXEC_LOST")
    assert status.error
    # A real pod's /tmp goes with the pod; the fake shares the host's, so tidy up here.
    token = wrapper_token(exec_requests(kube_api)[0])
    await asyncio.to_thread(Path(f"/tmp/rdev-{token}.pid").unlink, missing_ok=True)


async def test_dropped_exec_connection_is_lost_and_the_command_is_ended(
    kube_api: FakeKubeApi, backend: KubernetesBackend, project: Project
) -> None:
    execution = await backend.exec(project, ["sh", "-c", "echo ready; exec sleep 1000"], env={})
    seen: list[tuple[str, bytes]] = []
    waiting = asyncio.create_task(drain(execution, seen))
    await eventually(lambda: joined(seen, "stdout") == b"ready\n", within=5)
    kube_api._exec.abort_pod(("default", "p"))  # the network drops; the pod lives on
    _, status = await asyncio.wait_for(waiting, 5)
    assert (status.exit_code, status.error_code) == (None, "EXEC_LOST")
    await eventually(lambda: kube_api.processes_in_pod_dir("p") == [], within=5)


@pytest.mark.parametrize(
    ("fault", "error", "reason"),
    [
        (404, ExecFailed, "pod_not_found"),
        (403, ExecFailed, "forbidden"),
        (400, ExecFailed, "rejected"),
        (500, BackendUnavailable, None),
        (503, BackendUnavailable, None),
    ],
)
async def test_http_refusals_before_the_upgrade(
    kube_api: FakeKubeApi,
    backend: KubernetesBackend,
    project: Project,
    fault: int,
    error: type[Exception],
    reason: str | None,
) -> None:
    if fault == 403:
        kube_api.faults.forbid_exec = True
    else:
        kube_api.faults.fail_next(1, fault, path="/exec$")
    with pytest.raises(error) as caught:
        await backend.exec(project, ["true"], env={})
    if reason is not None:
        assert caught.value.details["reason"] == reason  # type: ignore[attr-defined]
    kube_api.faults.forbid_exec = False
    _, status = await drain(await backend.exec(project, ["true"], env={}))
    assert status.exit_code == 0


async def test_pending_pod_refuses_exec(
    kube_api: FakeKubeApi, backend: KubernetesBackend, project: Project
) -> None:
    kube_api.update_pod("p", phase="Pending")
    with pytest.raises(ExecFailed) as caught:
        await backend.exec(project, ["true"], env={})
    assert caught.value.details["reason"] == "rejected"


async def test_commands_run_concurrently_in_one_pod(
    backend: KubernetesBackend, project: Project
) -> None:
    executions = [
        await backend.exec(project, ["sh", "-c", f"sleep 0.3; echo {i}"], env={}) for i in range(4)
    ]
    results = await asyncio.gather(*(drain(e) for e in executions))
    assert [joined(c, "stdout") for c, _ in results] == [f"{i}\n".encode() for i in range(4)]
    assert all(s.exit_code == 0 for _, s in results)
