"""`command.end` for a command whose replica died: the replica that sweeps it as lost writes
the entry, once, on SQLite and PostgreSQL. (Commands that run to their end are covered
end to end in tests/e2e/test_audit_api.py.)"""

from __future__ import annotations

from datetime import timedelta

from rdev.adapters.bus.memory import InProcessBus
from rdev.bootstrap import Store
from rdev.clock import utcnow
from rdev.domain.models import (
    AuditEntry,
    Command,
    CommandKind,
    CommandStatus,
    Event,
    EventType,
    Priority,
    Project,
)
from rdev.ports import AuditFilter
from rdev.runtime.dispatcher import Dispatcher
from rdev.runtime.limits import DispatchLimits
from rdev.runtime.streams import StreamHub
from rdev.services.audit import AuditService
from tests.support import eventually


class NoProjects:
    """The backend calls a dispatcher makes without work of its own: the project list, and
    ending a swept command's processes (there are none)."""

    async def list_projects(self) -> list[Project]:
        return []

    async def kill_command(self, project_id: str, command_id: str) -> int:
        return 0


def dispatcher(store: Store, bus: InProcessBus, audit: AuditService, name: str) -> Dispatcher:
    """A replica's dispatcher that sweeps expired leases every 0.1 s."""
    return Dispatcher(
        commands=store.commands,
        log=store.events,
        hub=StreamHub(store.events, bus, replica=name),
        backend=NoProjects(),  # type: ignore[arg-type]
        bus=bus,
        replica=name,
        limits=DispatchLimits(lease_seconds=0.3, poll_seconds=0.05),
        clock=utcnow,
        on_end=audit.command_ended,
    )


async def test_a_command_swept_as_lost_is_audited_once(store: Store) -> None:
    now = utcnow()
    cmd = Command(
        id="cmd_swept", project_id="p", kind=CommandKind.SHELL, argv=("sleep", "60"),
        status=CommandStatus.QUEUED, priority=Priority.NORMAL,
        created_at=now - timedelta(minutes=1), timeout_seconds=60, key_id="submitter001",
        env={"TOKEN": "not-for-the-audit"},
    )  # fmt: skip
    await store.commands.add(cmd, Event(cmd.id, 1, EventType.STATUS, {"status": "queued"}))
    [claimed] = await store.commands.claim(
        owner="dead-replica", lease_until=now - timedelta(seconds=1),
        now=now - timedelta(seconds=5), slots=1, project_limit=lambda _p: 5,
    )  # fmt: skip
    assert claimed.id == cmd.id
    bus = InProcessBus()
    audit = AuditService(store.audit_log, clock=utcnow)
    dispatchers = [dispatcher(store, bus, audit, name) for name in ("alive-1", "alive-2")]
    for d in dispatchers:
        await d.start()
    try:

        async def ended() -> list[AuditEntry]:
            page = await store.audit_log.list(AuditFilter(action="command.end"))
            return list(page.items)

        [entry] = await eventually(ended)  # both replicas sweep; one wins
        stored = await store.commands.get(cmd.id)
        assert stored is not None and stored.status is CommandStatus.LOST
    finally:
        for d in dispatchers:
            await d.stop(grace_seconds=0, kill_wait_seconds=0)
        await bus.close()
    page = await store.audit_log.list(AuditFilter(action="command.end"))
    assert len(page.items) == 1
    assert entry.target == cmd.id
    assert entry.actor_key_id == "submitter001"
    assert entry.project == "p"
    details = entry.details
    assert (details["status"], details["exit_code"], details["kind"]) == ("lost", None, "shell")
    assert details["duration_ms"] >= 5000
    assert "not-for-the-audit" not in repr(page.items)
