"""Whether one key's authority covers another's: the rule behind key administration.

A key may mint, rotate, revoke, list and read only keys that can do nothing it cannot do
itself. Authority has four dimensions, and the other key must fit inside the holder's in each:

- scopes: every scope of the other key is one the holder has (`admin` counts as every scope,
  and only `admin` covers `admin`, which also stands for scopes added later);
- projects: a holder granted some projects covers only keys granted a subset of them (never
  an unrestricted key); an unrestricted holder covers any grant;
- client IPs: a holder with an allow-list covers only keys whose every network lies inside
  its own (as one merged set of addresses); a holder without one covers any list;
- expiry: a holder that expires covers only keys that expire no later; one that never
  expires covers any expiry.

`excess` names the first dimension where the other key reaches further, as the details of the
403 a client sees; `covers` is its yes/no twin."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rdev.domain.models import ApiKey, Scope

ANY = "*"  # in a refusal's details: "every project" or "any address"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Excess:
    """Where another key reaches beyond the holder's authority: `reason` is the dimension
    (`scope`, `project`, `allowed_ips`, `expires_at`), `value` the part that is too much."""

    reason: str
    value: str

    @property
    def details(self) -> dict[str, Any]:
        field = {"allowed_ips": "network", "expires_at": "not_after"}.get(self.reason, self.reason)
        return {"reason": self.reason, field: self.value}

    @property
    def message(self) -> str:
        return {
            "scope": f"this key cannot grant the scope {self.value}",
            "project": "this key cannot grant every project"
            if self.value == ANY
            else f"this key cannot grant the project {self.value}",
            "allowed_ips": "this key cannot grant access from any address"
            if self.value == ANY
            else f"this key cannot grant access from {self.value}",
            "expires_at": f"a key made by this key must expire by {self.value}",
        }[self.reason]


def excess(holder: ApiKey, other: ApiKey) -> Excess | None:
    """The first way `other` reaches beyond `holder`'s authority, or None when it does not."""
    return (
        _scope_excess(holder, other)
        or _project_excess(holder, other)
        or _ip_excess(holder, other)
        or _expiry_excess(holder.expires_at, other.expires_at)
    )


def covers(holder: ApiKey, other: ApiKey) -> bool:
    return excess(holder, other) is None


def _scope_excess(holder: ApiKey, other: ApiKey) -> Excess | None:
    # `admin` first: a key that grants admin is refused for admin, the scope that matters
    for scope in sorted(other.scopes, key=lambda s: (s is not Scope.ADMIN, s.value)):
        if not holder.has_scope(scope):
            return Excess("scope", scope.value)
    return None


def _project_excess(holder: ApiKey, other: ApiKey) -> Excess | None:
    if not holder.projects:
        return None
    if not other.projects:
        return Excess("project", ANY)
    extra = sorted(other.projects - holder.projects)
    return Excess("project", extra[0]) if extra else None


def _ip_excess(holder: ApiKey, other: ApiKey) -> Excess | None:
    if not holder.allowed_ips:
        return None
    if not other.allowed_ips:
        return Excess("allowed_ips", ANY)
    mine = _merged(holder.allowed_ips)
    for cidr in other.allowed_ips:
        network = ipaddress.ip_network(cidr, strict=False)
        if not any(_subnet_of(network, own) for own in mine):
            return Excess("allowed_ips", str(network))
    return None


def _merged(cidrs: tuple[str, ...]) -> list[Network]:
    """The holder's networks merged, so a network spanning two adjacent ones still fits."""
    nets = [ipaddress.ip_network(c, strict=False) for c in cidrs]
    v4 = [n for n in nets if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in nets if isinstance(n, ipaddress.IPv6Network)]
    return [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]


def _subnet_of(inner: Network, outer: Network) -> bool:
    # different IP versions never cover each other (an IPv4-mapped IPv6 network included)
    if isinstance(inner, ipaddress.IPv4Network) and isinstance(outer, ipaddress.IPv4Network):
        return inner.subnet_of(outer)
    if isinstance(inner, ipaddress.IPv6Network) and isinstance(outer, ipaddress.IPv6Network):
        return inner.subnet_of(outer)
    return False


def _expiry_excess(holder: datetime | None, other: datetime | None) -> Excess | None:
    if holder is None or (other is not None and other <= holder):
        return None
    return Excess("expires_at", holder.isoformat())
