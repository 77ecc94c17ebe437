"""Workspace files in a pod through helper execs: round trips, atomic writes, large content,
deletes, and the NotFound / InvalidInput cases."""

from __future__ import annotations

import os

import pytest

from rdev.adapters.kubernetes import KubernetesBackend
from rdev.domain.errors import InvalidInput, NotFound
from rdev.domain.models import Project
from tests.integration.kubernetes_support import MakeBackend, labels, make_backend
from tests.kube.fixtures import kube_api, kubeconfig
from tests.kube.server import FakeKubeApi

__all__ = ["kube_api", "kubeconfig", "make_backend"]  # fixtures used by name


@pytest.fixture
async def backend(kube_api: FakeKubeApi, make_backend: MakeBackend) -> KubernetesBackend:
    kube_api.create_pod(
        "p", labels=labels("web"), annotations={"rdev.orchard9.ai/workspace": "/workspace"}
    )
    return await make_backend()


@pytest.fixture
async def project(backend: KubernetesBackend) -> Project:
    return await backend.get_project("web")


async def test_write_read_list_round_trip(
    kube_api: FakeKubeApi, backend: KubernetesBackend, project: Project
) -> None:
    assert await backend.list_dir(project, ".claude/commands") == []
    await backend.write_file(project, ".claude/commands/review.md", "# R\u00e9view\n".encode())
    await backend.write_file(project, ".claude/commands/.hidden", b"")
    await backend.write_file(project, ".claude/commands/with space.md", b"x")
    assert (
        await backend.read_file(project, ".claude/commands/review.md") == "# R\u00e9view\n".encode()
    )
    assert await backend.read_file(project, ".claude/commands/.hidden") == b""
    assert await backend.list_dir(project, ".claude/commands") == [
        ".hidden",
        "review.md",
        "with space.md",
    ]
    assert await backend.list_dir(project, ".claude") == ["commands"]
    on_disk = kube_api.pod_dir("p") / ".claude" / "commands" / "review.md"
    assert on_disk.read_bytes() == "# R\u00e9view\n".encode()


async def test_large_binary_write_is_byte_exact_and_atomic(
    kube_api: FakeKubeApi, backend: KubernetesBackend, project: Project
) -> None:
    data = os.urandom(200 * 1024) + b"\x00\xff\xfe tail"
    await backend.write_file(project, ".claude/agents/big.md", b"old")
    await backend.write_file(project, ".claude/agents/big.md", data)
    assert await backend.read_file(project, ".claude/agents/big.md") == data
    folder = kube_api.pod_dir("p") / ".claude" / "agents"
    assert sorted(p.name for p in folder.iterdir()) == ["big.md"]  # no temp files left


async def test_missing_files_and_directories(backend: KubernetesBackend, project: Project) -> None:
    with pytest.raises(NotFound):
        await backend.read_file(project, ".claude/commands/none.md")
    with pytest.raises(NotFound):
        await backend.delete(project, ".claude/commands/none.md")
    assert await backend.list_dir(project, "no/such/dir") == []
    await backend.write_file(project, "dir/file.txt", b"x")
    with pytest.raises(NotFound):  # a directory is not a readable file
        await backend.read_file(project, "dir")
    assert await backend.list_dir(project, "dir/file.txt") == []


async def test_delete_file_and_directory_tree(
    kube_api: FakeKubeApi, backend: KubernetesBackend, project: Project
) -> None:
    await backend.write_file(project, ".claude/skills/s/SKILL.md", b"skill")
    await backend.write_file(project, ".claude/skills/s/extra/notes.md", b"n")
    await backend.write_file(project, ".claude/commands/c.md", b"c")
    await backend.delete(project, ".claude/commands/c.md")
    assert await backend.list_dir(project, ".claude/commands") == []
    await backend.delete(project, ".claude/skills/s")
    assert not (kube_api.pod_dir("p") / ".claude" / "skills" / "s").exists()
    assert await backend.list_dir(project, ".claude") == ["commands", "skills"]


async def test_paths_are_checked(backend: KubernetesBackend, project: Project) -> None:
    for bad in ("../outside", "/etc/passwd", "a/../../b", "nul\x00byte"):
        with pytest.raises(InvalidInput):
            await backend.read_file(project, bad)
        with pytest.raises(InvalidInput):
            await backend.write_file(project, bad, b"x")
    for root in ("", "."):
        with pytest.raises(InvalidInput):
            await backend.delete(project, root)
    await backend.write_file(project, "d/f", b"x")
    with pytest.raises(InvalidInput):
        await backend.write_file(project, "d", b"over a directory")
    with pytest.raises(InvalidInput):
        await backend.write_file(project, "d/f/under-a-file", b"x")
    assert await backend.read_file(project, "d/f") == b"x"
