"""The refusal audit's bound: beyond the allowance, refusals are counted, not written, and the
count rides on the next entry of the same key, action and reason; its memory is bounded."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request

from rdev.adapters.http import refusals
from rdev.adapters.http.refusals import RefusalAudit
from rdev.domain.errors import CommandRejected, Forbidden, NotFound
from rdev.services.audit import AuditService
from tests.unit.test_key_service import FakeAuditLog

T0 = datetime(2031, 1, 1, tzinfo=UTC)


class Allowance:
    """The limiter's answer, set by the test."""

    def __init__(self) -> None:
        self.open = True
        self.asked: list[tuple[str, ...]] = []

    async def __call__(self, *bucket: str) -> bool:
        self.asked.append(bucket)
        return self.open


def request(path: str = "/projects/a/shell", key_id: str | None = "k1", **params: str) -> Request:
    state: dict[str, object] = {"client_ip": "10.0.0.9", "request_id": "r1"}
    if key_id:
        state["key_id"] = key_id
    return Request({
        "type": "http", "method": "POST", "scheme": "http", "server": ("test", 80),
        "path": path, "query_string": b"", "headers": [], "state": state,
        "path_params": params,
    })  # fmt: skip


def scope_denial() -> Forbidden:
    return Forbidden("no", details={"reason": "scope", "scope": "commands:shell"})


def setup() -> tuple[RefusalAudit, FakeAuditLog, Allowance]:
    log, allow = FakeAuditLog(), Allowance()
    return RefusalAudit(AuditService(log, clock=lambda: T0), allow), log, allow


async def test_refusals_beyond_the_allowance_are_counted_onto_the_next_entry() -> None:
    audit, log, allow = setup()
    await audit.record(request(project_id="a"), scope_denial())
    allow.open = False
    for _ in range(5):
        await audit.record(request(project_id="a"), scope_denial())
    assert len(log.entries) == 1
    allow.open = True
    await audit.record(request(project_id="a"), scope_denial())
    first, second = log.entries
    assert "suppressed" not in first.details
    assert second.details["suppressed"] == 5
    assert (second.actor_key_id, second.client_ip, second.project) == ("k1", "10.0.0.9", "a")
    await audit.record(request(project_id="a"), scope_denial())
    assert "suppressed" not in log.entries[-1].details


async def test_buckets_are_key_action_and_reason_not_the_value_denied() -> None:
    audit, _, allow = setup()
    for project in ("p1", "p2", "p3"):  # guessing names cannot open new buckets
        await audit.record(
            request(), Forbidden("no", details={"reason": "project", "project": project})
        )
    await audit.record(request(), scope_denial())
    await audit.record(request(key_id=None), scope_denial())
    await audit.record(request(), CommandRejected("no", details={"pattern": ";"}, argv=["a;b"]))
    assert allow.asked == [
        ("k1", "access.denied", "project"),
        ("k1", "access.denied", "project"),
        ("k1", "access.denied", "project"),
        ("k1", "access.denied", "scope"),
        ("ip:10.0.0.9", "access.denied", "scope"),
        ("k1", "command.rejected", "policy"),
    ]


async def test_suppressed_counts_are_bounded() -> None:
    audit, _, allow = setup()
    allow.open = False
    limit = refusals._MAX_BUCKETS
    for i in range(limit + 50):
        await audit.record(request(key_id=f"key{i}"), scope_denial())
    assert len(audit._suppressed) == limit
    assert ("key0", "access.denied", "scope") not in audit._suppressed  # the oldest went first


async def test_other_errors_and_bad_project_names_are_not_audited_as_about_a_project() -> None:
    audit, log, _ = setup()
    await audit.record(request(), NotFound("nope"))
    assert log.entries == []
    await audit.record(request(project_id="../" + "x" * 500), scope_denial())
    [entry] = log.entries
    assert entry.project is None
    assert entry.outcome == "denied"


async def test_a_failing_audit_write_never_reaches_the_client() -> None:
    class Broken(FakeAuditLog):
        async def append(self, entry: object) -> None:
            raise OSError("disk full")

    audit = RefusalAudit(AuditService(Broken(), clock=lambda: T0), Allowance())
    await audit.record(request(), scope_denial())  # does not raise
