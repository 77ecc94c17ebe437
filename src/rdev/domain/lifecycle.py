"""The command state machine: which transitions are allowed and which states are final."""

from __future__ import annotations

from rdev.domain.models import CommandStatus

TERMINAL: frozenset[CommandStatus] = frozenset(
    {
        CommandStatus.SUCCEEDED,
        CommandStatus.FAILED,
        CommandStatus.CANCELLED,
        CommandStatus.TIMED_OUT,
        CommandStatus.LOST,
    }
)

_ALLOWED: dict[CommandStatus, frozenset[CommandStatus]] = {
    CommandStatus.QUEUED: frozenset({CommandStatus.RUNNING, CommandStatus.CANCELLED}),
    CommandStatus.RUNNING: TERMINAL,
}


def is_terminal(status: CommandStatus) -> bool:
    return status in TERMINAL


def can_transition(src: CommandStatus, dst: CommandStatus) -> bool:
    return dst in _ALLOWED.get(src, frozenset())


def status_for_exit(exit_code: int | None) -> CommandStatus:
    return CommandStatus.SUCCEEDED if exit_code == 0 else CommandStatus.FAILED
