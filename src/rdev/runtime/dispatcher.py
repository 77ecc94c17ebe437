"""The dispatcher: claims queued commands when their project has a free slot, runs them on the
backend, enforces timeouts and cancel, renews leases, and sweeps commands whose replica died.

Every replica runs one. Claims go through the command store, which serialises them, so the
per-project limit holds across replicas; the replica-wide limit is this process's own.

A database outage stops every replica from renewing its leases, so when it ends every lease may
look expired. A replica therefore renews its own leases first (it retries a failed renewal
soon, not a third of a lease later) and sweeps nothing until the database has answered it
without a break for a whole lease period: long enough for every live replica to have renewed.
A lease still expired after that belongs to a replica that is really gone. A replica never
sweeps a command it is running itself, and stops one that another replica ended meanwhile.

A command swept to `lost` (its replica stopped renewing the lease, or this replica restarted
under the same id) also has its processes killed where the backend can reach them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import structlog

from rdev.domain.lifecycle import elapsed_ms, started_event, terminal_events
from rdev.domain.models import Command, CommandStatus
from rdev.ports import Backend, Bus, CommandStore, EventLog, Finish, StartNow, Tracer
from rdev.runtime.limits import DispatchLimits
from rdev.runtime.runner import EndHook, Runner
from rdev.runtime.streams import StreamHub
from rdev.runtime.tracing import NO_TRACER

log = structlog.get_logger(__name__)
QUEUE_TOPIC = "queue"
RENEW_RETRY_SECONDS = 0.5  # after a failed renewal: renew soon once the database is back
CANCEL_TOPIC = "cancel"


class Dispatcher:
    def __init__(
        self,
        *,
        commands: CommandStore,
        log: EventLog,
        hub: StreamHub,
        backend: Backend,
        bus: Bus,
        replica: str,
        limits: DispatchLimits,
        clock: Callable[[], datetime],
        on_end: EndHook | None = None,
        tracer: Tracer = NO_TRACER,
    ) -> None:
        """`on_end` hears of every command this replica ends (run, or swept as lost), once;
        bootstrap gives it the audit log."""
        self._commands = commands
        self._tracer = tracer
        self._on_end = on_end
        self._log = log
        self._hub = hub
        self._backend = backend
        self._bus = bus
        self._replica = replica
        self._limits = limits
        self._clock = clock
        self._wake = asyncio.Event()
        self._running: dict[str, Runner] = {}
        self._reserved = 0  # slots held for submissions that may start at once (start_slot)
        self._tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._accepting = True
        self._project_limits: dict[str, int | None] = {}
        self._limits_read_at = float("-inf")
        # loop time since which the database has answered without a break (None: it has not)
        self._db_back_at: float | None = float("-inf")
        bus.subscribe(QUEUE_TOPIC, self._on_queue)
        bus.subscribe(CANCEL_TOPIC, self._on_cancel)

    @property
    def running_count(self) -> int:
        return len(self._running)

    def running_by_project(self) -> dict[str, int]:
        """Commands running on this replica, per project (read when metrics are scraped)."""
        counts: dict[str, int] = {}
        for runner in self._running.values():
            project = runner.command.project_id
            counts[project] = counts.get(project, 0) + 1
        return counts

    async def start(self) -> None:
        self._loops = [
            asyncio.create_task(self._claim_loop(), name="dispatcher-claim"),
            asyncio.create_task(self._lease_loop(), name="dispatcher-lease"),
        ]

    @contextlib.contextmanager
    def start_slot(self, project_id: str) -> Iterator[StartNow | None]:
        """A free slot of this replica held for one submission, which its transaction may start
        at once (`CommandStore.enqueue`'s `start`) instead of queueing it for a claim: one
        transaction fewer before its first output. None when this replica has no free slot or
        is stopping. A started command must be `launch`ed within the block."""
        if not self._accepting or self._free_slots() <= 0:
            yield None
            return
        self._reserved += 1
        try:
            now = self._clock()
            yield StartNow(
                owner=self._replica,
                now=now,
                lease_until=now + timedelta(seconds=self._limits.lease_seconds),
                project_limit=self._limit_for(project_id),
            )
        finally:
            self._reserved -= 1

    def launch(self, cmd: Command) -> None:
        """Run a command its submission started in this replica's slot (see start_slot)."""
        self._launch(cmd)

    def _free_slots(self) -> int:
        return self._limits.per_replica - len(self._running) - self._reserved

    async def notify_queue(self) -> None:
        self._wake.set()  # this replica at once; the bus tells the others
        await self._bus.publish(QUEUE_TOPIC, self._replica)

    def _on_queue(self, replica: str) -> None:
        """Another replica queued work. This replica's own notice comes back too (PostgreSQL's
        LISTEN hears its own NOTIFY), a moment later: claiming again then would cost a
        transaction on the path of the command's first output, for nothing."""
        if replica != self._replica:
            self._wake.set()

    async def stop(self, *, grace_seconds: float, kill_wait_seconds: float) -> None:
        """Stop claiming; let running commands finish within the grace period, then end them
        as lost (the replica is going away), waiting at most `kill_wait_seconds` for that."""
        self._accepting = False
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=grace_seconds)
            if pending:
                for runner in list(self._running.values()):
                    runner.abandon("SHUTDOWN", "the rdev replica running this command shut down")
                _done, pending = await asyncio.wait(pending, timeout=kill_wait_seconds)
            if pending:
                # left running with their lease: another replica sweeps them to `lost`
                log.warning("dispatcher.stop_overran", commands=len(pending))
                for task in pending:  # e.g. still waiting for the database: nothing left behind
                    task.cancel()

    async def _claim_loop(self) -> None:
        while self._accepting:
            self._wake.clear()
            try:
                await self._claim_once()
            except Exception as e:  # a database blip must not kill the loop
                self._db_back_at = None
                log.warning("dispatcher.claim_failed", error=type(e).__name__, detail=str(e)[:200])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._limits.poll_seconds)

    async def _claim_once(self) -> None:
        slots = self._free_slots()
        if slots <= 0:
            return
        await self._refresh_limits()
        now = self._clock()
        claimed = await self._commands.claim(
            owner=self._replica,
            lease_until=now + timedelta(seconds=self._limits.lease_seconds),
            now=now,
            slots=slots,
            project_limit=self._limit_for,
        )
        for cmd in claimed:
            # the claim wrote its `running` status: readers see it before the process starts
            await self._hub.publish([started_event(cmd.id)])
            self._launch(cmd)

    async def _refresh_limits(self) -> None:
        """Project limits, re-read at most once a second (claims can come much faster)."""
        now = asyncio.get_running_loop().time()
        if now - self._limits_read_at < 1.0:
            return
        try:
            projects = await self._backend.list_projects()
        except Exception:
            return  # keep the last known limits
        self._limits_read_at = now
        self._project_limits = {p.id: p.max_concurrent for p in projects}

    def _limit_for(self, project_id: str) -> int | None:
        limit = self._project_limits.get(project_id)
        return limit if limit is not None else self._limits.per_project

    def _launch(self, cmd: Command) -> None:
        runner = Runner(
            cmd,
            backend=self._backend,
            commands=self._commands,
            log=self._log,
            hub=self._hub,
            limits=self._limits,
            clock=self._clock,
            on_end=self._ended,
            tracer=self._tracer,
        )
        self._running[cmd.id] = runner
        task = asyncio.create_task(self._run(runner), name=f"command-{cmd.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, runner: Runner) -> None:
        try:
            await runner.run()
        except Exception as e:
            log.error("dispatcher.run_failed", command=runner.command.id, error=type(e).__name__)
        finally:
            self._running.pop(runner.command.id, None)
            if self._accepting:
                await self.notify_queue()

    async def _ended(self, cmd: Command, finish: Finish) -> None:
        if self._on_end is None:
            return
        try:
            await self._on_end(cmd, finish)
        except Exception as e:  # the command has ended either way; a lost record is logged
            log.warning("dispatcher.end_hook_failed", command=cmd.id, error=type(e).__name__)

    async def broadcast_cancel(self, command_id: str) -> None:
        self._on_cancel(command_id)
        await self._bus.publish(CANCEL_TOPIC, command_id)

    def _on_cancel(self, command_id: str) -> None:
        runner = self._running.get(command_id)
        if runner is not None:
            runner.cancel()

    async def _lease_loop(self) -> None:
        every = self._limits.lease_seconds / 3
        wait = every
        try:
            await self._sweep_own_leftovers()
        except Exception as e:
            log.warning("dispatcher.restart_sweep_failed", error=type(e).__name__)
        while self._accepting:
            await asyncio.sleep(wait)
            try:
                await self._renew_and_sweep()
            except Exception as e:
                self._db_back_at = None
                wait = min(every, RENEW_RETRY_SECONDS)
                log.warning("dispatcher.lease_failed", error=type(e).__name__)
            else:
                wait = every

    async def _renew_and_sweep(self) -> None:
        now = self._clock()
        ids = list(self._running)
        to_stop = await self._commands.renew_leases(
            owner=self._replica,
            command_ids=ids,
            until=now + timedelta(seconds=self._limits.lease_seconds),
        )
        for command_id in to_stop:  # cancel requested, or ended by another replica
            self._on_cancel(command_id)
        expired = await self._commands.expired_leases(now)  # also proves the database answers
        if not self._may_sweep():
            return
        for cmd in expired:
            if cmd.id not in self._running:
                await self._sweep(cmd, now)

    def _may_sweep(self) -> bool:
        """Only after the database has answered for a whole lease period (see the docstring)."""
        now = asyncio.get_running_loop().time()
        if self._db_back_at is None:
            self._db_back_at = now
        return now - self._db_back_at >= self._limits.lease_seconds

    async def _sweep_own_leftovers(self) -> None:
        """Commands still leased to this replica's id when it starts ran in a previous life of
        it (a crash, then a restart with the same id): none runs here, so they are lost now
        rather than when their leases run out."""
        now = self._clock()
        for cmd in await self._commands.leased_to(self._replica):
            if cmd.id not in self._running:
                await self._sweep(cmd, now, restarted=True)

    async def _sweep(self, cmd: Command, now: datetime, *, restarted: bool = False) -> None:
        """A running command whose replica stopped renewing its lease: the outcome is unknown.
        Its processes are killed too, in the background (a pod exec must not hold up the lease
        renewals of this replica's own commands)."""
        code, message, error = (
            ("REPLICA_RESTARTED", "the replica running this command restarted", "replica restarted")
            if restarted
            else ("LEASE_EXPIRED", "the replica running this command stopped responding",
                  "lease expired")
        )  # fmt: skip
        final = terminal_events(
            cmd.id,
            last_seq=await self._log.last_seq(cmd.id),
            status=CommandStatus.LOST,
            exit_code=None,
            duration_ms=elapsed_ms(cmd.started_at, now),
            error=(code, message),
        )
        finish = Finish(status=CommandStatus.LOST, finished_at=now, error=error)
        if await self._commands.finish(cmd.id, finish, final):
            await self._hub.publish(final)
            await self._ended(cmd, finish)
            log.info("dispatcher.swept_lost", command=cmd.id, owner=cmd.lease_owner)
            task = asyncio.create_task(self._end_processes(cmd), name=f"sweep-{cmd.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _end_processes(self, cmd: Command) -> None:
        try:
            killed = await self._backend.kill_command(cmd.project_id, cmd.id)
        except Exception as e:  # unreachable pod, API down: nothing more this replica can do
            log.warning("dispatcher.sweep_kill_failed", command=cmd.id, error=type(e).__name__)
            return
        if killed:
            log.info("dispatcher.swept_processes", command=cmd.id, killed=killed)
