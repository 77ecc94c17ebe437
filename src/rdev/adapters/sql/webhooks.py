"""Webhooks in SQL: subscriptions, the delivery outbox and the attempt log.

`Outbox.stage` runs inside the transaction of the change it reports (a command queued,
started or finished, a key created or revoked), so a delivery exists exactly when its change
was committed: nothing lost, nothing twice, whichever replica made the change. Any replica's
worker claims due deliveries (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so replicas never wait
on each other's rows; SQLite has one writer anyway) and holds each under a lease while it
sends it; a replica that dies mid-attempt leaves the delivery to be claimed again when the
lease runs out."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, update

from rdev.adapters.sql.db import Database, utc
from rdev.adapters.sql.keys import _row_to_key as row_to_key
from rdev.adapters.sql.tables import api_keys, commands, webhook_attempts, webhook_deliveries
from rdev.adapters.sql.tables import webhooks as webhooks_t
from rdev.domain.errors import InvalidInput
from rdev.domain.models import ApiKey, Command, Page
from rdev.domain.webhooks import (
    Attempt,
    Claimed,
    Delivery,
    DeliveryStatus,
    Occurrence,
    Webhook,
    WebhookEvent,
    envelope,
    new_delivery_id,
    wants,
)

w, d, a = webhooks_t.c, webhook_deliveries.c, webhook_attempts.c
_PENDING = DeliveryStatus.PENDING.value
ENABLED = select(webhooks_t).where(w.enabled.is_(True))
PREFIX_CHARS = 512  # of a receiver's response body, kept per attempt


def _row_to_webhook(row: Any) -> Webhook:
    return Webhook(
        id=row.id,
        owner_key_id=row.owner_key_id,
        url=row.url,
        events=frozenset(WebhookEvent(e) for e in row.events),
        projects=frozenset(row.projects),
        description=row.description,
        enabled=bool(row.enabled),
        created_at=utc(row.created_at),  # type: ignore[arg-type]
        updated_at=utc(row.updated_at),  # type: ignore[arg-type]
        failing_since=utc(row.failing_since),
        disabled_reason=row.disabled_reason,
    )


def _row_to_delivery(row: Any, attempts: Sequence[Attempt] = ()) -> Delivery:
    return Delivery(
        id=row.id,
        webhook_id=row.webhook_id,
        event=WebhookEvent(row.event),
        payload=row.payload,
        status=DeliveryStatus(row.status),
        created_at=utc(row.created_at),  # type: ignore[arg-type]
        next_attempt_at=utc(row.next_attempt_at),
        attempts=tuple(attempts),
    )


def _row_to_attempt(row: Any) -> Attempt:
    return Attempt(
        at=utc(row.at),  # type: ignore[arg-type]
        status_code=row.status_code,
        latency_ms=row.latency_ms,
        error=row.error,
        response_prefix=row.response_prefix,
    )


def command_data(cmd: Command) -> dict[str, Any]:
    data: dict[str, Any] = {
        "command_id": cmd.id,
        "project_id": cmd.project_id,
        "kind": cmd.kind.value,
        "status": cmd.status.value,
        "key_id": cmd.key_id,
        "created_at": cmd.created_at.isoformat(),
    }
    if cmd.started_at is not None:
        data["started_at"] = cmd.started_at.isoformat()
    return data


def _finished_data(row: Any) -> dict[str, Any]:
    started, finished = utc(row.started_at), utc(row.finished_at)
    data: dict[str, Any] = {
        "command_id": row.id,
        "project_id": row.project_id,
        "kind": row.kind,
        "status": row.status,
        "key_id": row.key_id,
        "exit_code": row.exit_code,
        "error": row.error,
        "created_at": utc(row.created_at).isoformat(),  # type: ignore[union-attr]
        "started_at": started.isoformat() if started else None,
        "finished_at": finished.isoformat() if finished else None,
        "duration_seconds": (finished - started).total_seconds() if started and finished else None,
        "output_bytes": int(row.output_bytes or 0),
        "truncated": bool(row.truncated),
    }
    if row.kind == "claude":
        data["claude"] = {
            "session_id": row.claude_session_id,
            "cost_usd": row.claude_cost_usd,
            "num_turns": row.claude_num_turns,
        }
    return data


class Outbox:
    """Adds the deliveries an occurrence calls for, inside the caller's transaction. `flush`
    after the commit wakes this replica's worker (and, through `wake`, the others')."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self._staged = 0
        self.wake: Callable[[], None] = lambda: None

    def stage(self, conn: Connection, what: Occurrence, data: Callable[[], dict[str, Any]]) -> int:
        return self.stage_all(conn, [(what, data)])

    def stage_all(
        self,
        conn: Connection,
        occurrences: Sequence[tuple[Occurrence, Callable[[], dict[str, Any]]]],
        *,
        enabled: Sequence[Any] | None = None,
    ) -> int:
        """The deliveries of several occurrences of one change, reading the webhooks once.
        `enabled`: the rows of `ENABLED`, read already by the change's own statement."""
        if not occurrences:
            return 0
        rows = conn.execute(ENABLED) if enabled is None else enabled
        hooks = [_row_to_webhook(r) for r in rows]
        if not hooks:
            return 0
        now = self._clock()
        owners = _keys(conn, {h.owner_key_id for h in hooks})
        rows = []
        for i, (what, data) in enumerate(occurrences):
            # one change's occurrences (queued, then started) keep their order in each
            # webhook's list and queue: a microsecond apart
            at = now + timedelta(microseconds=i)
            chosen = [h for h in hooks if wants(h, owners.get(h.owner_key_id), what, now)]
            if chosen:
                payload = json.dumps(envelope(what.event, at, data()), separators=(",", ":"))
                rows += [_new_delivery(h.id, what.event, payload, at) for h in chosen]
        if rows:
            conn.execute(insert(webhook_deliveries), rows)
            self._staged += len(rows)
        return len(rows)

    def command(self, conn: Connection, event: WebhookEvent, cmd: Command) -> None:
        self.commands(conn, [(event, cmd)])

    def commands(
        self,
        conn: Connection,
        changes: Sequence[tuple[WebhookEvent, Command]],
        *,
        enabled: Sequence[Any] | None = None,
    ) -> None:
        self.stage_all(
            conn,
            [
                (Occurrence(event, project=cmd.project_id), partial(command_data, cmd))
                for event, cmd in changes
            ],
            enabled=enabled,
        )

    def command_finished(self, conn: Connection, command_id: str) -> None:
        row = conn.execute(select(commands).where(commands.c.id == command_id)).first()
        if row is None:
            return
        self.stage(
            conn,
            Occurrence(WebhookEvent.COMMAND_COMPLETED, project=row.project_id),
            lambda: _finished_data(row),
        )
        if row.truncated:
            self.stage(
                conn,
                Occurrence(WebhookEvent.COMMAND_OUTPUT_TRUNCATED, project=row.project_id),
                lambda: _finished_data(row),
            )

    def key(self, conn: Connection, event: WebhookEvent, key: ApiKey) -> None:
        self.stage(
            conn,
            Occurrence(event, subject=key),
            lambda: {
                "key_id": key.id,
                "name": key.name,
                "scopes": sorted(key.scopes),
                "projects": sorted(key.projects),
                "created_by": key.created_by,
            },
        )

    def added(self) -> None:
        """A delivery was added outside a staged change (a ping, a redelivery): wake up."""
        self._staged += 1
        self.flush()

    def flush(self) -> None:
        if self._staged:
            self._staged = 0
            self.wake()


def _keys(conn: Connection, ids: set[str]) -> dict[str, ApiKey]:
    rows = conn.execute(select(api_keys).where(api_keys.c.id.in_(sorted(ids))))
    return {r.id: row_to_key(r) for r in rows}


def _new_delivery(
    webhook_id: str, event: WebhookEvent, payload: str, now: datetime
) -> dict[str, Any]:
    return {
        "id": new_delivery_id(),
        "webhook_id": webhook_id,
        "event": event.value,
        "payload": payload,
        "status": _PENDING,
        "created_at": now,
        "next_attempt_at": now,
        "attempts": 0,
        "schedule_from": 0,
    }


def _encode_cursor(item: Delivery) -> str:
    raw = f"{item.created_at.isoformat()}|{item.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, did = raw.split("|", 1)
        return datetime.fromisoformat(stamp), did
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidInput("cursor is invalid", details={"field": "cursor"}) from e


class SqlWebhookStore:
    def __init__(self, db: Database, outbox: Outbox) -> None:
        self._db = db
        self.outbox = outbox

    async def add(self, hook: Webhook, secret: str) -> None:
        row = {**_webhook_values(hook), "id": hook.id, "secret": secret}
        await self._db.write(lambda conn: conn.execute(insert(webhooks_t), row))

    async def get(self, webhook_id: str) -> Webhook | None:
        q = select(webhooks_t).where(w.id == webhook_id)
        row = await self._db.read(lambda conn: conn.execute(q).first())
        return _row_to_webhook(row) if row else None

    async def all(self) -> list[Webhook]:
        q = select(webhooks_t).order_by(w.created_at.desc(), w.id.desc())
        return await self._db.read(lambda conn: [_row_to_webhook(r) for r in conn.execute(q)])

    async def update(self, hook: Webhook) -> None:
        q = update(webhooks_t).where(w.id == hook.id).values(**_webhook_values(hook))
        await self._db.write(lambda conn: conn.execute(q))

    async def set_secret(self, webhook_id: str, secret: str) -> None:
        q = update(webhooks_t).where(w.id == webhook_id).values(secret=secret)
        await self._db.write(lambda conn: conn.execute(q))

    async def delete(self, webhook_id: str) -> None:
        def delete_(conn: Connection) -> None:
            ids = select(d.id).where(d.webhook_id == webhook_id).scalar_subquery()
            conn.execute(delete(webhook_attempts).where(a.delivery_id.in_(ids)))
            conn.execute(delete(webhook_deliveries).where(d.webhook_id == webhook_id))
            conn.execute(delete(webhooks_t).where(w.id == webhook_id))

        await self._db.write(delete_)

    async def add_delivery(self, webhook_id: str, event: WebhookEvent, payload: str) -> Delivery:
        row = _new_delivery(webhook_id, event, payload, self._now())
        await self._db.write(lambda conn: conn.execute(insert(webhook_deliveries), row))
        self.outbox.added()
        return Delivery(
            id=row["id"],
            webhook_id=webhook_id,
            event=event,
            payload=payload,
            status=DeliveryStatus.PENDING,
            created_at=row["created_at"],
            next_attempt_at=row["next_attempt_at"],
        )

    async def deliveries(
        self, webhook_id: str, *, cursor: str | None, limit: int
    ) -> Page[Delivery]:
        q = (
            select(webhook_deliveries)
            .where(d.webhook_id == webhook_id)
            .order_by(d.created_at.desc(), d.id.desc())
            .limit(limit + 1)
        )
        if cursor:
            stamp, did = _decode_cursor(cursor)
            q = q.where(or_(d.created_at < stamp, and_(d.created_at == stamp, d.id < did)))

        def read(conn: Connection) -> list[Delivery]:
            rows = list(conn.execute(q))
            return [_row_to_delivery(r, _attempts(conn, r.id)) for r in rows]

        items = await self._db.read(read)
        more = len(items) > limit
        items = items[:limit]
        return Page(items=items, next_cursor=_encode_cursor(items[-1]) if more else None)

    async def delivery(self, webhook_id: str, delivery_id: str) -> Delivery | None:
        q = select(webhook_deliveries).where(d.id == delivery_id, d.webhook_id == webhook_id)

        def read(conn: Connection) -> Delivery | None:
            row = conn.execute(q).first()
            return _row_to_delivery(row, _attempts(conn, row.id)) if row else None

        return await self._db.read(read)

    async def redeliver(self, webhook_id: str, delivery_id: str) -> bool:
        """Send it again from the start of the schedule, with the same id and body."""
        q = (
            update(webhook_deliveries)
            .where(d.id == delivery_id, d.webhook_id == webhook_id)
            .values(
                status=_PENDING,
                next_attempt_at=self._now(),
                schedule_from=d.attempts,
                lease_owner=None,
                lease_until=None,
            )
        )
        done = await self._db.write(lambda conn: conn.execute(q).rowcount == 1)
        if done:
            self.outbox.added()
        return done

    async def claim(self, *, owner: str, lease_until: datetime, limit: int) -> list[Claimed]:
        now = self._now()
        sqlite = self._db.is_sqlite

        def claim(conn: Connection) -> list[Claimed]:
            due = (
                select(d.id)
                .join(webhooks_t, w.id == d.webhook_id)
                .where(
                    d.status == _PENDING,
                    d.next_attempt_at <= now,
                    or_(d.lease_until.is_(None), d.lease_until < now),
                    w.enabled.is_(True),
                )
                .order_by(d.next_attempt_at)
                .limit(limit)
            )
            if not sqlite:
                due = due.with_for_update(skip_locked=True, of=webhook_deliveries)
            ids = [r.id for r in conn.execute(due)]
            if not ids:
                return []
            conn.execute(
                update(webhook_deliveries)
                .where(d.id.in_(ids))
                .values(lease_owner=owner, lease_until=lease_until)
            )
            rows = conn.execute(
                select(webhook_deliveries, w.url, w.secret)
                .join(webhooks_t, w.id == d.webhook_id)
                .where(d.id.in_(ids))
            )
            return [
                Claimed(_row_to_delivery(r), r.url, r.secret, r.attempts - r.schedule_from + 1)
                for r in rows
            ]

        return await self._db.write(claim)

    async def record(
        self,
        claimed: Claimed,
        attempt: Attempt,
        *,
        owner: str,
        succeeded: bool,
        next_at: datetime | None,
        disable_after: timedelta,
    ) -> bool:
        """Log one attempt and its outcome; True when the webhook was disabled just now for
        failing longer than `disable_after`."""
        delivery = claimed.delivery
        status = (
            DeliveryStatus.SUCCEEDED
            if succeeded
            else DeliveryStatus.PENDING
            if next_at is not None
            else DeliveryStatus.FAILED
        )

        def record(conn: Connection) -> bool:
            mine = conn.execute(
                update(webhook_deliveries)
                .where(d.id == delivery.id, d.lease_owner == owner)
                .values(
                    attempts=d.attempts + 1,
                    status=status.value,
                    next_attempt_at=next_at,
                    lease_owner=None,
                    lease_until=None,
                )
                .returning(d.attempts)
            ).first()
            if mine is None:
                return False  # the lease ran out and another replica has it now
            conn.execute(
                insert(webhook_attempts),
                {"delivery_id": delivery.id, "n": mine.attempts, **_attempt_values(attempt)},
            )
            return _webhook_health(conn, delivery.webhook_id, succeeded, attempt.at, disable_after)

        return await self._db.write(record)

    async def next_due(self) -> datetime | None:
        """When the next delivery that nobody holds falls due (deliveries in flight, and
        those of disabled webhooks, would otherwise look due at once, every time)."""
        now = self._now()
        q = (
            select(func.min(d.next_attempt_at))
            .join(webhooks_t, w.id == d.webhook_id)
            .where(
                d.status == _PENDING,
                or_(d.lease_until.is_(None), d.lease_until < now),
                w.enabled.is_(True),
            )
        )
        return await self._db.read(lambda conn: utc(conn.execute(q).scalar()))

    def _now(self) -> datetime:
        return self.outbox._clock()


def _webhook_health(
    conn: Connection, webhook_id: str, succeeded: bool, at: datetime, disable_after: timedelta
) -> bool:
    if succeeded:
        conn.execute(update(webhooks_t).where(w.id == webhook_id).values(failing_since=None))
        return False
    conn.execute(
        update(webhooks_t)
        .where(w.id == webhook_id, w.failing_since.is_(None))
        .values(failing_since=at)
    )
    disabled = conn.execute(
        update(webhooks_t)
        .where(w.id == webhook_id, w.enabled.is_(True), w.failing_since <= at - disable_after)
        .values(enabled=False, disabled_reason="failing", updated_at=at)
    )
    return bool(disabled.rowcount == 1)


def _attempts(conn: Connection, delivery_id: str) -> list[Attempt]:
    q = select(webhook_attempts).where(a.delivery_id == delivery_id).order_by(a.n)
    return [_row_to_attempt(r) for r in conn.execute(q)]


def _attempt_values(attempt: Attempt) -> dict[str, Any]:
    return {
        "at": attempt.at,
        "status_code": attempt.status_code,
        "latency_ms": attempt.latency_ms,
        "error": attempt.error,
        "response_prefix": attempt.response_prefix[:PREFIX_CHARS],
    }


def _webhook_values(hook: Webhook) -> dict[str, Any]:
    return {
        "owner_key_id": hook.owner_key_id,
        "url": hook.url,
        "events": sorted(hook.events),
        "projects": sorted(hook.projects),
        "description": hook.description,
        "enabled": hook.enabled,
        "disabled_reason": hook.disabled_reason,
        "failing_since": hook.failing_since,
        "created_at": hook.created_at,
        "updated_at": hook.updated_at,
    }
