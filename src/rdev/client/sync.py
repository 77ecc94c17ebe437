"""`Client`: the blocking SDK over `httpx.Client`, and `CommandHandle`, a submitted command
whose events can be iterated through disconnects (see `_resume`)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import httpx
from httpx_sse import connect_sse

from rdev.client import _calls as calls
from rdev.client._resume import RECONNECT, StreamState
from rdev.client.errors import ConnectionFailed, RdevError, error_for
from rdev.client.models import AuditEntry, Command, ConfigItem, Event, IssuedKey, Key, Page, Project

T = TypeVar("T")
USER_AGENT = "rdev-python-client/1"


def _http_options(url: str, key: str | None, timeout: float) -> dict[str, Any]:
    headers = {"User-Agent": USER_AGENT}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return {"base_url": url.rstrip("/"), "headers": headers, "timeout": timeout}


class Client:
    """rdev's API. `url` like `http://127.0.0.1:8080`, `key` an API key (`rdev_sk_…`).
    `resume_timeout`: how long a stream keeps reconnecting without receiving a new event."""

    def __init__(
        self, url: str, key: str | None = None, *, timeout: float = 30.0,
        resume_timeout: float = 60.0, transport: httpx.BaseTransport | None = None,
    ) -> None:  # fmt: skip
        self._http = httpx.Client(**_http_options(url, key, timeout), transport=transport)
        self.resume_timeout = resume_timeout

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _do(self, call: calls.Call[T]) -> T:
        try:
            response = self._http.request(
                call.method, call.path, params=call.params, json=call.json, headers=call.headers
            )
        except httpx.TransportError as e:
            raise ConnectionFailed("CONNECTION", f"{type(e).__name__}: {e}") from e
        if response.status_code >= 400:
            raise error_for(response, response.content)
        return call.read(response.json())

    # projects
    def projects(self) -> list[Project]:
        return self._do(calls.projects())

    def project(self, project_id: str) -> Project:
        return self._do(calls.project(project_id))

    # commands
    def shell(self, project: str, *, argv: Sequence[str] | None = None,
              command: str | None = None, **options: Any) -> Command:  # fmt: skip
        return self._do(calls.shell(project, argv=argv, command=command, **options))

    def run(self, project: str, argv: Sequence[str] | None = None, *,
            command: str | None = None, **options: Any) -> CommandHandle:  # fmt: skip
        """Submit a shell command (`argv`, or a `command` line) and return its handle."""
        return self.handle(self.shell(project, argv=argv, command=command, **options))

    def git(self, project: str, args: Sequence[str], **options: Any) -> CommandHandle:
        cmd: Command = self._do(calls.git(project, args, **options))
        return self.handle(cmd)

    def claude(self, project: str, prompt: str, **options: Any) -> CommandHandle:
        """Options as the API takes them: model, max_turns, permission_mode, allowed_tools…"""
        cmd: Command = self._do(calls.claude(project, prompt, **options))
        return self.handle(cmd)

    def commands(
        self, project: str, *, status: str | None = None, cursor: str | None = None,
        limit: int | None = None,
    ) -> Page[Command]:  # fmt: skip
        return self._do(calls.commands(project, status=status, cursor=cursor, limit=limit))

    def command(self, command_id: str) -> Command:
        return self._do(calls.command(command_id))

    def cancel(self, command_id: str) -> Command:
        return self._do(calls.cancel(command_id))

    def output(self, command_id: str) -> str:
        """The stored output (stdout and stderr as they interleaved)."""
        try:
            response = self._http.get(calls.output_path(command_id))
        except httpx.TransportError as e:
            raise ConnectionFailed("CONNECTION", f"{type(e).__name__}: {e}") from e
        if response.status_code >= 400:
            raise error_for(response, response.content)
        return response.text

    def handle(self, command: Command | str) -> CommandHandle:
        """A handle on a command by its id (or a `Command` already fetched)."""
        cmd = command if isinstance(command, Command) else self.command(command)
        return CommandHandle(self, cmd)

    def events(self, command_id: str, *, last_event_id: str | None = None,
               heartbeats: bool = False) -> Iterator[Event]:  # fmt: skip
        """A command's events until `complete`, resuming through disconnects."""
        state = StreamState(command_id, last_event_id=last_event_id,
                            resume_timeout=self.resume_timeout, heartbeats=heartbeats)  # fmt: skip
        return self._stream(state)

    def _stream(self, state: StreamState) -> Iterator[Event]:
        path = calls.events_path(state.command_id)
        while not state.done:
            cause: BaseException | None = None
            try:
                with connect_sse(self._http, "GET", path, headers=state.headers(),
                                 timeout=httpx.Timeout(self._http.timeout.connect,
                                                       read=max(60.0, self.resume_timeout)),
                                 ) as source:  # fmt: skip
                    state.new_connection()
                    response = source.response
                    if response.status_code == 204:
                        return  # the server says we already have `complete`
                    if response.status_code != 200:
                        raise error_for(response, response.read())
                    for sse in source.iter_sse():
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
            time.sleep(state.retry_delay(cause))

    # claude config
    def config_list(self, project: str, type_: str) -> list[ConfigItem]:
        return self._do(calls.config_list(project, type_))

    def config_get(self, project: str, type_: str, name: str) -> ConfigItem:
        return self._do(calls.config_get(project, type_, name))

    def config_create(self, project: str, type_: str, name: str, content: str) -> ConfigItem:
        return self._do(calls.config_create(project, type_, name, content))

    def config_update(self, project: str, type_: str, name: str, content: str) -> ConfigItem:
        return self._do(calls.config_update(project, type_, name, content))

    def config_delete(self, project: str, type_: str, name: str) -> None:
        self._do(calls.config_delete(project, type_, name))

    # keys
    def create_key(self, name: str, scopes: Sequence[str], **grants: Any) -> IssuedKey:
        return self._do(calls.key_create(name, scopes, **grants))

    def keys(self) -> list[Key]:
        return self._do(calls.keys())

    def key(self, key_id: str) -> Key:
        return self._do(calls.key(key_id))

    def revoke_key(self, key_id: str) -> Key:
        return self._do(calls.key_revoke(key_id))

    def rotate_key(self, key_id: str) -> IssuedKey:
        return self._do(calls.key_rotate(key_id))

    # audit
    def audit(self, **filters: Any) -> Page[AuditEntry]:
        """Filters: action, key_id, since, until (ISO 8601), cursor, limit."""
        return self._do(calls.audit(**filters))


class CommandHandle:
    """A submitted command. Iterating it yields its events from where the last iteration
    stopped, resuming through disconnects; `wait()` reads to the end and returns the final
    command."""

    def __init__(self, client: Client, command: Command) -> None:
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

    def __iter__(self) -> Iterator[Event]:
        return self._client._stream(self._state)

    def wait(self) -> Command:
        for _ in self:
            pass
        self.command = self._client.command(self.id)
        return self.command

    def refresh(self) -> Command:
        self.command = self._client.command(self.id)
        return self.command

    def cancel(self) -> Command:
        self.command = self._client.cancel(self.id)
        return self.command

    def output(self) -> str:
        return self._client.output(self.id)
