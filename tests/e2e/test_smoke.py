from __future__ import annotations

import hashlib

from tests.support import Running, read_sse


async def test_shell_command_streams_output_and_completes(rdev: Running) -> None:
    admin = rdev.admin
    resp = await admin.post(
        "/projects/demo/shell", json={"argv": ["sh", "-c", "echo one; echo two >&2"]}
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()["data"]
    assert resp.headers["location"] == f"/commands/{body['command_id']}"
    events = await read_sse(admin, body["events_url"])
    kinds = [e.event for e in events]
    assert kinds[0] == "connected"
    assert kinds[-1] == "complete"
    lines = {(e.data["stream"], e.data["line"]) for e in events if e.event == "output"}
    assert lines == {("stdout", "one"), ("stderr", "two")}
    assert events[-1].data["status"] == "succeeded"
    assert events[-1].data["exit_code"] == 0
    assert events[-1].id == f"{body['command_id']}:final"


async def test_output_is_byte_faithful(rdev: Running) -> None:
    script = r"printf 'h\303\251llo\n\tx\033[31mred\r\nlast'"
    resp = await rdev.admin.post("/projects/demo/shell", json={"argv": ["sh", "-c", script]})
    cid = resp.json()["data"]["command_id"]
    events = await read_sse(rdev.admin, f"/commands/{cid}/events")
    text = "".join(
        e.data["line"] + ("" if e.data.get("partial") else "\n")
        for e in events
        if e.event == "output"
    )
    expected = "h\u00e9llo\n\tx\x1b[31mred\r\nlast".encode()
    assert hashlib.sha256(text.encode()).hexdigest() == hashlib.sha256(expected).hexdigest()
    out = await rdev.admin.get(f"/commands/{cid}/output")
    assert out.content == expected
