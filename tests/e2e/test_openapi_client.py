"""A client generated from the live `/openapi.json` by openapi-python-client (pinned in the dev
group; it runs offline) works against a real rdev: it submits a git command with a typed body
and reads it back as a typed model. The generator must parse every operation (a warning is a
failure: the schema would be missing from the client)."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.support import Running

GENERATOR = Path(sys.executable).parent / "openapi-python-client"
PACKAGE = "rdev_client"


@pytest.fixture
def backend() -> str:
    return "local"  # the document is the same on both backends


async def _generate(spec: dict[str, object], folder: Path) -> str:
    (folder / "openapi.json").write_text(json.dumps(spec))
    (folder / "config.yml").write_text(
        f"post_hooks: []\nproject_name_override: rdev-client\npackage_name_override: {PACKAGE}\n"
    )
    proc = await asyncio.create_subprocess_exec(
        str(GENERATOR), "generate", "--path", "openapi.json", "--config", "config.yml",
        "--meta", "none", "--output-path", PACKAGE,
        cwd=folder, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=90)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = out.decode()
    assert proc.returncode == 0, text
    return text


@pytest.fixture
def imported(tmp_path: Path) -> Iterator[Path]:
    """Generated modules importable from tmp_path while the test runs, forgotten after."""
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


async def test_a_generated_client_submits_and_reads_a_command(
    rdev: Running, imported: Path
) -> None:
    spec = (await rdev.client().get("/openapi.json")).json()
    output = await _generate(spec, imported)
    assert "Warning" not in output and "WARNING" not in output, output

    client_mod = _module("client")
    run_git = _module("api.commands.run_git")
    get_command = _module("api.commands.get_command")
    list_projects = _module("api.projects.list_projects")
    models = _module("models")

    client = client_mod.AuthenticatedClient(base_url=rdev.url, token=rdev.admin_key)
    async with client:
        projects = await list_projects.asyncio(client=client)
        assert isinstance(projects, models.ProjectList)
        assert [p.id for p in projects.data] == ["demo"]

        submitted = await run_git.asyncio_detailed(
            "demo", client=client, body=models.GitRun(args=["status"])
        )
        assert submitted.status_code == 201, submitted.content
        command = submitted.parsed
        assert isinstance(command, models.CommandResponse)
        assert command.data.kind == "git" and command.data.argv[:2] == ["git", "status"]

        read = await get_command.asyncio(command.data.command_id, client=client)
        assert isinstance(read, models.CommandResponse)
        assert read.data.command_id == command.data.command_id
        assert read.meta.request_id

        missing = await get_command.asyncio_detailed("cmd_0000", client=client)
        assert missing.status_code == 404
        assert missing.parsed.error.code == "NOT_FOUND"


async def test_lean_routes_keep_the_rules_their_twins_document(rdev: Running) -> None:
    """The stream routes are lean (never the FastAPI twin), yet answer as documented: the key
    first, then the twin's parameter rules (required, maxLength), as FastAPI would."""
    admin, anon = rdev.admin, rdev.client()
    assert (await anon.get("/projects/demo/events")).status_code == 401
    cases = [
        ("/projects/demo/events", {}, {}, "stream_id"),
        ("/projects/demo/events", {"stream_id": "c" * 101}, {}, "stream_id"),
        ("/commands/cmd_x/events", {"last_event_id": "c" * 201}, {}, "last_event_id"),
        ("/commands/cmd_x/events", {}, {"Last-Event-ID": "c" * 201}, "Last-Event-ID"),
    ]
    for path, params, headers, field in cases:
        answer = await admin.get(path, params=params, headers=headers)
        assert answer.status_code == 422, (path, answer.text)
        assert answer.json()["error"]["code"] == "VALIDATION_ERROR"
        assert answer.json()["error"]["details"]["field"] == field
    # at the limit the request reaches the route: the command is just not there
    at_limit = await admin.get("/projects/demo/events", params={"stream_id": "c" * 100})
    assert at_limit.status_code == 404
    assert (await admin.head("/projects")).status_code == 405
