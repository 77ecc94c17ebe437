"""What the HTTP routes are given: the services, built once by bootstrap."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rdev.adapters.http.capacity import StreamSlots
from rdev.adapters.http.ratelimit import Limits
from rdev.adapters.http.refusals import RefusalAudit
from rdev.adapters.metrics import Metrics
from rdev.services.audit import AuditService
from rdev.services.health import Readiness
from rdev.services.keys import KeyService
from rdev.services.projects import ProjectService

if TYPE_CHECKING:
    from rdev.runtime.streams import StreamHub
    from rdev.services.claude_cli import ClaudeCli
    from rdev.services.claude_config import ClaudeConfigService
    from rdev.services.commands import CommandService
    from rdev.services.stream_tokens import StreamTokenService
    from rdev.services.usage import UsageService
    from rdev.services.webhooks import WebhookService


@dataclass
class HttpServices:
    keys: KeyService
    audit: AuditService
    projects: ProjectService
    readiness: Readiness
    limits: Limits
    commands: CommandService
    streams: StreamHub
    claude_config: ClaudeConfigService
    refusals: RefusalAudit
    stream_slots: StreamSlots
    webhooks: WebhookService
    usage: UsageService
    heartbeat_seconds: float = 15.0
    stream_tokens: StreamTokenService | None = None  # browser-ready streams
    claude_cli: ClaudeCli | None = None  # is the Claude CLI there (services/claude_cli.py)
    metrics: Metrics = field(default_factory=Metrics)
