"""The SSRF policy for webhook URLs: which URLs may be called and which addresses connected to.

An allow-list, not a deny-list: an address is allowed when an operator's CIDR
(`RDEV_WEBHOOK_ALLOWED_CIDRS`) contains it, or else when it is globally routable
(`ipaddress`'s `is_global`) and not multicast. IPv6 forms that carry an IPv4 address
(IPv4-mapped, IPv4-compatible, 6to4, NAT64) are always refused, named by the class of the
address they carry. The
check is made on the address actually connected to (see adapters/webhooks/transport.py), so a
name that resolves differently later (DNS rebinding) cannot pass."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from rdev.domain.errors import WebhookUrlRefused

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_BENCHMARK = ipaddress.ip_network("198.18.0.0/15")
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
# Not globally reachable per the IANA registries, but `is_global` in some Python releases
# still says so: named here so the policy does not depend on the interpreter's patch level.
_IETF_V4 = ipaddress.ip_network("192.0.0.0/24")
_IETF_V4_GLOBAL = {ipaddress.ip_address("192.0.0.9"), ipaddress.ip_address("192.0.0.10")}
_EXTRA_V6 = {
    ipaddress.ip_network("2001:2::/48"): "benchmarking",
    ipaddress.ip_network("3fff::/20"): "documentation",
    ipaddress.ip_network("5f00::/16"): "reserved",
}
MAX_URL_LENGTH = 2000


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str  # a name, or an address without brackets
    port: int


def parse_cidrs(text: str) -> tuple[Network, ...]:
    return tuple(
        ipaddress.ip_network(item.strip(), strict=False) for item in text.split(",") if item.strip()
    )


def check_url(url: str, *, allow_http: bool) -> Target:
    """The URL's scheme, host and port, or WebhookUrlRefused: `https` only (plain `http` when
    the operator allows it), a host, no credentials, no fragment."""
    if len(url) > MAX_URL_LENGTH:
        raise WebhookUrlRefused("the URL is too long", details={"reason": "too_long"})
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise WebhookUrlRefused("the URL is invalid", details={"reason": "invalid"}) from e
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        raise WebhookUrlRefused(
            "webhook URLs must use https", details={"reason": "scheme", "scheme": parts.scheme}
        )
    if not parts.hostname:
        raise WebhookUrlRefused("the URL has no host", details={"reason": "invalid"})
    if parts.username is not None or parts.password is not None:
        raise WebhookUrlRefused("the URL may not hold credentials", details={"reason": "userinfo"})
    if parts.fragment or any(c.isspace() or ord(c) < 0x20 for c in url):
        raise WebhookUrlRefused("the URL is invalid", details={"reason": "invalid"})
    default = 443 if parts.scheme == "https" else 80
    return Target(parts.scheme, parts.hostname, port or default)


def literal_address(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def refusal(address: Address, allowed: Sequence[Network] = ()) -> str | None:
    """None when `address` may be connected to; else the class it falls in."""
    if any(address.version == net.version and address in net for net in allowed):
        return None
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            # never connected to in this form, even when it carries a public or allowed IPv4
            # address: a receiver there is reached at the IPv4 address itself
            inner = refusal(embedded, allowed)
            return f"{_ipv6_form(address)}:{inner}" if inner else _ipv6_form(address)
    return _class_of(address)


def check_address(address: Address, allowed: Sequence[Network] = ()) -> None:
    reason = refusal(address, allowed)
    if reason is not None:
        raise WebhookUrlRefused(
            "webhook URLs must reach a public address",
            details={"reason": "address", "class": reason},
        )


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or address in _NAT64_LOCAL:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if int(address) >> 32 == 0 and int(address) > 1:  # IPv4-compatible ::a.b.c.d (deprecated)
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _ipv6_form(address: ipaddress.IPv6Address) -> str:
    if address.ipv4_mapped is not None:
        return "ipv4_mapped"
    if address.sixtofour is not None:
        return "6to4"
    if address in _NAT64 or address in _NAT64_LOCAL:
        return "nat64"
    return "ipv4_compatible"


def _class_of(address: Address) -> str | None:  # noqa: C901 - one question per class
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link_local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv4Address):
        if address in _SHARED:
            return "shared"
        if address in _BENCHMARK:
            return "benchmarking"
        if address in _IETF_V4 and address not in _IETF_V4_GLOBAL:
            return "ietf_protocol"
    elif address in _UNIQUE_LOCAL:
        return "unique_local"
    elif address.is_site_local:
        return "site_local"
    else:
        for net, name in _EXTRA_V6.items():
            if address in net:
                return name
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "not_global"
    return None
