"""Webhook domain rules: the retry schedule and who receives which event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rdev.domain.models import ApiKey, Scope
from rdev.domain.webhooks import Occurrence, RetrySchedule, Webhook, WebhookEvent, wants

NOW = datetime(2026, 11, 27, tzinfo=UTC)


def test_default_schedule_is_exponential_and_spans_about_a_day() -> None:
    s = RetrySchedule()
    delays = [s.delay(n, rand=lambda: 0.5) for n in range(1, s.attempts)]
    assert delays[:4] == [10.0, 30.0, 90.0, 270.0]
    assert all(d is not None for d in delays)
    assert s.delay(s.attempts, rand=lambda: 0.5) is None  # the last attempt: give up
    assert 18 * 3600 <= s.span() <= 30 * 3600


@pytest.mark.parametrize("attempt", [1, 2, 5, 9])
def test_jitter_stays_within_its_band(attempt: int) -> None:
    s = RetrySchedule(jitter=0.2)
    base = s.delay(attempt, rand=lambda: 0.5)
    assert base is not None
    low, high = s.delay(attempt, rand=lambda: 0.0), s.delay(attempt, rand=lambda: 0.999999)
    assert low == pytest.approx(base * 0.8) and high == pytest.approx(base * 1.2, rel=1e-5)


def test_the_cap_bounds_every_delay() -> None:
    s = RetrySchedule(attempts=30, first_seconds=1, factor=10, cap_seconds=60, jitter=0)
    assert max(s.delay(n) or 0 for n in range(1, 30)) == 60


def key(kid: str, *scopes: Scope, projects: frozenset[str] = frozenset(), **kw: object) -> ApiKey:
    return ApiKey(
        id=kid,
        name=kid,
        secret_hash="x",
        scopes=frozenset(scopes),
        created_at=NOW,
        projects=projects,
        **kw,  # type: ignore[arg-type]
    )


def hook(owner: str, *events: WebhookEvent, projects: frozenset[str] = frozenset()) -> Webhook:
    return Webhook(
        id="wh_1",
        owner_key_id=owner,
        url="https://example.com",
        events=frozenset(events),
        projects=projects,
        description="",
        enabled=True,
        created_at=NOW,
        updated_at=NOW,
    )


Q = WebhookEvent.COMMAND_QUEUED


def test_command_events_only_within_the_owner_grants_and_the_filter() -> None:
    owner = key("o", Scope.WEBHOOKS_MANAGE, projects=frozenset({"a", "b"}))
    assert wants(hook("o", Q), owner, Occurrence(Q, project="a"), NOW)
    assert not wants(hook("o", Q), owner, Occurrence(Q, project="c"), NOW)
    filtered = hook("o", Q, projects=frozenset({"b"}))
    assert not wants(filtered, owner, Occurrence(Q, project="a"), NOW)
    assert wants(filtered, owner, Occurrence(Q, project="b"), NOW)
    assert not wants(hook("o", WebhookEvent.COMMAND_STARTED), owner, Occurrence(Q, "a"), NOW)


def test_no_events_for_a_revoked_or_expired_or_missing_owner() -> None:
    what = Occurrence(Q, project="a")
    assert not wants(hook("o", Q), None, what, NOW)
    assert not wants(hook("o", Q), key("o", Scope.ADMIN, revoked_at=NOW), what, NOW)
    expired = key("o", Scope.ADMIN, expires_at=NOW - timedelta(seconds=1))
    assert not wants(hook("o", Q), expired, what, NOW)


def test_key_events_only_for_keys_the_owner_covers() -> None:
    created = WebhookEvent.KEY_CREATED
    owner = key("o", Scope.WEBHOOKS_MANAGE, Scope.PROJECTS_READ, projects=frozenset({"a"}))
    inside = key("k1", Scope.PROJECTS_READ, projects=frozenset({"a"}))
    wider = key("k2", Scope.PROJECTS_READ)  # every project
    stronger = key("k3", Scope.ADMIN, projects=frozenset({"a"}))
    assert wants(hook("o", created), owner, Occurrence(created, subject=inside), NOW)
    assert not wants(hook("o", created), owner, Occurrence(created, subject=wider), NOW)
    assert not wants(hook("o", created), owner, Occurrence(created, subject=stronger), NOW)
    admin = key("a", Scope.ADMIN)
    assert wants(hook("a", created), admin, Occurrence(created, subject=stronger), NOW)
