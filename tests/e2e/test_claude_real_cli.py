"""The real Claude Code CLI behind rdev, offline: it talks to tests/claude_api.py on loopback.

Shows with the real option parser that prompts which look like options reach the model as
prompt text, that a session is resumed only within its project, and (local backend) that each
project's transcripts live in its own config dir, not under HOME.

The CLI is found at `RDEV_TEST_CLAUDE_BIN`, else `.tools/claude-cli` (`make claude-cli` installs
the pinned version there; `make test` does it when npm is present), else `claude` on PATH.
Without it these tests skip locally and fail under CI=true."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.claude_api import FakeAnthropic, Usage, fake_anthropic
from tests.e2e.conftest import Launch
from tests.support import Running, read_sse, wait_status


def _real_cli() -> str | None:
    pinned = Path(__file__).parents[2] / ".tools/claude-cli/node_modules/.bin/claude"
    found = (
        os.environ.get("RDEV_TEST_CLAUDE_BIN")
        or (str(pinned) if pinned.exists() else None)
        or shutil.which("claude")
    )
    if not found or not os.access(found, os.X_OK):
        return None
    try:
        out = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return found if "Claude Code" in out.stdout else None


REAL_CLI = _real_cli()
_MISSING = (
    "the real Claude Code CLI was not found: run `make claude-cli` (npm), or set "
    "RDEV_TEST_CLAUDE_BIN to a claude binary"
)
# a skip, which tests/conftest.py turns into a failure under CI=true
pytestmark = pytest.mark.skipif(REAL_CLI is None, reason=_MISSING)


@pytest.fixture
async def api() -> AsyncIterator[FakeAnthropic]:
    async with fake_anthropic() as state:
        yield state


@pytest.fixture
def claude_bin(tmp_path: Path, api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch) -> str:
    """What an operator would set as RDEV_CLAUDE_BIN: a wrapper giving the CLI its API
    settings (rdev hands commands a scrubbed environment). HOME is a fresh folder, so the test
    can show the CLI keeps nothing there; CLAUDE_CONFIG_DIR defaults to one for the
    Kubernetes backend, where rdev sets none (the pod is the project's)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    wrapper = tmp_path / "claude-wrapper"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"export ANTHROPIC_BASE_URL={api.url} ANTHROPIC_API_KEY=sk-ant-dummy\n"
        "export CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 CLAUDE_CODE_MAX_RETRIES=0\n"
        "export DISABLE_AUTOUPDATER=1 IS_SANDBOX=1\n"
        f': "${{CLAUDE_CONFIG_DIR:={tmp_path / "pod-claude"}}}"\n'
        "export CLAUDE_CONFIG_DIR\n"
        f'exec {REAL_CLI} "$@"\n'
    )
    wrapper.chmod(0o755)
    return str(wrapper)


async def _run(rdev: Running, project: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = await rdev.admin.post(f"/projects/{project}/claude", json=body)
    assert resp.status_code == 201, resp.text
    cmd = resp.json()["data"]
    done = await wait_status(rdev.admin, cmd["command_id"], "succeeded", "failed", timeout=120)
    events = await read_sse(rdev.admin, cmd["events_url"])
    done["messages"] = [e.data for e in events if e.event == "message"]
    assert done["status"] == "succeeded", (done, [e.data for e in events])
    return done


PROMPTS = [
    "--version",
    "- fix the failing test",
    "-c",
    "--",
    "auth",
    "--dangerously-skip-permissions",
]


async def test_prompts_that_look_like_options_reach_the_model_as_prompts(
    launch: Launch, claude_bin: str, api: FakeAnthropic
) -> None:
    async with launch({"p": {}}, claude_bin=claude_bin) as rdev:
        for prompt in PROMPTS:
            before = len(api.turns)
            done = await _run(rdev, "p", {"prompt": prompt, "append_system_prompt": "-c --x=y"})
            init, result = done["messages"][0], done["messages"][-1]
            assert init["subtype"] == "init" and init["permissionMode"] == "default"
            assert result["result"] == f"You said: {prompt}"
            turns = api.turns[before:]
            assert [t.user_texts[-1] for t in turns] == [prompt]
            assert "-c --x=y" in turns[0].system


async def test_sessions_resume_within_their_project_only(
    launch: Launch, backend: str, claude_bin: str, api: FakeAnthropic, tmp_path: Path
) -> None:
    async with launch({"p": {}, "q": {}}, claude_bin=claude_bin) as rdev:
        first = await _run(rdev, "p", {"prompt": "remember the word heron"})
        session = first["session_id"]
        refused = await rdev.admin.post(
            "/projects/q/claude", json={"prompt": "what was the word?", "resume_session": session}
        )
        assert refused.status_code == 404, refused.text
        again = await _run(rdev, "p", {"prompt": "what was the word?", "resume_session": session})
        assert again["session_id"] == session
        assert api.turns[-1].user_texts == ["remember the word heron", "what was the word?"]
        if backend == "local":
            state = rdev.app.settings.data_dir / "claude"
            assert list((state / "p").glob(f"projects/*/{session}.jsonl"))
            assert not list(state.glob(f"q/projects/*/{session}.jsonl"))
            assert not (tmp_path / "home" / ".claude").exists()
            assert not (tmp_path / "home" / ".claude.json").exists()


TURNS = [Usage(1000, 100, 0, 0), Usage(2000, 200, 500, 300), Usage(3000, 300, 1000, 0)]


async def test_a_resumed_chain_of_three_turns_is_counted_once(
    launch: Launch, claude_bin: str, api: FakeAnthropic
) -> None:
    """The pinned CLI reports per-run figures in `--print` mode (it restores a session's cost
    only from its project config, which `--print` does not write): each run then costs its own
    figure, its tokens are its turn's alone, and the usage report adds up to the three turns.
    The cumulative case is covered by tests/unit/test_usage.py and test_runner_usage.py."""
    api.usage[:] = TURNS
    async with launch({"p": {}}, claude_bin=claude_bin) as rdev:
        first = await _run(rdev, "p", {"prompt": "one"})
        session = first["session_id"]
        runs = [first]
        for prompt in ("two", "three"):
            runs.append(await _run(rdev, "p", {"prompt": prompt, "resume_session": session}))
        assert len(api.turns) == 3
        for run, turn in zip(runs, TURNS, strict=True):
            (model,) = run["usage"]
            tokens = (model["input_tokens"], model["output_tokens"], model["cache_read_tokens"],
                      model["cache_creation_tokens"])  # fmt: skip
            assert tokens == (turn.input_tokens, turn.output_tokens,
                              turn.cache_read_input_tokens, turn.cache_creation_input_tokens)  # fmt: skip
            assert run["cost_usd"] > 0
            assert run["cost_usd"] == pytest.approx(model["cost_usd"])
        result = runs[-1]["messages"][-1]
        assert result["total_cost_usd"] == runs[-1]["cumulative_cost_usd"]
        # what the CLI reported over the chain, counted once: its figures were per run
        reported = sum(r["cumulative_cost_usd"] for r in runs)
        assert sum(r["cost_usd"] for r in runs) == pytest.approx(reported)
        report = (await rdev.admin.get("/projects/p/usage")).json()["data"]
        assert report["total"]["cost_usd"] == pytest.approx(reported)
        assert report["total"]["input_tokens"] == sum(t.input_tokens for t in TURNS)
        assert report["total"]["cache_read_tokens"] == 1500
        assert sum(d["commands"] for d in report["days"]) == 3
