"""The pure parts of the Kubernetes backend: status frames, stdin frames, exit-status mapping,
discovery rules and watch-event bookkeeping (the fake server cannot be told to misbehave in
every one of these ways)."""

from __future__ import annotations

import json

import pytest

from rdev.adapters.kubernetes import discovery, scripts
from rdev.adapters.kubernetes.execution import exit_status
from rdev.adapters.kubernetes.protocol import (
    V4,
    V5,
    Exited,
    Lost,
    Refused,
    exec_query,
    parse_status,
    stdin_frames,
)
from rdev.adapters.kubernetes.reflector import apply_event, backoff_delay
from rdev.domain.models import CommandKind, ProjectStatus
from rdev.ports import ExitStatus
from tests.kube.exec import spawn_error
from tests.kube.session import exit_status as kubelet_status


def test_status_frames() -> None:
    assert parse_status(json.dumps(kubelet_status(["x"], 0)).encode()) == Exited(0)
    assert parse_status(json.dumps(kubelet_status(["x"], 3)).encode()) == Exited(3)
    assert parse_status(json.dumps(kubelet_status(["x"], -9)).encode()) == Exited(137)
    refused = parse_status(json.dumps(spawn_error(["nope"], FileNotFoundError())).encode())
    assert isinstance(refused, Refused) and "executable file not found" in refused.message
    assert parse_status(b"command terminated with non-zero exit code") == Refused(
        "command terminated with non-zero exit code"
    )
    odd = {"status": "Failure", "reason": "NonZeroExitCode", "message": "m", "details": {}}
    assert parse_status(json.dumps(odd).encode()) == Refused("m")


def test_outcomes_map_to_exit_statuses() -> None:
    none: frozenset[str] = frozenset()
    assert exit_status(Exited(2), none, "x") == ExitStatus(2)
    assert exit_status(Refused("OCI runtime exec failed"), none, "x") == ExitStatus(
        None, "OCI runtime exec failed", "EXEC_FAILED"
    )
    assert exit_status(Lost("gone"), none, "x") == ExitStatus(None, "gone", "EXEC_LOST")
    assert exit_status(Exited(127), frozenset({"notfound"}), "cl") == ExitStatus(
        None, "executable not found: cl (ENOENT)", "EXEC_FAILED"
    )
    assert exit_status(Exited(126), frozenset({"noperm"}), "./x") == ExitStatus(
        None, "executable not permitted: ./x (EACCES)", "EXEC_FAILED"
    )
    assert exit_status(Exited(126), frozenset({"noexec"}), "./x") == ExitStatus(
        None, "not an executable file or script: ./x (ENOEXEC)", "EXEC_FAILED"
    )
    assert scripts.markers(b"123\nnotfound\n") == {"notfound"}
    assert scripts.markers(b"123\n") == frozenset()


def test_stdin_frames_close_only_on_v5() -> None:
    data = b"x" * 70_000
    v5 = list(stdin_frames(data, protocol=V5))
    v4 = list(stdin_frames(data, protocol=V4))
    assert v5[-1] == bytes([255, 0]) and v4 == v5[:-1]
    assert b"".join(f[1:] for f in v4) == data and all(f[0] == 0 for f in v4)
    assert list(stdin_frames(b"", protocol=V5)) == [bytes([255, 0])]


def test_argv_is_never_joined_into_a_shell_line() -> None:
    argv = scripts.run_argv(
        token="ab12cd34",
        marker="cmd_0123456789ab",
        workdir="/w",
        env={"A": "$(x)", "RDEV_COMMAND_ID": "cmd_other"},  # the marker is rdev's to set
        argv=["echo", "a; b"],
        stdin_len=-1,
    )
    assert argv[:2] == ["sh", "-c"] and argv[2] == scripts.RUN
    assert argv[3:] == [
        "rdev", "ab12cd34", "/w", "-1", "cmd_0123456789ab", "A=$(x)", "--", "echo", "a; b",
    ]  # fmt: skip
    query = exec_query(argv, container="dev", stdin=False)
    assert [v for k, v in query if k == "command"] == argv


def pod(name: str, **labels: str) -> dict[str, object]:
    return {
        "metadata": {"name": name, "labels": {"rdev.orchard9.ai/project": "true", **labels}},
        "spec": {"containers": [{"name": "main"}, {"name": "side"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }


def test_configmap_settings_parsing() -> None:
    settings = discovery.parse_settings(
        {
            "a.yaml": "allowed_commands: [claude, bogus, 3]\nmax_concurrent_commands: 0\n",
            "b.yaml": "- not a mapping\n",
            "c.yaml": "allowed_commands: shell\n",
            "d.yaml": "allowed_commands: [git]\nworkspace: srv\ncontainer: side\n",
            "e.yaml": "",
            "notes.txt": "ignored",
        }
    )
    assert set(settings) == {"a", "b", "c", "d", "e"}
    # an invalid value is an error for the whole entry, never dropped or defaulted
    assert settings["a"].error is not None
    assert "'bogus', 3" in settings["a"].error and "max_concurrent_commands" in settings["a"].error
    assert settings["b"].error and settings["c"].error
    assert settings["d"].settings.allowed_kinds == {CommandKind.GIT}
    assert (settings["d"].workspace, settings["d"].container) == ("/srv", "side")
    assert settings["e"] == discovery.ConfigEntry()
    targets, _ = discovery.build_targets([pod("a"), pod("b"), pod("d"), pod("x")], settings)
    assert targets["d"].container == "side" and targets["x"].container == "main"
    for failed in ("a", "b"):
        project = targets[failed].project
        assert project.status is ProjectStatus.FAILED
        assert project.allowed_kinds == frozenset()
        assert project.status_reason == settings[failed].error
        assert project.status_reason.startswith(f"invalid rdev-projects entry {failed}.yaml: ")
    assert targets["d"].project.status_reason is None


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("description: [unclosed\n", "not valid YAML"),
        ("a: 1\n---\nb: 2\n", "not valid YAML"),
        ("allow_raw_shell: 'false'\n", "allow_raw_shell must be true or false"),
        ("allow_raw_shell: null\n", "allow_raw_shell must be true or false"),
        ("allow_claude_shell: 1\n", "allow_claude_shell must be true or false"),
        ("alow_raw_shell: true\n", "unknown key 'alow_raw_shell'"),
        ("max_concurrent_commands: 2.0\n", "max_concurrent_commands"),
        ("max_concurrent_commands: '2'\n", "max_concurrent_commands"),
        ("workspace: ''\n", "workspace must be a path"),
        ("workspace: [a]\n", "workspace must be a path"),
        ("workspace: null\n", "workspace must be a path"),
        ("container: Side_Car\n", "container must be a container name"),
        ("container: ''\n", "container must be a container name"),
        ("container: 3\n", "container must be a container name"),
        ("'42'\n", "must be a mapping"),
        ("?\n", "unknown key None"),
    ],
)
def test_configmap_entry_problems_fail_the_project(text: str, fragment: str) -> None:
    entry = discovery.parse_settings({"web.yaml": text})["web"]
    assert entry.error is not None and fragment in entry.error, entry
    project = discovery.build_target(pod("web"), entry).project
    assert (project.status, project.allowed_kinds) == (ProjectStatus.FAILED, frozenset())


def test_configmap_entry_lists_every_problem() -> None:
    text = "workspace: 3\ncontainer: Bad\nalow_raw_shell: true\nallow_raw_shell: 'yes'\n"
    error = discovery.parse_settings({"web.yaml": text})["web"].error or ""
    for key in ("workspace", "container", "alow_raw_shell", "allow_raw_shell must"):
        assert key in error, (key, error)


def test_invalid_project_names_are_skipped_with_a_warning() -> None:
    targets, warnings = discovery.build_targets(
        [pod("ok"), pod("x", **{"rdev.orchard9.ai/name": ".hidden"})], {}
    )
    assert list(targets) == ["ok"] and len(warnings) == 1


def test_watch_events_and_backoff() -> None:
    items: dict[str, dict[str, object]] = {}
    added = {"type": "ADDED", "object": {"metadata": {"name": "a", "resourceVersion": "5"}}}
    assert apply_event(items, added) == ("5", True) and "a" in items
    mark = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}}
    assert apply_event(items, mark) == ("9", False)
    gone = {"type": "DELETED", "object": {"metadata": {"name": "a", "resourceVersion": "10"}}}
    assert apply_event(items, gone) == ("10", True) and items == {}
    try:
        apply_event(items, {"type": "ERROR", "object": {"code": 410}})
    except LookupError:
        pass
    else:
        raise AssertionError("410 must ask for a relist")
    delays = [backoff_delay(n, base=0.2, cap=5.0) for n in range(12)]
    assert all(0.1 <= d <= 5.0 for d in delays) and delays[-1] >= 2.5


@pytest.mark.parametrize(
    ("program", "problem"),
    [
        ("ls", None),
        ("./bin/tool", None),
        ("x" * 255, None),
        ("x" * 256, "ENAMETOOLONG"),
        ("./" + "y" * 300, "ENAMETOOLONG"),
        ("/" + "/".join(["d" * 200] * 20), None),  # 4021 bytes: a long path, no long name
        ("/" + "/".join(["d" * 200] * 21), "ENAMETOOLONG"),  # 4222 bytes: past PATH_MAX
        ("é" * 128, "ENAMETOOLONG"),  # 256 bytes in UTF-8
    ],
)
def test_program_names_that_cannot_be_paths_are_refused_before_the_exec(
    program: str, problem: str | None
) -> None:
    assert scripts.program_name_problem(program) == problem
