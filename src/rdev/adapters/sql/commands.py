"""Commands and the shared queue in SQL.

Both ends of the queue are serialised. Enqueueing takes a PostgreSQL advisory transaction lock
on the project: the idempotency check, the cap, the position and the insert are one step, so
the cap holds and positions are distinct however many replicas accept submissions. Claims take
one advisory lock across replicas: inside it the running counts per project are exact, so
project limits hold however many replicas claim at once. On SQLite (one replica) every write
is already one `BEGIN IMMEDIATE` transaction run to its end without yielding (see
db.SqliteDatabase), which serialises both.

A claim reads, per project, only its first `slots` queued commands (a window function), so a
project with a free slot is seen however many commands other projects have queued."""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    Insert,
    Select,
    Table,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import BindParameter

from rdev.adapters.sql.audit import entry_row, insert_entry
from rdev.adapters.sql.db import CLAIM_LOCK, Database, project_lock, utc
from rdev.adapters.sql.events import events_row, insert_events
from rdev.adapters.sql.tables import audit_log, commands
from rdev.adapters.sql.tables import events as events_t
from rdev.adapters.sql.usage import baseline, from_json, insert_usage, usage_json
from rdev.adapters.sql.webhooks import ENABLED
from rdev.domain.errors import InvalidInput, QueueFull
from rdev.domain.lifecycle import started_event
from rdev.domain.models import (
    AuditEntry,
    ClaudeResult,
    Command,
    CommandKind,
    CommandStatus,
    Event,
    OutputLimitAction,
    Page,
    Priority,
)
from rdev.domain.usage import Reported
from rdev.domain.webhooks import WebhookEvent
from rdev.ports import CommandFilter, Enqueued, Finish, StartNow

if TYPE_CHECKING:
    from rdev.adapters.sql.webhooks import Outbox  # (one built by bootstrap, or none)

c = commands.c
_TICK = timedelta(microseconds=1)  # the finest step both databases store


def _row_to_command(row: Any) -> Command:
    reported, usage = from_json(row.claude_usage, row.claude_cost_usd, row.claude_run_cost_usd)
    return Command(
        id=row.id,
        project_id=row.project_id,
        kind=CommandKind(row.kind),
        argv=tuple(row.argv),
        status=CommandStatus(row.status),
        priority=Priority(row.priority),
        created_at=utc(row.created_at),  # type: ignore[arg-type]
        timeout_seconds=row.timeout_seconds,
        key_id=row.key_id,
        cwd=row.cwd,
        env=dict(row.env),
        started_at=utc(row.started_at),
        finished_at=utc(row.finished_at),
        exit_code=row.exit_code,
        error=row.error,
        claude=ClaudeResult(
            session_id=row.claude_session_id,
            total_cost_usd=row.claude_cost_usd,
            num_turns=row.claude_num_turns,
            is_error=row.claude_is_error,
            subtype=row.claude_subtype,
            terminal_reason=row.claude_terminal_reason,
            permission_denials=tuple((str(t), str(s)) for t, s in row.claude_denials or ()),
            usage=usage,
            reported=reported,
        ),
        idempotency_key=row.idempotency_key,
        request_hash=row.request_hash,
        lease_owner=row.lease_owner,
        lease_expires_at=utc(row.lease_expires_at),
        cancel_requested=bool(row.cancel_requested),
        output_bytes=int(row.output_bytes or 0),
        truncated=bool(row.truncated),
        on_output_limit=OutputLimitAction(row.on_output_limit),
    )


def _encode_cursor(cmd: Command) -> str:
    raw = f"{cmd.created_at.isoformat()}|{cmd.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, cid = raw.split("|", 1)
        return datetime.fromisoformat(stamp), cid
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidInput("cursor is invalid", details={"field": "cursor"}) from e


_QUEUE_ORDER = (c.priority_rank, c.created_at, c.id)
_QUEUED, _RUNNING = CommandStatus.QUEUED.value, CommandStatus.RUNNING.value

# The statements on the path of every command are built once: building one costs more than
# running it on SQLite. Their parameters are bound at execution.
_INSERT = insert(commands)
_BY_ID = select(commands).where(c.id == bindparam("b_id"))
_COUNT_QUEUED = select(func.count()).where(
    c.project_id == bindparam("b_project"), c.status == _QUEUED
)
_rank: BindParameter[int] = bindparam("b_rank")
_created: BindParameter[datetime] = bindparam("b_created")
_AHEAD = select(func.count()).where(
    c.project_id == bindparam("b_project"),
    c.status == _QUEUED,
    or_(
        c.priority_rank < _rank,
        and_(c.priority_rank == _rank, c.created_at < _created),
        and_(c.priority_rank == _rank, c.created_at == _created, c.id < bindparam("b_id")),
    ),
)
_RUNNING_COUNTS = (
    select(c.project_id, func.count()).where(c.status == _RUNNING).group_by(c.project_id)
)


def _project_count(*where: Any) -> Any:
    return select(func.count()).where(c.project_id == bindparam("b_project"), *where)


# What a submission needs to know of its project, in one round trip: queued (for the cap),
# queued at its priority or ahead of it (its position: it joins after every command of the
# project, see _after_latest), the latest arrival, and running (to start at once).
_QUEUE_STATE = select(
    _project_count(c.status == _QUEUED).scalar_subquery().label("queued"),
    _project_count(c.status == _QUEUED, c.priority_rank <= bindparam("b_rank"))
    .scalar_subquery()
    .label("ahead"),
    select(func.max(c.created_at))
    .where(c.project_id == bindparam("b_project"))
    .scalar_subquery()
    .label("latest"),
    _project_count(c.status == _RUNNING).scalar_subquery().label("running"),
)


def _candidates(*, exclude: bool) -> Select[Any]:
    """Each project's first `b_per_project` queued commands, in queue order: the claim takes
    from these. Reading per project, not the first N rows overall, is what lets a project with
    a free slot start behind any number queued elsewhere. `exclude`: leave out the projects in
    `b_full` (at their limit: as many as there are running commands at most), so their queues
    are not even sorted."""
    where = [c.status == _QUEUED]
    if exclude:
        where.append(c.project_id.not_in(bindparam("b_full", expanding=True)))
    rn = func.row_number().over(partition_by=c.project_id, order_by=_QUEUE_ORDER)
    ranked = select(commands, rn.label("rn")).where(*where).subquery()
    return (
        select(ranked)
        .where(ranked.c.rn <= bindparam("b_per_project"))
        .order_by(ranked.c.priority_rank, ranked.c.created_at, ranked.c.id)
    )


_CANDIDATES_ALL = _candidates(exclude=False)
_CANDIDATES_EXCLUDING = _candidates(exclude=True)
_IDEMPOTENT = select(commands).where(
    c.key_id == bindparam("b_key"), c.idempotency_key == bindparam("b_idem")
)
_START = update(commands).where(c.id.in_(bindparam("b_ids", expanding=True)))
_FINISH = update(commands).where(c.id == bindparam("b_id"), c.status == _RUNNING)


class SqlCommandStore:
    def __init__(self, db: Database, outbox: Outbox | None = None) -> None:
        self._db = db
        # webhooks: each change's deliveries are added in its own transaction
        self._outbox = outbox or _NoOutbox()

    async def add(self, command: Command, first_event: Event) -> Command:
        values = _values(command)

        def add(conn: Connection) -> None:
            conn.execute(_INSERT, values)
            insert_events(conn, [first_event])
            self._outbox.command(conn, WebhookEvent.COMMAND_QUEUED, command)

        try:
            await self._db.write(add)
            self._outbox.flush()
        except IntegrityError:
            if command.key_id and command.idempotency_key:
                existing = await self.find_idempotent(command.key_id, command.idempotency_key)
                if existing is not None:
                    return existing
            raise
        return command

    async def enqueue(
        self,
        command: Command,
        first_event: Callable[[int], Event],
        *,
        max_queue: int,
        audit: AuditEntry | None = None,
        start: StartNow | None = None,
    ) -> Enqueued:
        def enqueue(conn: Connection) -> Enqueued:
            project = {"b_project": command.project_id}
            if command.key_id and command.idempotency_key:
                params = {"b_key": command.key_id, "b_idem": command.idempotency_key}
                existing = _first(conn.execute(_IDEMPOTENT, params))
                if existing is not None:
                    return Enqueued(existing, None, (), created=False)
            state = conn.execute(_QUEUE_STATE, {"b_rank": command.priority.rank, **project}).one()
            if state.queued >= max_queue:
                raise QueueFull(f"project {command.project_id} has {max_queue} commands queued")
            cmd = _after_latest(command, utc(state.latest))
            position = int(state.ahead) + 1
            events = [first_event(position)]
            changes = [(WebhookEvent.COMMAND_QUEUED, cmd)]
            now_running = (
                start is not None
                and position == 1
                and not _at_limit(start.project_limit, int(state.running))
            )
            if now_running:
                assert start is not None
                cmd = _started_by(cmd, start)
                events.append(started_event(cmd.id))
                changes.append((WebhookEvent.COMMAND_STARTED, cmd))
            self._insert(conn, cmd, events, audit, changes)
            return Enqueued(cmd, position, tuple(events), created=True, started=now_running)

        # one enqueue of the project at a time, across replicas; one that may start at once
        # takes the claims' lock too, after its project's (claims take no project lock, so the
        # order cannot deadlock)
        locks = [project_lock(command.project_id)]
        if start is not None:
            locks.append((CLAIM_LOCK,))
        try:
            enqueued = await self._db.write(enqueue, locks=locks)
            self._outbox.flush()
            return enqueued
        except IntegrityError:
            # the same idempotency key for another project at the same moment: another lock
            if command.key_id and command.idempotency_key:
                existing = await self.find_idempotent(command.key_id, command.idempotency_key)
                if existing is not None:
                    return Enqueued(existing, None, (), created=False)
            raise

    def _insert(
        self,
        conn: Connection,
        cmd: Command,
        events: Sequence[Event],
        audit: AuditEntry | None,
        changes: Sequence[tuple[WebhookEvent, Command]],
    ) -> None:
        """A new command with its first events, its audit entry and its webhook deliveries."""
        values = _values(cmd)
        if self._db.is_sqlite:  # statements cost microseconds here: one each
            conn.execute(_INSERT, values)
            insert_events(conn, events)
            if audit is not None:
                insert_entry(conn, audit)
            self._outbox.commands(conn, changes)
        else:  # round trips cost here: the inserts and the webhooks' read are one statement
            enabled = conn.execute(*_insert_all(values, events, audit)).all()
            self._outbox.commands(conn, changes, enabled=enabled)

    async def get(self, command_id: str) -> Command | None:
        return await self._db.read(lambda conn: _first(conn.execute(_BY_ID, {"b_id": command_id})))

    async def find_idempotent(self, key_id: str, idempotency_key: str) -> Command | None:
        q = select(commands).where(c.key_id == key_id, c.idempotency_key == idempotency_key)
        return await self._db.read(lambda conn: _first(conn.execute(q)))

    async def page(self, flt: CommandFilter) -> Page[Command]:
        q = select(commands).order_by(c.created_at.desc(), c.id.desc()).limit(flt.limit + 1)
        if flt.project_id is not None:
            q = q.where(c.project_id == flt.project_id)
        if flt.status is not None:
            q = q.where(c.status == flt.status.value)
        if flt.cursor:
            stamp, cid = _decode_cursor(flt.cursor)
            q = q.where(or_(c.created_at < stamp, and_(c.created_at == stamp, c.id < cid)))
        rows = await self._db.read(lambda conn: [_row_to_command(r) for r in conn.execute(q)])
        more = len(rows) > flt.limit
        items = rows[: flt.limit]
        return Page(items=items, next_cursor=_encode_cursor(items[-1]) if more else None)

    async def count_queued(self, project_id: str) -> int:
        params = {"b_project": project_id}
        return await self._db.read(
            lambda conn: int(conn.execute(_COUNT_QUEUED, params).scalar_one())
        )

    async def queue_position(self, command: Command) -> int | None:
        """1-based position among the project's queued commands, in claim order (also for a
        command about to be queued: everything already there of its rank or higher is ahead)."""
        if command.status is not CommandStatus.QUEUED:
            return None
        params = _ahead_params(command)
        return await self._db.read(lambda conn: int(conn.execute(_AHEAD, params).scalar_one()) + 1)

    async def claim(
        self,
        *,
        owner: str,
        lease_until: datetime,
        now: datetime,
        slots: int,
        project_limit: Callable[[str], int | None],
    ) -> list[Command]:
        if slots <= 0:
            return []

        def claim(conn: Connection) -> list[Command]:
            running = Counter({pid: int(n) for pid, n in conn.execute(_RUNNING_COUNTS)})
            full = [pid for pid, n in running.items() if _at_limit(project_limit(pid), n)]
            query = _CANDIDATES_EXCLUDING if full else _CANDIDATES_ALL
            chosen: list[Command] = []
            for row in conn.execute(query, {"b_full": full, "b_per_project": slots}):
                if _at_limit(project_limit(row.project_id), running[row.project_id]):
                    continue
                running[row.project_id] += 1
                chosen.append(_row_to_command(row))
                if len(chosen) == slots:
                    break
            if chosen:
                conn.execute(
                    _START,
                    {
                        "b_ids": [x.id for x in chosen],
                        "status": _RUNNING,
                        "started_at": now,
                        "lease_owner": owner,
                        "lease_expires_at": lease_until,
                    },
                )
                for x in chosen:
                    insert_events(conn, [started_event(x.id)])
            self._outbox.commands(
                conn,
                [
                    (
                        WebhookEvent.COMMAND_STARTED,
                        replace(x, status=CommandStatus.RUNNING, started_at=now),
                    )
                    for x in chosen
                ],
            )
            return chosen

        chosen = await self._db.write(claim, locks=[(CLAIM_LOCK,)])
        self._outbox.flush()
        return [
            replace(x, status=CommandStatus.RUNNING, started_at=now, lease_owner=owner)
            for x in chosen
        ]

    async def renew_leases(
        self, *, owner: str, command_ids: Sequence[str], until: datetime
    ) -> list[str]:
        if not command_ids:
            return []
        ids = list(command_ids)

        def renew(conn: Connection) -> list[str]:
            conn.execute(
                update(commands)
                .where(c.id.in_(ids), c.lease_owner == owner)
                .values(lease_expires_at=until)
            )
            # to stop: cancel requested, or no longer this replica's to run (another replica
            # swept it while this one could not reach the database)
            rows = conn.execute(
                select(c.id).where(
                    c.id.in_(ids),
                    or_(
                        c.cancel_requested.is_(True),
                        c.status != _RUNNING,
                        c.lease_owner.is_(None),
                        c.lease_owner != owner,
                    ),
                )
            )
            return [r.id for r in rows]

        return await self._db.write(renew)

    async def request_cancel(self, command_id: str) -> None:
        q = update(commands).where(c.id == command_id).values(cancel_requested=True)
        await self._db.write(lambda conn: conn.execute(q))

    async def cancel_queued(self, command_id: str, *, at: datetime, final: Sequence[Event]) -> bool:
        def cancel(conn: Connection) -> bool:
            result = conn.execute(
                update(commands)
                .where(c.id == command_id, c.status == CommandStatus.QUEUED.value)
                .values(status=CommandStatus.CANCELLED.value, finished_at=at, cancel_requested=True)
            )
            if result.rowcount != 1:
                return False
            insert_events(conn, final)
            self._outbox.command_finished(conn, command_id)
            return True

        cancelled = await self._db.write(cancel)
        self._outbox.flush()
        return cancelled

    async def finish(self, command_id: str, finish: Finish, final: Sequence[Event]) -> bool:
        values: dict[str, Any] = {
            "status": finish.status.value,
            "finished_at": finish.finished_at,
            "exit_code": finish.exit_code,
            "error": finish.error,
            "output_bytes": finish.output_bytes,
            "truncated": finish.truncated,
            "lease_owner": None,
            "lease_expires_at": None,
        }
        if finish.claude is not None:
            usage = finish.claude.usage
            values |= {
                "claude_cost_usd": finish.claude.total_cost_usd,
                "claude_num_turns": finish.claude.num_turns,
                "claude_is_error": finish.claude.is_error,
                "claude_subtype": finish.claude.subtype,
                "claude_terminal_reason": finish.claude.terminal_reason,
                "claude_denials": [list(d) for d in finish.claude.permission_denials] or None,
                "claude_run_cost_usd": None if usage is None else usage.cost_usd,
                "claude_usage": usage_json(finish.claude),
            }
            if finish.claude.session_id is not None:  # never forget one recorded at init
                values["claude_session_id"] = finish.claude.session_id

        def finish_(conn: Connection) -> bool:
            result = conn.execute(_FINISH, {"b_id": command_id, **values})
            if result.rowcount != 1:
                return False
            insert_events(conn, final)
            self._outbox.command_finished(conn, command_id)
            if finish.claude is not None and finish.claude.usage is not None:
                insert_usage(conn, command_id, finish.claude.usage, finish.finished_at)
            return True

        try:
            finished = await self._db.write(finish_)
            self._outbox.flush()
            return finished
        except IntegrityError:
            return False  # another replica finished it first and took those sequence numbers

    async def expired_leases(self, now: datetime) -> list[Command]:
        q = select(commands).where(
            c.status == CommandStatus.RUNNING.value, c.lease_expires_at < now
        )
        return await self._db.read(lambda conn: [_row_to_command(r) for r in conn.execute(q)])

    async def leased_to(self, owner: str) -> list[Command]:
        q = select(commands).where(c.status == CommandStatus.RUNNING.value, c.lease_owner == owner)
        return await self._db.read(lambda conn: [_row_to_command(r) for r in conn.execute(q)])

    async def record_claude_session(self, command_id: str, session_id: str) -> None:
        q = update(commands).where(c.id == command_id).values(claude_session_id=session_id)
        await self._db.write(lambda conn: conn.execute(q))

    async def has_claude_session(self, project_id: str, session_id: str) -> bool:
        # ix_commands_project narrows the search to the project's commands
        q = (
            select(c.id)
            .where(c.project_id == project_id, c.claude_session_id == session_id)
            .limit(1)
        )
        return await self._db.read(lambda conn: conn.execute(q).first() is not None)

    async def claude_baseline(
        self, project_id: str, session_id: str, before: datetime
    ) -> Reported | None:
        return await self._db.read(lambda conn: baseline(conn, project_id, session_id, before))


def _bound_insert(table: Table, prefix: str, columns: Sequence[str]) -> Insert:
    """An INSERT of one row whose values are bound at execution as `prefix` + column name."""
    return insert(table).values(
        {name: bindparam(prefix + name, type_=table.c[name].type) for name in columns}
    )


def _insert_all_statement(*, audit: bool) -> Select[Any]:
    """PostgreSQL: a command, its first events and (`audit`) its audit entry inserted by one
    statement (data-modifying CTEs), which reads the enabled webhooks for the outbox too.
    Built once: building such a statement costs more than running it (~0.3 ms)."""
    ctes = [
        _bound_insert(commands, "c_", _COMMAND_COLUMNS).cte("new_command"),
        _bound_insert(events_t, "e_", _EVENTS_COLUMNS).cte("new_events"),
    ]
    if audit:
        ctes.append(_bound_insert(audit_log, "a_", _AUDIT_COLUMNS).cte("new_audit"))
    return ENABLED.add_cte(*ctes)


def _prefixed(prefix: str, row: dict[str, Any], columns: Sequence[str]) -> dict[str, Any]:
    if len(row) != len(columns) or not all(name in row for name in columns):
        # a column added to a row but not to the statement would silently not be stored
        raise AssertionError(f"{prefix} row has {sorted(row)}, the statement {columns}")
    return {prefix + name: value for name, value in row.items()}


def _insert_all(
    values: dict[str, Any], events: Sequence[Event], audit: AuditEntry | None
) -> tuple[Select[Any], dict[str, Any]]:
    params = _prefixed("c_", values, _COMMAND_COLUMNS)
    params |= _prefixed("e_", events_row(events), _EVENTS_COLUMNS)
    if audit is None:
        return _INSERT_ALL, params
    return _INSERT_ALL_AUDITED, params | _prefixed("a_", entry_row(audit), _AUDIT_COLUMNS)


class _NoOutbox:
    """No webhooks (stores built without them, as `rdev migrate` does)."""

    def command(self, conn: Connection, event: WebhookEvent, cmd: Command) -> None:
        pass

    def commands(
        self,
        conn: Connection,
        changes: Sequence[tuple[WebhookEvent, Command]],
        *,
        enabled: Sequence[Any] | None = None,
    ) -> None:
        pass

    def command_finished(self, conn: Connection, command_id: str) -> None:
        pass

    def flush(self) -> None:
        pass


def _values(command: Command) -> dict[str, Any]:
    return {
        "id": command.id,
        "project_id": command.project_id,
        "kind": command.kind.value,
        "argv": list(command.argv),
        "status": command.status.value,
        "priority": command.priority.value,
        "priority_rank": command.priority.rank,
        "created_at": command.created_at,
        "timeout_seconds": command.timeout_seconds,
        "key_id": command.key_id,
        "cwd": command.cwd,
        "env": command.env,
        "idempotency_key": command.idempotency_key,
        "request_hash": command.request_hash,
        "cancel_requested": False,
        "output_bytes": 0,
        "truncated": False,
        "on_output_limit": command.on_output_limit.value,
        "started_at": command.started_at,
        "lease_owner": command.lease_owner,
        "lease_expires_at": command.lease_expires_at,
    }


def _started_by(command: Command, start: StartNow) -> Command:
    """A command started at once (in its submission's transaction), leased to `start.owner`."""
    return replace(
        command,
        status=CommandStatus.RUNNING,
        started_at=start.now,
        lease_owner=start.owner,
        lease_expires_at=start.lease_until,
    )


def _ahead_params(command: Command) -> dict[str, Any]:
    return {
        "b_project": command.project_id,
        "b_rank": command.priority.rank,
        "b_created": command.created_at,
        "b_id": command.id,
    }


def _after_latest(command: Command, latest: datetime | None) -> Command:
    """The command stamped after every command of its project: arrival order is then the order
    of acceptance, even when clocks (of this replica, or of two) disagree."""
    if latest is None or command.created_at > latest:
        return command
    return replace(command, created_at=latest + _TICK)


def _at_limit(limit: int | None, running: int) -> bool:
    return limit is None or running >= limit


def _first(result: Any) -> Command | None:
    row = result.first()
    return _row_to_command(row) if row else None


# the rows' columns as _values, events_row and entry_row write them (_prefixed checks)
_COMMAND_COLUMNS = (
    "id", "project_id", "kind", "argv", "status", "priority", "priority_rank", "created_at",
    "timeout_seconds", "key_id", "cwd", "env", "idempotency_key", "request_hash",
    "cancel_requested", "output_bytes", "truncated", "on_output_limit", "started_at",
    "lease_owner", "lease_expires_at",
)  # fmt: skip
_EVENTS_COLUMNS = ("command_id", "seq_start", "seq_end", "body", "created_at")
_AUDIT_COLUMNS = (
    "at", "action", "actor_key_id", "target", "client_ip", "request_id", "outcome", "details",
    "project",
)  # fmt: skip
_INSERT_ALL = _insert_all_statement(audit=False)
_INSERT_ALL_AUDITED = _insert_all_statement(audit=True)
