"""Claude usage in SQL: a finished run's figures on its command row (`claude_usage` JSON, read
back as the next run's baseline) and its own cost and tokens in `claude_usage`, one row per
model and UTC day, summed with `GROUP BY day, model` behind an index on (project_id, day) or
(key_id, day), on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, select

from rdev.adapters.sql.db import Database
from rdev.adapters.sql.tables import claude_usage, commands
from rdev.domain.models import ClaudeResult
from rdev.domain.usage import ModelUsage, Reported, RunUsage, Tokens, UsageRow
from rdev.ports import UsageQuery

u = claude_usage.c
c = commands.c


def _model(m: ModelUsage) -> list[Any]:
    t = m.tokens
    return [m.model, m.cost_usd, t.input, t.output, t.cache_read, t.cache_creation]


def _unmodel(row: Any) -> ModelUsage:
    return ModelUsage(str(row[0]), float(row[1]), Tokens(*(int(x) for x in row[2:6])))


def usage_json(claude: ClaudeResult) -> dict[str, Any] | None:
    """What the command row keeps: the reported figures (a later run's baseline) and the run's
    own per-model usage (shown by `GET /commands/{id}`)."""
    if claude.reported is None or claude.usage is None:
        return None
    run = claude.reported.run_tokens
    return {
        "reported": [_model(m) for m in claude.reported.models],
        "run_tokens": None
        if run is None
        else [run.input, run.output, run.cache_read, run.cache_creation],
        "models": [_model(m) for m in claude.usage.models],
    }


def from_json(
    data: dict[str, Any] | None, cumulative: float | None, run_cost: float | None
) -> tuple[Reported | None, RunUsage | None]:
    if not data:
        return None, None
    tokens = data.get("run_tokens")
    reported = Reported(
        cumulative,
        tuple(_unmodel(m) for m in data.get("reported") or ()),
        Tokens(*tokens) if tokens else None,
    )
    models = tuple(_unmodel(m) for m in data.get("models") or ())
    return reported, RunUsage(run_cost or 0.0, models)


def insert_usage(conn: Connection, command_id: str, usage: RunUsage, finished_at: datetime) -> None:
    """The run's rows, in the transaction that finishes its command."""
    if not usage.models:
        return
    row = conn.execute(select(c.project_id, c.key_id).where(c.id == command_id)).one()
    day = finished_at.astimezone(UTC).date()
    conn.execute(
        claude_usage.insert(),
        [
            {
                "command_id": command_id,
                "model": m.model,
                "project_id": row.project_id,
                "key_id": row.key_id,
                "day": day,
                "cost_usd": m.cost_usd,
                "input_tokens": m.tokens.input,
                "output_tokens": m.tokens.output,
                "cache_read_tokens": m.tokens.cache_read,
                "cache_creation_tokens": m.tokens.cache_creation,
            }
            for m in usage.models
        ],
    )


_BASELINE = (
    select(c.claude_cost_usd, c.claude_usage)
    .where(
        c.project_id == bindparam("b_project"),
        c.claude_session_id == bindparam("b_session"),
        c.finished_at < bindparam("b_before"),
        c.claude_cost_usd.is_not(None),
    )
    .order_by(c.finished_at.desc())
    .limit(1)
)


def baseline(
    conn: Connection, project_id: str, session_id: str, before: datetime
) -> Reported | None:
    params = {"b_project": project_id, "b_session": session_id, "b_before": before}
    row = conn.execute(_BASELINE, params).first()
    if row is None:
        return None
    reported, _ = from_json(row.claude_usage, row.claude_cost_usd, None)
    return reported or Reported(row.claude_cost_usd)


_SUMS = (
    func.sum(u.cost_usd),
    func.sum(u.input_tokens),
    func.sum(u.output_tokens),
    func.sum(u.cache_read_tokens),
    func.sum(u.cache_creation_tokens),
    func.count(func.distinct(u.command_id)),
)


class SqlUsageStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def daily(self, query: UsageQuery) -> list[UsageRow]:
        q = (
            select(u.day, u.model, *_SUMS)
            .where(u.day >= query.first, u.day <= query.last)
            .group_by(u.day, u.model)
            .order_by(u.day, u.model)
        )
        if query.project_id is not None:
            q = q.where(u.project_id == query.project_id)
        if query.key_id is not None:
            q = q.where(u.key_id == query.key_id)
        if query.projects is not None:
            q = q.where(u.project_id.in_(sorted(query.projects)))

        def read(conn: Connection) -> list[UsageRow]:
            return [
                UsageRow(
                    _day(r[0]),
                    r[1],
                    float(r[2] or 0),
                    Tokens(*(int(x or 0) for x in r[3:7])),
                    int(r[7]),
                )
                for r in conn.execute(q)
            ]

        return await self._db.read(read)

    async def spent(
        self, day: date, *, key_id: str | None = None, project_id: str | None = None
    ) -> float:
        q = select(func.coalesce(func.sum(u.cost_usd), 0.0)).where(u.day == day)
        if key_id is not None:
            q = q.where(u.key_id == key_id)
        if project_id is not None:
            q = q.where(u.project_id == project_id)
        return await self._db.read(lambda conn: float(conn.execute(q).scalar_one()))


def _day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))
