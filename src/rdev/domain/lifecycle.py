"""The command state machine: queued → running → a terminal state, or queued → cancelled.
The stores enforce each step with a conditional update (`WHERE status = …`), so two replicas
can never both move one command; this module names the states and how an exit maps to one."""

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


def is_terminal(status: CommandStatus) -> bool:
    return status in TERMINAL


def status_for_exit(exit_code: int | None) -> CommandStatus:
    return CommandStatus.SUCCEEDED if exit_code == 0 else CommandStatus.FAILED
