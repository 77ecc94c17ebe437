"""The connection to the API server: configuration (kubeconfig or in-cluster), one
kubernetes_asyncio ApiClient for list/watch, and one aiohttp session for exec websockets.

Exec does not go through kubernetes_asyncio's WsApiClient: it offers only v4 and decodes each
frame as text on its own, which breaks a UTF-8 character split across frames. The websocket
session reuses the client's configuration (host, TLS, bearer token, refreshed per request).
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config

from rdev.domain.errors import BackendUnavailable


def _ssl_context(cfg: Any) -> ssl.SSLContext:
    """The same TLS settings kubernetes_asyncio's REST client derives from the configuration."""
    context = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
    if cfg.cert_file:
        context.load_cert_chain(cfg.cert_file, keyfile=cfg.key_file)
    if not cfg.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def load_configuration(kubeconfig: str | None) -> Any:
    cfg = client.Configuration()
    try:
        if kubeconfig:
            await config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        else:
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError, ValueError, KeyError, TypeError) as e:
        where = kubeconfig or "the in-cluster service account"
        raise BackendUnavailable(f"cannot load Kubernetes configuration from {where}") from e
    return cfg


class KubeClient:
    def __init__(self, cfg: Any, *, protocols: Sequence[str], heartbeat: float | None) -> None:
        self._cfg = cfg
        self.api = client.ApiClient(cfg)
        self.core = client.CoreV1Api(self.api)
        connector = aiohttp.TCPConnector(ssl=_ssl_context(cfg))
        self._ws = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            trust_env=True,
        )
        self._protocols = tuple(protocols)
        self._heartbeat = heartbeat

    async def close(self) -> None:
        await self._ws.close()
        await self.api.close()

    async def _headers(self) -> dict[str, str]:
        headers = {}
        for auth in (await self._cfg.auth_settings()).values():
            if auth.get("in") == "header" and auth.get("value"):
                headers[auth["key"]] = auth["value"]
        return headers

    async def ws_connect(
        self, path: str, query: list[tuple[str, str]]
    ) -> aiohttp.ClientWebSocketResponse:
        """Upgrade to an exec websocket; aiohttp errors are left to the caller to translate."""
        return await self._ws.ws_connect(
            self._cfg.host.rstrip("/") + path,
            params=query,
            protocols=self._protocols,
            headers=await self._headers(),
            heartbeat=self._heartbeat,
            max_msg_size=16 * 1024 * 1024,
            proxy=self._cfg.proxy or None,
            server_hostname=self._cfg.tls_server_name or None,
        )
