"""The dispatcher against twins on virtual time: the per-project and per-replica limits, the
sweep of commands whose replica stopped renewing (only after the database has answered for a
whole lease period), the restart sweep, and never sweeping its own commands."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any

from rdev.adapters.bus.memory import InProcessBus
from rdev.domain.errors import DatabaseUnavailable
from rdev.domain.lifecycle import started_event
from rdev.domain.models import Command, CommandStatus
from rdev.runtime.dispatcher import Dispatcher
from rdev.runtime.limits import DispatchLimits
from tests.fakes import MemoryCommandStore, VirtualTimeLoop, run_virtual
from tests.support import eventually
from tests.unit.runtime_support import World

LIMITS = DispatchLimits(
    per_project=2, per_replica=3, lease_seconds=30.0, kill_grace_seconds=1.0, poll_seconds=0.5
)


def dispatcher(w: World, *, replica: str = "r1", limits: DispatchLimits = LIMITS) -> Dispatcher:
    return Dispatcher(
        commands=w.store, log=w.log, hub=w.hub, backend=w.backend, bus=w.bus, replica=replica,
        limits=limits, clock=w.loop.clock, on_end=w.on_end,
    )  # fmt: skip


def running(w: World, project: str | None = None) -> list[str]:
    return sorted(
        c.id
        for c in w.store.commands.values()
        if c.status is CommandStatus.RUNNING and (project is None or c.project_id == project)
    )


def expected_running(w: World) -> int:
    """What the limits allow: two per project, three in all."""
    left: dict[str, int] = {}
    for c in w.store.commands.values():
        if c.status in (CommandStatus.QUEUED, CommandStatus.RUNNING):
            left[c.project_id] = left.get(c.project_id, 0) + 1
    return min(3, sum(min(2, n) for n in left.values()))


def test_claims_never_exceed_the_project_or_the_replica_limit() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        w = World(loop)
        w.backend.add_project("other")
        w.backend.add_project("wide", max_concurrent=10)
        for i in range(4):
            await w.queue(f"cmd_d{i}")
        for i in range(4):
            await w.queue(f"cmd_o{i}", project="other")
        d = dispatcher(w)
        await d.start()
        await eventually(lambda: d.running_count == 3)
        await _settle_for(loop, 5)  # more polls claim nothing more
        assert len(running(w)) == 3
        assert len(running(w, "demo")) == 2  # the project limit, then the next project
        assert running(w, "other") == ["cmd_o0"]
        while running(w):  # end what runs, one at a time: every free slot is used, no more
            first = running(w)[0]
            w.backend.started[first].exit(0)
            await eventually(lambda f=first: w.store.commands[f].status is CommandStatus.SUCCEEDED)
            await eventually(lambda: len(running(w)) == expected_running(w))
            assert len(running(w, "demo")) <= 2 and len(running(w, "other")) <= 2
        assert len(w.ended) == 8
        assert {f.status for _, f in w.ended} == {CommandStatus.SUCCEEDED}
        await d.stop(grace_seconds=0, kill_wait_seconds=5)

    run_virtual(main)


async def _settle_for(loop: VirtualTimeLoop, seconds: float) -> None:
    await asyncio.sleep(seconds)


def test_a_project_max_concurrent_overrides_the_default_limit() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        w = World(loop)
        w.backend.add_project("demo", max_concurrent=1)
        for i in range(3):
            await w.queue(f"cmd_{i}")
        d = dispatcher(w)
        await d.start()
        await eventually(lambda: d.running_count == 1)
        await _settle_for(loop, 5)
        assert running(w) == ["cmd_0"]
        await d.stop(grace_seconds=0, kill_wait_seconds=5)

    run_virtual(main)


def test_an_expired_lease_of_another_replica_is_swept_to_lost() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        w = World(loop)
        await w.queue("cmd_gone")
        await w.store.claim(
            owner="r-dead", lease_until=loop.clock() + timedelta(seconds=1), now=loop.clock(),
            slots=1, project_limit=lambda _p: 5,
        )  # fmt: skip
        d = dispatcher(w)
        await d.start()
        await eventually(lambda: w.store.commands["cmd_gone"].status is CommandStatus.LOST)
        assert loop.time() <= LIMITS.lease_seconds / 3 + 1  # at the first renewal
        cmd = w.store.commands["cmd_gone"]
        assert cmd.error == "lease expired" and cmd.lease_owner is None
        # queued, running (written by the claim), then the sweep's lost, error and complete
        assert w.types("cmd_gone") == ["status", "status", "status", "error", "complete"]
        assert w.events("cmd_gone")[1].data == {"status": "running"}
        assert w.events("cmd_gone")[3].data["code"] == "LEASE_EXPIRED"
        assert [(cid, f.status) for cid, f in w.ended] == [("cmd_gone", CommandStatus.LOST)]
        await eventually(lambda: w.backend.killed == ["cmd_gone"])  # its processes too
        await d.stop(grace_seconds=0, kill_wait_seconds=5)

    run_virtual(main)


def test_commands_of_a_previous_life_of_this_replica_are_lost_at_once() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        w = World(loop)
        await w.queue("cmd_old")
        far = loop.clock() + timedelta(hours=1)  # its lease has not run out
        await w.store.claim(
            owner="r1", lease_until=far, now=loop.clock(), slots=1, project_limit=lambda _p: 5
        )
        d = dispatcher(w)
        await d.start()
        await eventually(lambda: w.store.commands["cmd_old"].status is CommandStatus.LOST)
        assert loop.time() < 1
        assert w.events("cmd_old")[3].data["code"] == "REPLICA_RESTARTED"
        await d.stop(grace_seconds=0, kill_wait_seconds=5)

    run_virtual(main)


def test_a_replica_renews_and_never_sweeps_its_own_running_commands() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        w = World(loop)
        await w.queue("cmd_long", timeout_seconds=3600)
        d = dispatcher(w)
        await d.start()
        await eventually(lambda: d.running_count == 1)
        await _settle_for(loop, LIMITS.lease_seconds * 5)
        cmd = w.store.commands["cmd_long"]
        assert cmd.status is CommandStatus.RUNNING
        assert cmd.lease_expires_at is not None and cmd.lease_expires_at > loop.clock()
        await d.stop(grace_seconds=0, kill_wait_seconds=5)

    run_virtual(main)


def test_a_cancel_requested_elsewhere_reaches_the_runner_at_the_next_renewal() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        w = World(loop)
        await w.queue("cmd_a")
        d = dispatcher(w)
        await d.start()
        await eventually(lambda: d.running_count == 1)
        await w.store.request_cancel("cmd_a")  # by another replica: no bus message here
        await eventually(lambda: w.store.commands["cmd_a"].status is CommandStatus.CANCELLED)
        assert loop.time() <= LIMITS.lease_seconds / 3 + 1
        await d.stop(grace_seconds=0, kill_wait_seconds=5)

    run_virtual(main)


class FlakyStore(MemoryCommandStore):
    """The twin store with a database that can go away."""

    down = False

    async def renew_leases(self, **kw: Any) -> list[str]:
        if self.down:
            raise DatabaseUnavailable("database unreachable")
        return await super().renew_leases(**kw)

    async def claim(self, **kw: Any) -> list[Command]:
        if self.down:
            raise DatabaseUnavailable("database unreachable")
        return await super().claim(**kw)


def test_after_an_outage_nothing_is_swept_until_the_database_answered_a_lease_period() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        w = World(loop)
        w.store = store = FlakyStore(w.log)
        d = dispatcher(w)
        await d.start()
        store.down = True
        await _settle_for(loop, LIMITS.lease_seconds)  # every lease looks expired after this
        await w.queue("cmd_gone")
        store.down = False
        back = loop.time()
        await store.claim(  # another replica's, whose lease ran out during the outage
            owner="r-dead", lease_until=loop.clock(), now=loop.clock(), slots=1,
            project_limit=lambda _p: 5,
        )  # fmt: skip
        await eventually(lambda: w.store.commands["cmd_gone"].status is CommandStatus.LOST)
        assert loop.time() - back >= LIMITS.lease_seconds
        await d.stop(grace_seconds=0, kill_wait_seconds=5)

    run_virtual(main)


def test_a_replicas_own_queue_notice_coming_back_over_the_bus_claims_nothing_more() -> None:
    # notify_queue wakes this replica directly; the bus tells the others. Its own notice came
    # back over the bus too (PostgreSQL LISTEN hears its own NOTIFY) and woke a second claim,
    # a transaction on the path of the first command's first output.
    class NotifyBus(InProcessBus):  # as PostgreSQL's: a notice arrives a moment later
        async def publish(self, topic: str, payload: str) -> None:
            asyncio.get_running_loop().call_later(
                0.01, lambda: asyncio.ensure_future(super(NotifyBus, self).publish(topic, payload))
            )

    async def main(loop: VirtualTimeLoop) -> None:
        w = World(loop, bus=NotifyBus())
        claims = 0
        claim = w.store.claim

        async def counted(**kwargs: Any) -> list[Command]:
            nonlocal claims
            claims += 1
            return await claim(**kwargs)

        w.store.claim = counted  # type: ignore[method-assign]
        d = dispatcher(w)
        await d.start()
        await _settle_for(loop, 0.1)  # the start's own claim
        before = claims
        await w.queue("cmd_a")
        await d.notify_queue()
        await eventually(lambda: d.running_count == 1)
        await _settle_for(loop, 0.2)  # within one poll period: only wake-ups claim
        assert claims - before == 1
        other = dispatcher(w, replica="r2")  # another replica's notice still wakes this one
        await other.notify_queue()
        await _settle_for(loop, 0.2)
        assert claims - before == 2
        await d.stop(grace_seconds=0, kill_wait_seconds=5)

    run_virtual(main)


def test_a_start_slot_held_by_a_submission_counts_against_claims_and_is_given_back() -> None:
    """per_replica=3: a submission holding a slot leaves two to claim; a full or stopping
    replica offers none; a slot comes back when the submission ends without starting."""

    async def main(loop: VirtualTimeLoop) -> None:
        w = World(loop)
        w.backend.add_project("wide", max_concurrent=10)
        for i in range(5):
            await w.queue(f"cmd_w{i}", project="wide")
        d = dispatcher(w)
        with d.start_slot("wide") as start:
            assert start is not None
            assert (start.owner, start.project_limit) == ("r1", 2)  # not read yet: the default
            assert start.lease_until - start.now == timedelta(seconds=LIMITS.lease_seconds)
            await d.start()
            await eventually(lambda: d.running_count == 2)
            await _settle_for(loop, 2)
            assert d.running_count == 2  # the held slot is not claimed
        await eventually(lambda: d.running_count == 3)  # given back: claimed at the next poll
        with d.start_slot("wide") as start:
            assert start is None  # the replica is full
        await d.stop(grace_seconds=0, kill_wait_seconds=5)
        with d.start_slot("wide") as start:
            assert start is None  # stopping: nothing starts here any more

    run_virtual(main)


def test_a_command_started_in_its_submission_runs_as_a_claimed_one_does() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        w = World(loop)
        d = dispatcher(w)
        await d.start()
        cmd = await w.queue("cmd_now")
        with d.start_slot("demo") as start:
            assert start is not None
            started = [
                replace(cmd, status=CommandStatus.RUNNING, started_at=start.now,
                        lease_owner=start.owner, lease_expires_at=start.lease_until)
            ]  # fmt: skip
            w.store.commands[cmd.id] = started[0]  # as enqueue(start=...) stores it
            await w.log.append([started_event(cmd.id)])
            d.launch(started[0])
        assert d.running_count == 1
        await eventually(lambda: "cmd_now" in w.backend.started)
        w.backend.started["cmd_now"].exit(0)
        await eventually(lambda: w.store.commands["cmd_now"].status is CommandStatus.SUCCEEDED)
        assert [cid for cid, _ in w.ended] == ["cmd_now"]
        await d.stop(grace_seconds=0, kill_wait_seconds=5)

    run_virtual(main)
