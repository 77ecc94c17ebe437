"""The webhook SSRF policy (domain/ssrf.py) and the transport that enforces it on the address
actually connected to (adapters/webhooks/transport.py): every refused class, the operator's
CIDR allow-list, URL forms, names resolving to bad addresses, and DNS rebinding."""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from rdev.adapters.webhooks.transport import PinnedTransport, resolve_checked
from rdev.domain.errors import WebhookUrlRefused
from rdev.domain.ssrf import check_address, check_url, parse_cidrs, refusal

REFUSED = {
    # IPv4
    "127.0.0.1": "loopback",
    "127.255.255.254": "loopback",
    "10.0.0.1": "private",
    "172.16.0.1": "private",
    "172.31.255.255": "private",
    "192.168.1.1": "private",
    "169.254.169.254": "link_local",  # cloud metadata
    "169.254.0.1": "link_local",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "0.0.0.0": "unspecified",
    "100.64.0.1": "shared",
    "100.127.255.254": "shared",
    "198.18.0.1": "benchmarking",
    "198.19.255.1": "benchmarking",
    "240.0.0.1": "reserved",
    "255.255.255.255": "reserved",
    "192.0.2.1": "private",  # TEST-NET-1
    "198.51.100.7": "private",  # TEST-NET-2
    "203.0.113.9": "private",  # TEST-NET-3
    "192.0.0.8": "ietf_protocol",  # IPv4 dummy address (global by some Pythons' is_global)
    "192.0.0.170": "ietf_protocol",  # NAT64 discovery
    "0.1.2.3": "private",  # "this network"
    # IPv6
    "::1": "loopback",
    "::": "unspecified",
    "fe80::1": "link_local",
    "fc00::1": "unique_local",
    "fd12:3456::1": "unique_local",
    "fec0::1": "site_local",
    "ff02::1": "multicast",
    "ff0e::1": "multicast",
    "2001:db8::1": "private",  # documentation
    "2001::1": "private",  # Teredo
    "100::1": "reserved",  # discard-only
    "2001:2::1": "benchmarking",
    "3fff::1": "documentation",
    "5f00::1": "reserved",  # SRv6 SIDs
    # IPv6 forms that carry a bad IPv4 address
    "::ffff:127.0.0.1": "ipv4_mapped:loopback",
    "::ffff:10.1.2.3": "ipv4_mapped:private",
    "::ffff:169.254.169.254": "ipv4_mapped:link_local",
    "::ffff:100.64.0.1": "ipv4_mapped:shared",
    "::127.0.0.1": "ipv4_compatible:loopback",
    "::10.0.0.1": "ipv4_compatible:private",
    "2002:7f00:1::": "6to4:loopback",
    "2002:a9fe:a9fe::1": "6to4:link_local",
    "2002:c0a8:101::": "6to4:private",
    "64:ff9b::7f00:1": "nat64:loopback",
    "64:ff9b::a00:1": "nat64:private",
    "64:ff9b:1::a9fe:a9fe": "nat64:link_local",
}

PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111", "2a00:1450:4001::1"]


@pytest.mark.parametrize(("address", "kind"), sorted(REFUSED.items()))
def test_every_non_public_class_is_refused(address: str, kind: str) -> None:
    assert refusal(ipaddress.ip_address(address)) == kind
    with pytest.raises(WebhookUrlRefused) as raised:
        check_address(ipaddress.ip_address(address))
    assert raised.value.code == "WEBHOOK_URL_REFUSED"
    assert raised.value.details == {"reason": "address", "class": kind}


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("address", "form"),
    [
        ("::ffff:8.8.8.8", "ipv4_mapped"),
        ("64:ff9b::808:808", "nat64"),
        ("2002:808:808::1", "6to4"),
        ("::8.8.8.8", "ipv4_compatible"),
    ],
)
def test_ipv6_forms_of_public_ipv4_are_refused_too(address: str, form: str) -> None:
    # never connected to as such: a receiver there is reached at the IPv4 address itself
    assert refusal(ipaddress.ip_address(address)) == form
    assert refusal(ipaddress.ip_address(address), parse_cidrs("8.8.8.8/32")) == form


def test_operator_cidrs_allow_exactly_what_they_name() -> None:
    allowed = parse_cidrs("127.0.0.1/32, 10.20.0.0/16")
    assert refusal(ipaddress.ip_address("127.0.0.1"), allowed) is None
    assert refusal(ipaddress.ip_address("10.20.9.9"), allowed) is None
    assert refusal(ipaddress.ip_address("127.0.0.2"), allowed) == "loopback"
    assert refusal(ipaddress.ip_address("10.21.0.1"), allowed) == "private"
    # an IPv4 CIDR does not open the IPv6 forms of the same address
    assert refusal(ipaddress.ip_address("::ffff:127.0.0.1"), allowed) == "ipv4_mapped"
    assert refusal(ipaddress.ip_address("::ffff:127.0.0.2"), allowed) == "ipv4_mapped:loopback"
    assert refusal(ipaddress.ip_address("::1"), allowed) == "loopback"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://example.com/hook", "scheme"),
        ("ftp://example.com/hook", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("gopher://example.com/", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("https:///nohost", "invalid"),
        ("https://user:pw@example.com/", "userinfo"),
        ("https://user@example.com/", "userinfo"),
        ("https://example.com/#frag", "invalid"),
        ("https://example.com/a b", "invalid"),
        ("https://example.com:99999/", "invalid"),
        ("https://[::1/", "invalid"),
        ("https://example.com/" + "a" * 2100, "too_long"),
    ],
)
def test_url_forms_refused(url: str, reason: str) -> None:
    with pytest.raises(WebhookUrlRefused) as raised:
        check_url(url, allow_http=False)
    assert raised.value.details["reason"] == reason


def test_plain_http_only_when_the_operator_allows_it() -> None:
    assert check_url("http://example.com/h", allow_http=True).port == 80
    target = check_url("https://Example.COM:8443/h?x=1", allow_http=False)
    assert (target.scheme, target.host, target.port) == ("https", "example.com", 8443)
    with pytest.raises(WebhookUrlRefused):
        check_url("ftp://example.com/", allow_http=True)


def resolver_of(*answers: list[str]):  # type: ignore[no-untyped-def]
    """A resolver giving each answer in turn (the last one from then on)."""
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return answers[min(len(calls), len(answers)) - 1]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


@pytest.mark.parametrize(
    "answer",
    [
        ["127.0.0.1"],
        ["10.0.0.5"],
        ["169.254.169.254"],
        ["::1"],
        ["fd00::1"],
        ["::ffff:192.168.0.1"],
        ["100.64.1.1"],
        ["224.0.0.251"],
        ["93.184.215.14", "10.0.0.5"],  # one bad address among good ones is enough
        ["fe80::1%eth0"],
    ],
)
async def test_a_name_resolving_to_a_refused_address_is_refused(answer: list[str]) -> None:
    with pytest.raises(WebhookUrlRefused):
        await resolve_checked("hooks.example.com", 443, resolver=resolver_of(answer), allowed=())


async def test_a_name_that_does_not_resolve_is_refused() -> None:
    async def fails(host: str, port: int) -> list[str]:
        raise OSError("no such name")

    with pytest.raises(WebhookUrlRefused) as raised:
        await resolve_checked("nx.example", 443, resolver=fails, allowed=())
    assert raised.value.details["reason"] == "unresolvable"


async def test_literal_addresses_are_judged_without_resolving() -> None:
    resolve = resolver_of(["8.8.8.8"])
    with pytest.raises(WebhookUrlRefused):
        await resolve_checked("127.0.0.1", 443, resolver=resolve, allowed=())
    assert resolve.calls == []  # type: ignore[attr-defined]


async def test_the_transport_connects_to_the_checked_address_with_the_name_kept() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    transport = PinnedTransport(
        resolver=resolver_of(["93.184.215.14"]), inner=httpx.MockTransport(answer)
    )
    async with httpx.AsyncClient(transport=transport) as client:
        resp = await client.post("https://hooks.example.com:8443/in?x=1", content=b"{}")
    assert resp.status_code == 204
    (sent,) = seen
    assert sent.url.host == "93.184.215.14" and sent.url.port == 8443
    assert sent.url.path == "/in" and sent.url.query == b"x=1"
    assert sent.headers["host"] == "hooks.example.com:8443"
    assert sent.extensions["sni_hostname"] == "hooks.example.com"


async def test_dns_rebinding_cannot_pass_the_second_time() -> None:
    """Public at the first resolution, loopback at the second: the second request is refused
    before any connection, because the check is on the address connected to."""
    seen: list[str] = []
    transport = PinnedTransport(
        resolver=resolver_of(["93.184.215.14"], ["127.0.0.1"]),
        inner=httpx.MockTransport(lambda r: seen.append(str(r.url.host)) or httpx.Response(200)),
    )
    async with httpx.AsyncClient(transport=transport) as client:
        assert (await client.post("https://rebind.example/h")).status_code == 200
        with pytest.raises(WebhookUrlRefused):
            await client.post("https://rebind.example/h")
    assert seen == ["93.184.215.14"]
