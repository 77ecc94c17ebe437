"""The workspace's .claude/ commands, skills and agents over the API."""

from __future__ import annotations

import pytest

from tests.support import Running

PATHS = {
    "commands": ".claude/commands/{}.md",
    "agents": ".claude/agents/{}.md",
    "skills": ".claude/skills/{}/SKILL.md",
}


@pytest.mark.parametrize("type_", ["commands", "skills", "agents"])
async def test_config_items_round_trip(rdev: Running, type_: str) -> None:
    base = f"/projects/demo/claude-config/{type_}"
    assert (await rdev.admin.get(base)).json()["data"] == []
    content = "---\ndescription: deploy\n---\nRun the deploy. ✓\n"
    created = await rdev.admin.post(base, json={"name": "deploy", "content": content})
    assert created.status_code == 201, created.text
    assert created.json()["data"]["path"] == PATHS[type_].format("deploy")
    again = await rdev.admin.post(base, json={"name": "deploy", "content": "x"})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "ALREADY_EXISTS"
    listed = (await rdev.admin.get(base)).json()["data"]
    assert [i["name"] for i in listed] == ["deploy"]
    got = (await rdev.admin.get(f"{base}/deploy")).json()["data"]
    assert got["content"] == content
    updated = await rdev.admin.put(f"{base}/deploy", json={"content": "v2"})
    assert updated.status_code == 200
    assert (await rdev.admin.get(f"{base}/deploy")).json()["data"]["content"] == "v2"
    assert (await rdev.admin.put(f"{base}/missing", json={"content": "v"})).status_code == 404
    assert (await rdev.admin.delete(f"{base}/deploy")).status_code == 200
    assert (await rdev.admin.get(f"{base}/deploy")).status_code == 404
    assert (await rdev.admin.delete(f"{base}/deploy")).status_code == 404
    actions = [e["action"] for e in (await rdev.admin.get("/audit")).json()["data"]]
    assert {"config.create", "config.update", "config.delete"} <= set(actions)


async def test_config_files_land_in_the_workspace_atomically(rdev: Running) -> None:
    base = "/projects/demo/claude-config/commands"
    await rdev.admin.post(base, json={"name": "review", "content": "Review the diff."})
    folder = rdev.workspace("demo") / ".claude" / "commands"
    assert sorted(p.name for p in folder.iterdir()) == ["review.md"]  # no temp files left
    assert (folder / "review.md").read_text() == "Review the diff."


@pytest.mark.parametrize("name", ["../escape", ".hidden", "a/b", "x" * 65, "a b", "-dash", "a.md"])
async def test_bad_config_names_are_refused(rdev: Running, name: str) -> None:
    resp = await rdev.admin.post(
        "/projects/demo/claude-config/commands", json={"name": name, "content": "x"}
    )
    assert resp.status_code == 422, resp.text


async def test_config_content_size_is_limited(rdev: Running) -> None:
    resp = await rdev.admin.post(
        "/projects/demo/claude-config/agents", json={"name": "big", "content": "x" * 300_000}
    )
    assert resp.status_code == 422
    assert resp.json()["error"]["details"]["field"] == "content"


async def test_config_scopes_and_project_visibility(rdev: Running) -> None:
    reader = rdev.client(await rdev.new_key(scopes=["config:read"]))
    assert (await reader.get("/projects/demo/claude-config/skills")).status_code == 200
    write = await reader.post(
        "/projects/demo/claude-config/skills", json={"name": "s", "content": "x"}
    )
    assert write.status_code == 403
    stranger = rdev.client(await rdev.new_key(scopes=["config:read"], projects=["other"]))
    assert (await stranger.get("/projects/demo/claude-config/skills")).status_code == 404
    assert (await rdev.admin.get("/projects/demo/claude-config/plugins")).status_code == 422
