"""rdev's Python SDK: `Client` (blocking) and `AsyncClient` over httpx, typed results, one
exception per family of error codes, and command handles whose event streams resume through
disconnects and server restarts without a gap or a duplicate.

It imports only httpx, httpx-sse and the standard library — nothing of the server — so it
works where the server's dependencies are not installed (an import-linter contract and
tests/unit/test_client_independence.py hold it to that). See docs/sdk.md."""

from rdev.client.aio import AsyncClient, AsyncCommandHandle
from rdev.client.errors import (
    AuthError,
    Conflict,
    ConnectionFailed,
    Forbidden,
    Invalid,
    NotFound,
    QueueFull,
    RateLimited,
    RdevError,
    ServerError,
    Unavailable,
    ValidationError,
)
from rdev.client.models import (
    AuditEntry,
    Command,
    ConfigItem,
    Event,
    IssuedKey,
    Key,
    Page,
    Project,
)
from rdev.client.sync import Client, CommandHandle

__all__ = [
    "AsyncClient",
    "AsyncCommandHandle",
    "AuditEntry",
    "AuthError",
    "Client",
    "Command",
    "CommandHandle",
    "ConfigItem",
    "Conflict",
    "ConnectionFailed",
    "Event",
    "Forbidden",
    "Invalid",
    "IssuedKey",
    "Key",
    "NotFound",
    "Page",
    "Project",
    "QueueFull",
    "RateLimited",
    "RdevError",
    "ServerError",
    "Unavailable",
    "ValidationError",
]
