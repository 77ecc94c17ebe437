"""The command state machine: queued → running → a terminal state, or queued → cancelled.
The stores enforce each step with a conditional update (`WHERE status = …`), so two replicas
can never both move one command; this module names the states, how an exit maps to one, and
the events that end a command's log.

Every path that ends a command (the runner, a queued cancel, the dispatcher's sweep of a lost
command) writes its last events with `terminal_events`, so a reader sees one shape whoever
ended it: `status`, then `error` when there is one, then `complete`."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from rdev.domain.models import CommandStatus, Event, EventType

TERMINAL: frozenset[CommandStatus] = frozenset(
    {
        CommandStatus.SUCCEEDED,
        CommandStatus.FAILED,
        CommandStatus.CANCELLED,
        CommandStatus.TIMED_OUT,
        CommandStatus.LOST,
    }
)


def is_terminal(status: CommandStatus) -> bool:
    return status in TERMINAL


def status_for_exit(exit_code: int | None) -> CommandStatus:
    return CommandStatus.SUCCEEDED if exit_code == 0 else CommandStatus.FAILED


def elapsed_ms(started_at: datetime | None, now: datetime) -> int:
    """A command's duration so far; 0 for one that never started."""
    return int((now - (started_at or now)).total_seconds() * 1000)


# A claim moves a command from `queued` (whose log holds exactly its first event) to `running`
# and writes this second event with it, in one transaction: the runner starts after it.
CLAIMED_LAST_SEQ = 2


def started_event(command_id: str) -> Event:
    """The `running` status event a claim writes (sequence 2)."""
    data = {"status": CommandStatus.RUNNING.value}
    return Event(command_id, CLAIMED_LAST_SEQ, EventType.STATUS, data, '{"status":"running"}')


def terminal_events(
    command_id: str,
    *,
    last_seq: int,
    status: CommandStatus,
    exit_code: int | None,
    duration_ms: int,
    error: tuple[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> list[Event]:
    """The events that end a command's log, numbered after `last_seq`: its final `status`, an
    `error` (code, message) when given, and `complete`, the last event of every log (with
    `extra`, e.g. a Claude run's cost, added to it)."""
    if not is_terminal(status):
        raise ValueError(f"{status.value} is not a terminal status")
    data: list[tuple[EventType, dict[str, Any]]] = [(EventType.STATUS, {"status": status.value})]
    if error is not None:
        data.append((EventType.ERROR, {"code": error[0], "message": error[1]}))
    data.append(
        (
            EventType.COMPLETE,
            {"status": status.value, "exit_code": exit_code, "duration_ms": duration_ms}
            | (extra or {}),  # a claude command's outcome and cost
        )
    )
    return [
        Event(
            command_id,
            last_seq + i,
            type_,
            d,
            json.dumps(d, ensure_ascii=False, separators=(",", ":")),
        )
        for i, (type_, d) in enumerate(data, 1)
    ]
