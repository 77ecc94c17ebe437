"""`AsyncClient`: the asyncio SDK over `httpx.AsyncClient`, and `AsyncCommandHandle`; the same
calls as `Client` (both carry out `_calls`), awaited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeVar

import httpx
from httpx_sse import aconnect_sse

from rdev.client import _calls as calls
from rdev.client._resume import RECONNECT, StreamState
from rdev.client.errors import ConnectionFailed, RdevError, error_for
from rdev.client.models import AuditEntry, Command, ConfigItem, Event, IssuedKey, Key, Page, Project
from rdev.client.sync import _http_options

T = TypeVar("T")


class AsyncClient:
    """rdev's API. `url` like `http://127.0.0.1:8080`, `key` an API key (`rdev_sk_…`).
    `resume_timeout`: how long a stream keeps reconnecting without receiving a new event."""

    def __init__(
        self, url: str, key: str | None = None, *, timeout: float = 30.0,
        resume_timeout: float = 60.0, transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:  # fmt: skip
        self._http = httpx.AsyncClient(**_http_options(url, key, timeout), transport=transport)
        self.resume_timeout = resume_timeout

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _do(self, call: calls.Call[T]) -> T:
        try:
            response = await self._http.request(
                call.method, call.path, params=call.params, json=call.json, headers=call.headers
            )
        except httpx.TransportError as e:
            raise ConnectionFailed("CONNECTION", f"{type(e).__name__}: {e}") from e
        if response.status_code >= 400:
            raise error_for(response, response.content)
        return call.read(response.json())

    # projects
    async def projects(self) -> list[Project]:
        return await self._do(calls.projects())

    async def project(self, project_id: str) -> Project:
        return await self._do(calls.project(project_id))

    # commands
    async def shell(self, project: str, *, argv: Sequence[str] | None = None,
                    command: str | None = None, **options: Any) -> Command:  # fmt: skip
        return await self._do(calls.shell(project, argv=argv, command=command, **options))

    async def run(self, project: str, argv: Sequence[str] | None = None, *,
                  command: str | None = None, **options: Any) -> AsyncCommandHandle:  # fmt: skip
        """Submit a shell command (`argv`, or a `command` line) and return its handle."""
        return await self.handle(await self.shell(project, argv=argv, command=command, **options))

    async def git(self, project: str, args: Sequence[str], **options: Any) -> AsyncCommandHandle:
        cmd: Command = await self._do(calls.git(project, args, **options))
        return await self.handle(cmd)

    async def claude(self, project: str, prompt: str, **options: Any) -> AsyncCommandHandle:
        """Options as the API takes them: model, max_turns, permission_mode, allowed_tools…"""
        cmd: Command = await self._do(calls.claude(project, prompt, **options))
        return await self.handle(cmd)

    async def commands(
        self, project: str, *, status: str | None = None, cursor: str | None = None,
        limit: int | None = None,
    ) -> Page[Command]:  # fmt: skip
        return await self._do(calls.commands(project, status=status, cursor=cursor, limit=limit))

    async def command(self, command_id: str) -> Command:
        return await self._do(calls.command(command_id))

    async def cancel(self, command_id: str) -> Command:
        return await self._do(calls.cancel(command_id))

    async def output(self, command_id: str) -> str:
        """The stored output (stdout and stderr as they interleaved)."""
        try:
            response = await self._http.get(calls.output_path(command_id))
        except httpx.TransportError as e:
            raise ConnectionFailed("CONNECTION", f"{type(e).__name__}: {e}") from e
        if response.status_code >= 400:
            raise error_for(response, response.content)
        return response.text

    async def handle(self, command: Command | str) -> AsyncCommandHandle:
        """A handle on a command by its id (or a `Command` already fetched)."""
        cmd = command if isinstance(command, Command) else await self.command(command)
        return AsyncCommandHandle(self, cmd)

    def events(self, command_id: str, *, last_event_id: str | None = None,
               heartbeats: bool = False) -> AsyncIterator[Event]:  # fmt: skip
        """A command's events until `complete`, resuming through disconnects."""
        state = StreamState(command_id, last_event_id=last_event_id,
                            resume_timeout=self.resume_timeout, heartbeats=heartbeats)  # fmt: skip
        return self._stream(state)

    async def _stream(self, state: StreamState) -> AsyncIterator[Event]:
        path = calls.events_path(state.command_id)
        while not state.done:
            cause: BaseException | None = None
            try:
                async with aconnect_sse(self._http, "GET", path, headers=state.headers(),
                                 timeout=httpx.Timeout(self._http.timeout.connect,
                                                       read=max(60.0, self.resume_timeout)),
                                 ) as source:  # fmt: skip
                    state.new_connection()
                    response = source.response
                    if response.status_code == 204:
                        return  # the server says we already have `complete`
                    if response.status_code != 200:
                        raise error_for(response, await response.aread())
                    async for sse in source.aiter_sse():
                        out = state.accept(Event.parse(sse.event, sse.data, sse.id))
                        if out is RECONNECT:
                            break
                        if isinstance(out, Event):
                            yield out
                        if state.done:
                            return
            except httpx.TransportError as e:
                cause = e
            except RdevError as e:
                cause = e  # retry_delay re-raises it unless it is worth retrying
            await asyncio.sleep(state.retry_delay(cause))

    # claude config
    async def config_list(self, project: str, type_: str) -> list[ConfigItem]:
        return await self._do(calls.config_list(project, type_))

    async def config_get(self, project: str, type_: str, name: str) -> ConfigItem:
        return await self._do(calls.config_get(project, type_, name))

    async def config_create(self, project: str, type_: str, name: str, content: str) -> ConfigItem:
        return await self._do(calls.config_create(project, type_, name, content))

    async def config_update(self, project: str, type_: str, name: str, content: str) -> ConfigItem:
        return await self._do(calls.config_update(project, type_, name, content))

    async def config_delete(self, project: str, type_: str, name: str) -> None:
        await self._do(calls.config_delete(project, type_, name))

    # keys
    async def create_key(self, name: str, scopes: Sequence[str], **grants: Any) -> IssuedKey:
        return await self._do(calls.key_create(name, scopes, **grants))

    async def keys(self) -> list[Key]:
        return await self._do(calls.keys())

    async def key(self, key_id: str) -> Key:
        return await self._do(calls.key(key_id))

    async def revoke_key(self, key_id: str) -> Key:
        return await self._do(calls.key_revoke(key_id))

    async def rotate_key(self, key_id: str) -> IssuedKey:
        return await self._do(calls.key_rotate(key_id))

    # audit
    async def audit(self, **filters: Any) -> Page[AuditEntry]:
        """Filters: action, key_id, since, until (ISO 8601), cursor, limit."""
        return await self._do(calls.audit(**filters))


class AsyncCommandHandle:
    """A submitted command. `async for` over it yields its events from where the last
    iteration stopped, resuming through disconnects; `wait()` reads to the end and returns the final
    command."""

    def __init__(self, client: AsyncClient, command: Command) -> None:
        self._client = client
        self.command = command
        self._state = StreamState(command.command_id, resume_timeout=client.resume_timeout)

    @property
    def id(self) -> str:
        return self.command.command_id

    @property
    def reconnects(self) -> int:
        """How many times the stream was reopened so far."""
        return self._state.reconnects

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._client._stream(self._state)

    async def wait(self) -> Command:
        async for _ in self:
            pass
        self.command = await self._client.command(self.id)
        return self.command

    async def refresh(self) -> Command:
        self.command = await self._client.command(self.id)
        return self.command

    async def cancel(self) -> Command:
        self.command = await self._client.cancel(self.id)
        return self.command

    async def output(self) -> str:
        return await self._client.output(self.id)
