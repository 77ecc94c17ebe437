"""Claude usage reports and daily budgets.

Reports sum the runs' own cost and tokens (domain/usage.py) per UTC day and model, for a project
the reader's key is granted, or for a key: the reader's own, or one its authority covers
(domain/authority.py, the rule of key administration), and then only over the projects the
reader is granted.

A budget counts today's (UTC) spend of *finished* runs. A new Claude command is refused once
the key's or the project's spend has reached its budget; runs already queued or running are
not stopped, so a budget can be overshot by at most what those runs cost (a request's
`max_budget_usd` bounds each). Nothing is reserved: a run's cost is not known in advance."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from rdev.domain.errors import BudgetExceeded, InvalidInput, NotFound
from rdev.domain.models import ApiKey, Scope
from rdev.domain.usage import UsageRow
from rdev.ports import Backend, UsageQuery, UsageStore
from rdev.services.keys import KeyService

MAX_DAYS = 366  # the longest range one report covers
DEFAULT_DAYS = 30


@dataclass(frozen=True, slots=True)
class Report:
    first: date
    last: date
    rows: list[UsageRow]


class UsageService:
    def __init__(
        self,
        *,
        store: UsageStore,
        keys: KeyService,
        backend: Backend,
        clock: Callable[[], datetime],
        key_daily_usd: float | None = None,
        project_daily_usd: float | None = None,
    ) -> None:
        self._store = store
        self._keys = keys
        self._backend = backend
        self._clock = clock
        self._key_daily = key_daily_usd
        self._project_daily = project_daily_usd

    def _range(self, first: date | None, last: date | None) -> tuple[date, date]:
        last = last or self._clock().astimezone(UTC).date()
        first = first or last - timedelta(days=DEFAULT_DAYS - 1)
        if first > last:
            raise InvalidInput("from must not be after to", details={"field": "from"})
        if (last - first).days + 1 > MAX_DAYS:
            raise InvalidInput(
                f"a report covers at most {MAX_DAYS} days", details={"field": "from"}
            )
        return first, last

    async def for_project(
        self, reader: ApiKey, project_id: str, *, first: date | None, last: date | None
    ) -> Report:
        if not reader.may_see(project_id):
            raise NotFound(f"project {project_id} not found")
        first, last = self._range(first, last)
        rows = await self._store.daily(UsageQuery(first, last, project_id=project_id))
        return Report(first, last, rows)

    async def for_key(
        self, reader: ApiKey, key_id: str, *, first: date | None, last: date | None
    ) -> Report:
        if key_id != reader.id:
            if not reader.has_scope(Scope.KEYS_ADMIN):
                raise NotFound(f"key {key_id} not found")
            await self._keys.get(key_id, by=reader)  # NotFound beyond its authority
        first, last = self._range(first, last)
        grant = reader.projects or None  # an unrestricted reader sees every project
        query = UsageQuery(first, last, key_id=key_id, projects=grant)
        return Report(first, last, await self._store.daily(query))

    async def check_budget(self, key: ApiKey, project_id: str) -> None:
        """BudgetExceeded (429) when the key's or the project's Claude spend today has reached
        its daily budget; it names the budget, and resets at the next UTC midnight."""
        now = self._clock().astimezone(UTC)
        today = now.date()
        key_budget = key.daily_budget_usd or self._key_daily
        if key_budget is not None:
            spent = await self._store.spent(today, key_id=key.id)
            if spent >= key_budget:
                raise _exceeded("key", key.id, key_budget, spent, now)
        project = await self._backend.get_project(project_id)
        budget = project.daily_budget_usd or self._project_daily
        if budget is not None:
            spent = await self._store.spent(today, project_id=project_id)
            if spent >= budget:
                raise _exceeded("project", project_id, budget, spent, now)


def _exceeded(kind: str, name: str, budget: float, spent: float, now: datetime) -> BudgetExceeded:
    resets = datetime.combine(now.date() + timedelta(days=1), time(), tzinfo=UTC)
    return BudgetExceeded(
        f"the daily Claude budget of {kind} {name} (${budget:g}) is spent "
        f"(${spent:.4f} today); it resets at {resets.isoformat()}",
        retry_after=max(1.0, (resets - now).total_seconds()),
        details={
            "budget": kind,
            kind: name,
            "limit_usd": budget,
            "spent_usd": spent,
            "resets_at": resets.isoformat().replace("+00:00", "Z"),
        },
    )
