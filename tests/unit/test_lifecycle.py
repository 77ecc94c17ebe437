"""The one builder of a command's terminal events, for every terminal status and shape."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from rdev.domain.lifecycle import TERMINAL, elapsed_ms, is_terminal, terminal_events
from rdev.domain.models import CommandStatus, EventType

T0 = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize("status", sorted(TERMINAL))
@pytest.mark.parametrize("error", [None, ("TIMEOUT", "command exceeded 5 s")])
def test_terminal_events_are_status_then_error_then_complete(
    status: CommandStatus, error: tuple[str, str] | None
) -> None:
    events = terminal_events(
        "cmd_x", last_seq=7, status=status, exit_code=3, duration_ms=1500, error=error
    )
    expected = [EventType.STATUS, EventType.COMPLETE]
    if error is not None:
        expected.insert(1, EventType.ERROR)
    assert [e.type for e in events] == expected
    assert [e.seq for e in events] == list(range(8, 8 + len(expected)))
    assert {e.command_id for e in events} == {"cmd_x"}
    assert events[0].data == {"status": status.value}
    assert events[-1].data == {"status": status.value, "exit_code": 3, "duration_ms": 1500}
    if error is not None:
        assert events[1].data == {"code": "TIMEOUT", "message": "command exceeded 5 s"}


def test_terminal_events_carry_their_compact_json_encoding() -> None:
    events = terminal_events(
        "cmd_x",
        last_seq=0,
        status=CommandStatus.LOST,
        exit_code=None,
        duration_ms=0,
        error=("LEASE_EXPIRED", "the replica stopped responding: é"),
    )
    for e in events:
        assert e.encoded is not None
        assert json.loads(e.encoded) == e.data
        assert ", " not in e.encoded and ": " not in e.encoded.replace("responding: é", "")
    assert "é" in (events[1].encoded or "")  # not escaped, like every other event


@pytest.mark.parametrize("status", [CommandStatus.QUEUED, CommandStatus.RUNNING])
def test_terminal_events_refuse_a_status_that_is_not_terminal(status: CommandStatus) -> None:
    assert not is_terminal(status)
    with pytest.raises(ValueError, match=status.value):
        terminal_events("cmd_x", last_seq=1, status=status, exit_code=None, duration_ms=0)


def test_elapsed_ms() -> None:
    assert elapsed_ms(T0, T0 + timedelta(seconds=2, milliseconds=345)) == 2345
    assert elapsed_ms(None, T0) == 0
    assert elapsed_ms(T0, T0) == 0
