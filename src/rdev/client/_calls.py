"""Every API call as data: method, path, query, body and how to read the answer. `Client` and
`AsyncClient` only carry these out, so the two cannot drift apart."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from rdev.client.models import AuditEntry, Command, ConfigItem, IssuedKey, Key, Page, Project

T = TypeVar("T")
CONFIG_TYPES = ("commands", "skills", "agents")


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    method: str
    path: str
    read: Callable[[dict[str, Any]], T]
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def _seg(value: str) -> str:
    return quote(value, safe="")


def _one(cls: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda body: cls.from_json(body["data"])


def _many(cls: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda body: [cls.from_json(item) for item in body["data"]]


def _page(cls: Any) -> Callable[[dict[str, Any]], Any]:
    def read(body: dict[str, Any]) -> Page[Any]:
        meta = body.get("meta") or {}
        items = [cls.from_json(item) for item in body["data"]]
        return Page(items, meta.get("next_cursor"))

    return read


def _clean(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def projects() -> Call[list[Project]]:
    return Call("GET", "/projects", _many(Project))


def project(project_id: str) -> Call[Project]:
    return Call("GET", f"/projects/{_seg(project_id)}", _one(Project))


def _submit(project_id: str, kind: str, body: dict[str, Any], idem: str | None) -> Call[Command]:
    headers = {"Idempotency-Key": idem} if idem else {}
    return Call("POST", f"/projects/{_seg(project_id)}/{kind}", _one(Command),
                json=_clean(body), headers=headers)  # fmt: skip


def shell(
    project_id: str, *, argv: Sequence[str] | None = None, command: str | None = None,
    idempotency_key: str | None = None, **options: Any,
) -> Call[Command]:  # fmt: skip
    body = {"argv": list(argv) if argv is not None else None, "command": command, **options}
    return _submit(project_id, "shell", body, idempotency_key)


def git(
    project_id: str, args: Sequence[str], *, idempotency_key: str | None = None, **options: Any
) -> Call[Command]:
    return _submit(project_id, "git", {"args": list(args), **options}, idempotency_key)


def claude(
    project_id: str, prompt: str, *, idempotency_key: str | None = None, **options: Any
) -> Call[Command]:
    return _submit(project_id, "claude", {"prompt": prompt, **options}, idempotency_key)


def commands(
    project_id: str, *, status: str | None = None, cursor: str | None = None,
    limit: int | None = None,
) -> Call[Page[Command]]:  # fmt: skip
    params = _clean({"status": status, "cursor": cursor, "limit": limit})
    return Call("GET", f"/projects/{_seg(project_id)}/commands", _page(Command), params=params)


def command(command_id: str) -> Call[Command]:
    return Call("GET", f"/commands/{_seg(command_id)}", _one(Command))


def cancel(command_id: str) -> Call[Command]:
    return Call("POST", f"/commands/{_seg(command_id)}/cancel", _one(Command))


def output_path(command_id: str) -> str:
    return f"/commands/{_seg(command_id)}/output"


def events_path(command_id: str) -> str:
    return f"/commands/{_seg(command_id)}/events"


def _config_path(project_id: str, type_: str, name: str | None = None) -> str:
    if type_ not in CONFIG_TYPES:
        raise ValueError(f"type must be one of {', '.join(CONFIG_TYPES)}")
    path = f"/projects/{_seg(project_id)}/claude-config/{type_}"
    return path if name is None else f"{path}/{_seg(name)}"


def config_list(project_id: str, type_: str) -> Call[list[ConfigItem]]:
    return Call("GET", _config_path(project_id, type_), _many(ConfigItem))


def config_get(project_id: str, type_: str, name: str) -> Call[ConfigItem]:
    return Call("GET", _config_path(project_id, type_, name), _one(ConfigItem))


def config_create(project_id: str, type_: str, name: str, content: str) -> Call[ConfigItem]:
    body = {"name": name, "content": content}
    return Call("POST", _config_path(project_id, type_), _one(ConfigItem), json=body)


def config_update(project_id: str, type_: str, name: str, content: str) -> Call[ConfigItem]:
    body = {"content": content}
    return Call("PUT", _config_path(project_id, type_, name), _one(ConfigItem), json=body)


def config_delete(project_id: str, type_: str, name: str) -> Call[dict[str, Any]]:
    return Call("DELETE", _config_path(project_id, type_, name), lambda body: body["data"])


def key_create(
    name: str, scopes: Sequence[str], *, projects: Sequence[str] = (),
    allowed_ips: Sequence[str] = (), expires_at: str | None = None,
    rate_limit_rps: float | None = None, daily_budget_usd: float | None = None,
) -> Call[IssuedKey]:  # fmt: skip
    body = _clean({"name": name, "scopes": list(scopes), "projects": list(projects),
                   "allowed_ips": list(allowed_ips), "expires_at": expires_at,
                   "rate_limit_rps": rate_limit_rps,
                   "daily_budget_usd": daily_budget_usd})  # fmt: skip
    return Call("POST", "/keys", _one(IssuedKey), json=body)


def keys() -> Call[list[Key]]:
    return Call("GET", "/keys", _many(Key))


def key(key_id: str) -> Call[Key]:
    return Call("GET", f"/keys/{_seg(key_id)}", _one(Key))


def key_revoke(key_id: str) -> Call[Key]:
    return Call("DELETE", f"/keys/{_seg(key_id)}", _one(Key))


def key_rotate(key_id: str) -> Call[IssuedKey]:
    return Call("POST", f"/keys/{_seg(key_id)}/rotate", _one(IssuedKey))


def audit(
    *, action: str | None = None, key_id: str | None = None, since: str | None = None,
    until: str | None = None, cursor: str | None = None, limit: int | None = None,
) -> Call[Page[AuditEntry]]:  # fmt: skip
    params = _clean({"action": action, "key_id": key_id, "since": since, "until": until,
                     "cursor": cursor, "limit": limit})  # fmt: skip
    return Call("GET", "/audit", _page(AuditEntry), params=params)
