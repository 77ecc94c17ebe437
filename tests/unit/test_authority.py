"""The authority rule: one key covers another exactly when the other can do nothing the first
cannot. Checked against that meaning itself (every scope, project, client address and moment
of a small universe), not only against the cases that were reported."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from itertools import product

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rdev.domain import policy
from rdev.domain.authority import ANY, Excess, covers, excess
from rdev.domain.models import ApiKey, Scope

T0 = datetime(2031, 1, 1, tzinfo=UTC)
PROJECTS = ("a", "b", "c")
NETWORKS = (
    "10.0.0.0/24", "10.0.0.0/25", "10.0.0.128/25", "10.0.0.0/26", "10.0.0.64/26",
    "10.0.0.7/32", "10.0.0.200/32", "2001:db8::/120", "2001:db8::/121", "2001:db8::80/121",
    "2001:db8::5/128",
)  # fmt: skip
EXPIRIES = (None, T0, T0 + timedelta(days=1), T0 + timedelta(days=2))

# the universe probed: "d" is a project no key names; the addresses are every one the pool's
# networks hold plus one outside each; the moments bracket every expiry
PROBE_PROJECTS = (*PROJECTS, "d")
PROBE_IPS = (
    *(str(ip) for ip in ipaddress.ip_network("10.0.0.0/24")),
    *(str(ip) for ip in ipaddress.ip_network("2001:db8::/120")),
    "192.0.2.1",
    "2001:db8:1::1",
)
PROBE_TIMES = (T0 - timedelta(days=1), *(e for e in EXPIRIES if e), T0 + timedelta(days=9))


def key(
    scopes: tuple[str, ...] = ("admin",),
    projects: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    expires_at: datetime | None = None,
) -> ApiKey:
    return ApiKey(
        id="k",
        name="k",
        secret_hash="0" * 64,
        scopes=policy.parse_scopes(scopes),
        created_at=T0 - timedelta(days=30),
        projects=frozenset(projects),
        allowed_ips=policy.parse_cidrs(ips),
        expires_at=expires_at,
    )


keys = st.builds(
    key,
    scopes=st.sets(st.sampled_from([s.value for s in Scope]), min_size=1).map(tuple),
    projects=st.sets(st.sampled_from(PROJECTS)).map(tuple),
    ips=st.sets(st.sampled_from(NETWORKS), max_size=3).map(tuple),
    expires_at=st.sampled_from(EXPIRIES),
)


def alive(k: ApiKey, at: datetime) -> bool:
    return k.expires_at is None or at < k.expires_at


def reaches_no_further(holder: ApiKey, other: ApiKey) -> bool:
    """The meaning of `covers`, by brute force over the universe: in each dimension, whatever
    the other key allows the holder allows too. (A key allows something in every dimension,
    so the dimensions can be checked apart.)"""
    return (
        all(holder.has_scope(s) for s in Scope if other.has_scope(s))
        and all(holder.may_see(p) for p in PROBE_PROJECTS if other.may_see(p))
        and all(
            policy.ip_allowed(ip, holder.allowed_ips)
            for ip in PROBE_IPS
            if policy.ip_allowed(ip, other.allowed_ips)
        )
        and all(alive(holder, t) for t in PROBE_TIMES if alive(other, t))
    )


# the rule means what it says


@settings(max_examples=400, deadline=None)
@given(keys, keys)
def test_covers_is_exactly_reaching_no_further(holder: ApiKey, other: ApiKey) -> None:
    assert covers(holder, other) == reaches_no_further(holder, other)


@settings(max_examples=300, deadline=None)
@given(keys, keys)
def test_a_refusal_names_something_the_other_key_may_do_and_the_holder_may_not(
    holder: ApiKey, other: ApiKey
) -> None:
    found = excess(holder, other)
    if found is None:
        return
    if found.reason == "scope":
        scope = Scope(found.value)
        assert other.has_scope(scope) and not holder.has_scope(scope)
    elif found.reason == "project":
        witness = "d" if found.value == ANY else found.value
        assert other.may_see(witness) and not holder.may_see(witness)
    elif found.reason == "allowed_ips":
        everywhere = found.value == ANY
        candidates = PROBE_IPS if everywhere else tuple(map(str, ipaddress.ip_network(found.value)))
        assert any(
            policy.ip_allowed(ip, other.allowed_ips)
            and not policy.ip_allowed(ip, holder.allowed_ips)
            for ip in candidates
        )
    else:
        assert found.reason == "expires_at"
        assert holder.expires_at is not None
        assert found.value == holder.expires_at.isoformat()
        assert alive(other, holder.expires_at) and not alive(holder, holder.expires_at)


@given(keys)
def test_every_key_covers_itself(k: ApiKey) -> None:
    assert covers(k, k)


@settings(max_examples=300, deadline=None)
@given(keys, keys, keys)
def test_covering_is_transitive(a: ApiKey, b: ApiKey, c: ApiKey) -> None:
    if covers(a, b) and covers(b, c):
        assert covers(a, c)


@given(keys)
def test_an_unrestricted_admin_covers_every_key(other: ApiKey) -> None:
    assert covers(key(("admin",)), other)


@given(keys)
def test_only_admin_covers_admin(holder: ApiKey) -> None:
    found = excess(holder, key(("admin",), holder.projects, holder.allowed_ips, holder.expires_at))  # type: ignore[arg-type]
    assert (found is None) == (Scope.ADMIN in holder.scopes)


# the reported findings, and the shape of a refusal


ALL_BUT_ADMIN = tuple(s.value for s in Scope if s is not Scope.ADMIN)


@pytest.mark.parametrize(
    ("holder", "other", "details"),
    [
        # issue #8: an admin granted project a made an admin for every project
        (key(("admin",), ("a",)), key(("admin",)), {"reason": "project", "project": ANY}),
        # issue #8: keys:admin alone made an admin
        (key(("keys:admin",)), key(("admin",)), {"reason": "scope", "scope": "admin"}),
        (key(ALL_BUT_ADMIN), key(("admin",)), {"reason": "scope", "scope": "admin"}),
        (key(("keys:admin",)), key(("keys:admin", "commands:shell")),
         {"reason": "scope", "scope": "commands:shell"}),
        (key(("admin",), ("a",)), key(("projects:read",), ("a", "b")),
         {"reason": "project", "project": "b"}),
        (key(("admin",), ("a", "b")), key(("projects:read",), ("c",)),
         {"reason": "project", "project": "c"}),
        (key(ips=("10.0.0.0/24",)), key(), {"reason": "allowed_ips", "network": ANY}),
        (key(ips=("10.0.0.0/25",)), key(ips=("10.0.0.0/24",)),
         {"reason": "allowed_ips", "network": "10.0.0.0/24"}),
        (key(ips=("10.0.0.0/24",)), key(ips=("10.0.0.0/25", "2001:db8::/120")),
         {"reason": "allowed_ips", "network": "2001:db8::/120"}),
        (key(ips=("10.0.0.0/24",)), key(ips=("::ffff:10.0.0.0/120",)),
         {"reason": "allowed_ips", "network": "::ffff:a00:0/120"}),
        (key(expires_at=T0), key(), {"reason": "expires_at", "not_after": T0.isoformat()}),
        (key(expires_at=T0), key(expires_at=T0 + timedelta(microseconds=1)),
         {"reason": "expires_at", "not_after": T0.isoformat()}),
    ],
)  # fmt: skip
def test_refusals(holder: ApiKey, other: ApiKey, details: dict[str, str]) -> None:
    found = excess(holder, other)
    assert found is not None
    assert found.details == details
    assert found.message


@pytest.mark.parametrize(
    ("holder", "other"),
    [
        (key(("admin",)), key(("admin",), ("a",), ("10.0.0.7",), T0)),
        (key(("admin",), ("a", "b")), key(("admin",), ("b",))),
        (key(("keys:admin", "projects:read")), key(("projects:read",))),
        (key(("keys:admin",)), key(("keys:admin",))),
        (key(ips=("10.0.0.0/25", "10.0.0.128/25")), key(ips=("10.0.0.0/24",))),
        (key(ips=("10.0.0.0/24", "2001:db8::/120")), key(ips=("10.0.0.7", "2001:db8::5"))),
        (key(expires_at=T0), key(expires_at=T0)),
        (key(expires_at=T0), key(expires_at=T0 - timedelta(days=1))),
    ],
)
def test_within_authority(holder: ApiKey, other: ApiKey) -> None:
    assert excess(holder, other) is None


def test_the_first_refusal_is_deterministic() -> None:
    holder = key(("keys:admin",), ("a",), ("10.0.0.0/24",), T0)
    other = key(("projects:read", "commands:shell", "admin"), ("b",), (), None)
    assert excess(holder, other) == Excess("scope", "admin")
    for scopes, projects in product((("keys:admin",),), (("b",), ())):
        found = excess(holder, key(scopes, projects))
        assert found is not None and found.reason == "project"
