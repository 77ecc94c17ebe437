"""The shutdown budget: one number of seconds from SIGTERM to exit, split into phases that run
side by side instead of one after the other, so the whole fits the pod's
terminationGracePeriodSeconds.

From SIGTERM (t = 0), all at once:
- readiness fails, new commands are refused, SSE streams end with SHUTTING_DOWN, the
  dispatcher stops claiming;
- the listener keeps accepting new connections until `listen_until` (the drain), so clients
  routed here before the endpoint was removed are answered, not refused;
- running commands may finish until `command_grace`; then they are stopped (SIGTERM, and
  SIGKILL after the kill grace) and recorded as `lost`, done by `requests_until`;
- open requests may finish until `requests_until`; one that has not begun its response by
  then is answered 503 SHUTTING_DOWN.
What is left, CLOSE_RESERVE, closes the bus, the backend and the database."""

from __future__ import annotations

from dataclasses import dataclass

CLOSE_RESERVE = 2.0  # after the last request: close the bus, the backend and the database
KILL_SLACK = 1.0  # after SIGKILL: the process reaped and the command's last events written


@dataclass(frozen=True, slots=True)
class ShutdownPlan:
    budget: float
    drain: float
    kill_grace: float

    @property
    def requests_until(self) -> float:
        return self.budget - CLOSE_RESERVE

    @property
    def listen_until(self) -> float:
        return max(0.0, min(self.drain, self.requests_until))

    @property
    def command_grace(self) -> float:
        return max(0.0, self.requests_until - self.kill_wait)

    @property
    def kill_wait(self) -> float:
        """How long stopping a command may take: the kill grace, then the SIGKILL's effect."""
        return self.kill_grace + KILL_SLACK

    @property
    def minimum_budget(self) -> float:
        """Enough to stop a command that ignores SIGTERM and still close in time."""
        return self.kill_wait + CLOSE_RESERVE
