"""Schemathesis against a real rdev under uvicorn: every documented operation with generated
(valid and invalid) input, then stateful sequences that follow the OpenAPI links from a
submitted command to reading, listing, cancelling and streaming it (by either route, from the
start and resumed). No answer may be a 5xx, and every answer must match what OpenAPI documents
(status, content type, body schema, each event of a stream). No process outlives the run.

rdev runs in a thread with its own event loop: schemathesis calls it synchronously.

Left out, on purpose: `POST /projects/{id}/shell` runs whatever argv it is given, so the
project refuses shell (its 403 and its body validation are still exercised: validation runs
first); git and Claude (the fake Claude of tests/fixtures) run in a throwaway demo repository,
with a 5-second command timeout."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import checks
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi import checks as openapi_checks

from rdev.adapters.local.backend import settings_file
from rdev.adapters.local.demo import ensure_demo_project
from rdev.config import Settings
from tests.support import processes_under, serve

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

CHECKS = [
    checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.negative_data_rejection,
]
EXAMPLES_PER_OPERATION = 25
STATEFUL_SCENARIOS = 100


@pytest.fixture
def backend() -> str:
    return "local"


@dataclass
class Live:
    url: str
    admin_key: str


class _ServerThread(threading.Thread):
    """`tests.support.serve` on its own loop, so synchronous clients can call it."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self._settings = settings
        self.ready = threading.Event()
        self.live: Live | None = None
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: asyncio.Event | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:
            self.error = e
            self.ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._done = asyncio.Event()
        async with serve(self._settings) as running:
            self.live = Live(running.url, running.admin_key)
            self.ready.set()
            await self._done.wait()

    def stop(self) -> None:
        if self._loop is not None and self._done is not None:
            self._loop.call_soon_threadsafe(self._done.set)
        self.join(timeout=60)


@pytest.fixture
def live(settings_factory: Callable[..., Settings]) -> Iterator[Live]:
    settings = settings_factory(
        rate_limit_rps=100_000,
        auth_failures_per_minute=100_000,
        default_timeout_seconds=5,
        max_timeout_seconds=5,
        kill_grace_seconds=0.5,
        sse_heartbeat_seconds=1,
        max_queue=100_000,
    )
    ensure_demo_project(settings.workspace_root)
    settings_file(settings.workspace_root, "demo").write_text(
        'allowed_commands = ["claude", "git"]\n'
    )
    thread = _ServerThread(settings)
    thread.start()
    assert thread.ready.wait(60), "rdev did not start"
    if thread.error is not None:
        raise thread.error
    assert thread.live is not None
    try:
        yield thread.live
    finally:
        thread.stop()
    _no_process_left(settings.workspace_root)


def _no_process_left(root: Path, timeout: float = 15.0) -> None:
    """Every command the run started has ended with rdev (polled: the kill is asynchronous);
    any left is killed here, so a failure leaves nothing behind either."""
    deadline = time.monotonic() + timeout
    while (left := processes_under(root)) and time.monotonic() < deadline:
        time.sleep(0.05)  # polled until the deadline
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left in the workspaces after rdev stopped: {left}"


def _schema(live: Live) -> Any:
    spec = httpx.get(f"{live.url}/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(spec)
    schema.config.update(
        base_url=live.url,
        # both ways a key is presented (OpenAPI offers both; unset, one would be generated)
        headers={"X-API-Key": live.admin_key, "Authorization": f"Bearer {live.admin_key}"},
        request_timeout=10,
    )

    return schema


def _settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is shown as found
        suppress_health_check=list(HealthCheck),
    )


def _fuzz(
    operation: Any, mode: GenerationMode, path: dict[str, str],
    found: list[str], statuses: Counter[int],
) -> int:  # fmt: skip
    """Run one operation's generated cases; note its failures (three at most). The count."""
    count = 0
    mine: list[str] = []
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path or None)

    @_settings(EXAMPLES_PER_OPERATION)
    @given(case=strategy)
    def run(case: Any) -> None:
        nonlocal count
        count += 1
        try:
            statuses[case.call_and_validate(checks=CHECKS).status_code] += 1
        except Exception as e:  # every operation runs; the test fails once, naming them all
            if len(mine) < 3:
                mine.append(f"{operation.label} {path} ({mode.value}): {type(e).__name__}: {e}")

    with contextlib.suppress(Unsatisfiable):  # no invalid input for an operation without any
        run()
    found.extend(mine)
    return count


def test_no_operation_answers_5xx_or_off_schema(live: Live) -> None:
    """Valid and invalid input for every operation: once with every parameter generated (most
    ids name nothing), once with `project_id` the demo project (to reach the routes' work)."""
    started = time.monotonic()
    found: list[str] = []
    statuses: Counter[int] = Counter()
    cases = 0
    schema = _schema(live)
    for result in schema.get_all_operations():
        operation = result.ok()
        names = {p.name for p in operation.path_parameters}
        for path in ({}, {"project_id": "demo"}) if "project_id" in names else ({},):
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                cases += _fuzz(operation, mode, path, found, statuses)
    took = time.monotonic() - started
    print(f"\nschemathesis: {cases} cases in {took:.1f}s, statuses {sorted(statuses.items())}")
    assert not found, "\n\n".join(found)


STEPS: Counter[tuple[str, int]] = Counter()
RESUMED = " (resumed)"
# The command flow: its projects, the submissions, and every operation a command links to.
# Keys, audit and Claude config have no part in it; the stateless test fuzzes them.
FLOW = ["projects", "commands", "streams"]
# What the stateful run must reach with a 2xx, each with a real command: create, then read,
# list, cancel, stream by either route, resume a stream, read the output.
MUST_REACH = {
    ("POST /projects/{project_id}/claude", 201),
    ("POST /projects/{project_id}/git", 201),
    ("GET /projects/{project_id}/commands", 200),
    ("GET /commands/{command_id}", 200),
    ("POST /commands/{command_id}/cancel", 200),
    ("GET /commands/{command_id}/events", 200),
    ("GET /commands/{command_id}/events" + RESUMED, 200),
    ("GET /projects/{project_id}/events", 200),
    ("GET /projects/{project_id}/events" + RESUMED, 200),
    ("GET /commands/{command_id}/output", 200),
}
_EVENT_ID = re.compile(r"cmd_[0-9a-f]+:[0-9]+")


class _Checked:
    """Stateful steps validated with CHECKS (not the library's whole default list), counted
    by operation and status.

    The server's answer to each step must depend on that step's request alone: the answers
    decide which links the next steps can follow, and hypothesis refuses a run whose replays
    take other paths (FlakyStrategyDefinition). So, for each request, before it is sent:
    - every project is the demo project (generated names would all answer 404);
    - a generated Idempotency-Key is made unique (one repeated across scenarios answers 201,
      200 or 409 by what ran before);
    - a listing is not filtered by status (the page, and so the command it links to, would
      depend on how far the commands have run);
    - a resumption the link gives in the query is not overridden by a generated
      Last-Event-ID header (rdev reads the header first, so the link's resume never ran)."""

    sent = 0

    def before_call(self, case: Any) -> None:
        _Checked.sent += 1
        if case.path_parameters and "project_id" in case.path_parameters:
            case.path_parameters["project_id"] = "demo"
        key = case.headers and case.headers.get("Idempotency-Key")
        if key:
            case.headers["Idempotency-Key"] = f"{key[:180]}.{_Checked.sent}"
        if case.operation.label == "GET /projects/{project_id}/commands" and case.query:
            case.query.pop("status", None)
        linked = (case.query or {}).get("last_event_id")
        if isinstance(linked, str) and _EVENT_ID.fullmatch(linked) and case.headers:
            case.headers.pop("Last-Event-ID", None)

    def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
        given = (case.headers or {}).get("Last-Event-ID") or (case.query or {}).get("last_event_id")
        resumed = RESUMED if isinstance(given, str) and _EVENT_ID.fullmatch(given) else ""
        STEPS[(case.operation.label + resumed, response.status_code)] += 1
        case.validate_response(response, checks=CHECKS)


def test_stateful_command_sequences_answer_no_5xx(live: Live) -> None:
    """Submit a command, then follow the links: read it, list it, cancel it, stream its events
    by either route, from the start and resumed, read its output."""
    # a command in the demo project from the start, so that every listing links to one
    submitted = httpx.post(
        f"{live.url}/projects/demo/git",
        json={"args": ["status"]},
        headers={"X-API-Key": live.admin_key},
        timeout=10,
    )
    assert submitted.status_code == 201, submitted.text
    schema = _schema(live).include(tag=FLOW)
    schema.config.generation.update(modes=[GenerationMode.POSITIVE])  # to get somewhere
    # the documented links only: inferred ones (a project's id taken for a stream id...) spent
    # most steps on 422s
    schema.config.phases.stateful.inference.algorithms = []
    machine = type("Machine", (_Checked, schema.as_state_machine()), {})
    STEPS.clear()
    started = time.monotonic()
    machine.run(
        settings=settings(
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=8,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
    )
    took = time.monotonic() - started
    print(f"\nschemathesis stateful: {sum(STEPS.values())} steps in {took:.1f}s: {dict(STEPS)}")
    assert STEPS.keys() >= MUST_REACH, f"not reached: {sorted(MUST_REACH - STEPS.keys())}"
