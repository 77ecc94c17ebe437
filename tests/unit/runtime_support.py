"""Shared set-up for the runtime's unit tests: twins wired as bootstrap wires the real parts."""

from __future__ import annotations

from dataclasses import dataclass, field

from rdev.adapters.bus.memory import InProcessBus
from rdev.domain.models import Command, CommandKind, CommandStatus, Event, EventType, Priority
from rdev.ports import Finish
from rdev.runtime.streams import StreamHub
from tests.fakes import FakeBackend, MemoryCommandStore, MemoryEventLog, VirtualTimeLoop


@dataclass
class World:
    loop: VirtualTimeLoop
    log: MemoryEventLog = field(default_factory=MemoryEventLog)
    backend: FakeBackend = field(default_factory=FakeBackend)
    bus: InProcessBus = field(default_factory=InProcessBus)
    ended: list[tuple[str, Finish]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.store = MemoryCommandStore(self.log)
        self.hub = StreamHub(self.log, self.bus, replica="r1")
        self.backend.add_project("demo")

    async def on_end(self, cmd: Command, finish: Finish) -> None:
        self.ended.append((cmd.id, finish))

    async def queue(
        self,
        cid: str,
        *,
        project: str = "demo",
        kind: CommandKind = CommandKind.SHELL,
        timeout_seconds: int = 60,
    ) -> Command:
        cmd = Command(
            id=cid,
            project_id=project,
            kind=kind,
            argv=("run", cid),
            status=CommandStatus.QUEUED,
            priority=Priority.NORMAL,
            created_at=self.loop.clock(),
            timeout_seconds=timeout_seconds,
        )
        return await self.store.add(cmd, Event(cid, 1, EventType.STATUS, {"status": "queued"}))

    def events(self, cid: str) -> list[Event]:
        return self.log.events.get(cid, [])

    def types(self, cid: str) -> list[str]:
        return [e.type.value for e in self.events(cid)]
