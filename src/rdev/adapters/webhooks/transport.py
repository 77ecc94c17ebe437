"""An httpx transport that connects only to addresses the SSRF policy allows.

The host is resolved once per request, every address it resolves to is checked
(domain/ssrf.py), and the connection goes to that very address, with the Host header and the
TLS server name (SNI, and so certificate checking) kept as the name. A name that resolves to a
public address for the check and to a private one for the connection (DNS rebinding) cannot
pass: there is only one resolution. The resolver is passed in, so tests can make it lie."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Sequence

import httpx

from rdev.domain.errors import WebhookUrlRefused
from rdev.domain.ssrf import Address, Network, check_address, literal_address

Resolver = Callable[[str, int], Awaitable[list[str]]]


RESOLVE_SECONDS = 5.0


async def system_resolver(host: str, port: int) -> list[str]:
    try:
        async with asyncio.timeout(RESOLVE_SECONDS):
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
    except TimeoutError as e:
        raise OSError(f"resolving {host} took over {RESOLVE_SECONDS:g} s") from e
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def resolve_checked(
    host: str, port: int, *, resolver: Resolver, allowed: Sequence[Network]
) -> Address:
    """The address to connect to: the literal itself, or the first the name resolves to, once
    every address it resolves to has passed the policy."""
    literal = literal_address(host)
    if literal is not None:
        check_address(literal, allowed)
        return literal
    try:
        found = await resolver(host, port)
    except OSError as e:
        raise WebhookUrlRefused(
            "the URL's host does not resolve", details={"reason": "unresolvable"}
        ) from e
    addresses = [a for a in (literal_address(x.split("%", 1)[0]) for x in found) if a]
    if not addresses:
        raise WebhookUrlRefused(
            "the URL's host does not resolve", details={"reason": "unresolvable"}
        )
    for address in addresses:
        check_address(address, allowed)
    return addresses[0]


class PinnedTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        *,
        allowed: Sequence[Network] = (),
        resolver: Resolver = system_resolver,
        inner: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._allowed = tuple(allowed)
        self._resolver = resolver
        self._inner = inner or httpx.AsyncHTTPTransport(retries=0)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        address = await resolve_checked(host, port, resolver=self._resolver, allowed=self._allowed)
        pinned = request.url.copy_with(host=str(address))
        extensions = dict(request.extensions)
        if request.url.scheme == "https" and literal_address(host) is None:
            extensions["sni_hostname"] = host
        # the Host header was set from the original URL when the request was built
        forwarded = httpx.Request(
            request.method,
            pinned,
            headers=request.headers,
            stream=request.stream,
            extensions=extensions,
        )
        return await self._inner.handle_async_request(forwarded)

    async def aclose(self) -> None:
        await self._inner.aclose()
