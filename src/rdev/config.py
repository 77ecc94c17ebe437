"""Settings from the environment. Built once by the CLI and passed down; never read at import.

Seed names are kept where the seeds defined them (PORT, POSTGRES_*, RDEV_NAMESPACE,
RATE_LIMIT_RPS, CONCURRENT_COMMANDS); everything else is RDEV_*."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rdev.domain.claude_env import parse_names
from rdev.runtime.shutdown import ShutdownPlan


class ConfigError(Exception):
    """One clear line naming the variable that is wrong."""


# An origin as a browser sends it: scheme, host, optional port; nothing else.
_ORIGIN = re.compile(
    r"https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)(:[0-9]{1,5})?"
)


def _env(name: str, *more: str) -> AliasChoices:
    return AliasChoices(name, *more)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    host: str = Field("127.0.0.1", validation_alias=_env("RDEV_HOST"))
    port: int = Field(8080, ge=1, le=65535, validation_alias=_env("PORT"))
    data_dir: Path = Field(Path(".rdev"), validation_alias=_env("RDEV_DATA_DIR"))
    database_url: str = Field("", validation_alias=_env("RDEV_DATABASE_URL"))
    postgres_host: str = Field("", validation_alias=_env("POSTGRES_HOST"))
    postgres_port: int = Field(5432, ge=1, le=65535, validation_alias=_env("POSTGRES_PORT"))
    postgres_db: str = Field("rdev", validation_alias=_env("POSTGRES_DB"))
    postgres_user: str = Field("rdev", validation_alias=_env("POSTGRES_USER"))
    postgres_password: str = Field("", validation_alias=_env("POSTGRES_PASSWORD"))
    redis_url: str = Field("", validation_alias=_env("RDEV_REDIS_URL"))
    redis_key_prefix: str = Field(
        "rdev", min_length=1, max_length=100, validation_alias=_env("RDEV_REDIS_KEY_PREFIX")
    )

    backend: Literal["local", "kubernetes"] = Field("local", validation_alias=_env("RDEV_BACKEND"))
    local_root: Path | None = Field(None, validation_alias=_env("RDEV_LOCAL_ROOT"))
    namespace: str = Field("default", validation_alias=_env("RDEV_NAMESPACE"))
    kubeconfig: str = Field("", validation_alias=_env("RDEV_KUBECONFIG"))
    claude_bin: str = Field("claude", validation_alias=_env("RDEV_CLAUDE_BIN"))

    rate_limit_rps: float = Field(10.0, gt=0, validation_alias=_env("RATE_LIMIT_RPS"))
    auth_failures_per_minute: int = Field(
        20, ge=1, validation_alias=_env("RDEV_AUTH_FAILURES_PER_MINUTE")
    )
    audit_refusals_per_minute: int = Field(
        10, ge=1, validation_alias=_env("RDEV_AUDIT_REFUSALS_PER_MINUTE")
    )
    concurrent_commands: int = Field(5, ge=1, validation_alias=_env("CONCURRENT_COMMANDS"))
    replica_max_commands: int = Field(50, ge=1, validation_alias=_env("RDEV_REPLICA_MAX_COMMANDS"))
    max_queue: int = Field(100, ge=1, validation_alias=_env("RDEV_MAX_QUEUE"))
    default_timeout_seconds: int = Field(600, ge=1, validation_alias=_env("RDEV_DEFAULT_TIMEOUT"))
    max_timeout_seconds: int = Field(3600, ge=1, validation_alias=_env("RDEV_MAX_TIMEOUT_SECONDS"))
    kill_grace_seconds: float = Field(5.0, ge=0, validation_alias=_env("RDEV_KILL_GRACE_SECONDS"))
    lease_seconds: float = Field(30.0, gt=0, validation_alias=_env("RDEV_LEASE_SECONDS"))
    max_output_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, validation_alias=_env("RDEV_MAX_OUTPUT_BYTES")
    )
    # output held per running command while the database is unreachable; past it lines are
    # dropped and recorded as a `truncated` gap event
    outage_buffer_bytes: int = Field(
        4 * 1024 * 1024, ge=64 * 1024, validation_alias=_env("RDEV_OUTAGE_BUFFER_BYTES")
    )
    max_output_events: int = Field(200_000, ge=100, validation_alias=_env("RDEV_MAX_OUTPUT_EVENTS"))
    event_retention_days: int = Field(7, ge=1, validation_alias=_env("RDEV_EVENT_RETENTION_DAYS"))
    sse_heartbeat_seconds: float = Field(
        15.0, gt=0, validation_alias=_env("RDEV_SSE_HEARTBEAT_SECONDS")
    )
    sse_buffer_events: int = Field(1000, ge=10, validation_alias=_env("RDEV_SSE_BUFFER_EVENTS"))
    max_body_bytes: int = Field(1024 * 1024, ge=1024, validation_alias=_env("RDEV_MAX_BODY_BYTES"))
    max_streams_per_key: int = Field(100, ge=1, validation_alias=_env("RDEV_MAX_STREAMS_PER_KEY"))
    max_streams: int = Field(10_000, ge=1, validation_alias=_env("RDEV_MAX_STREAMS"))
    max_requests_in_flight: int = Field(
        256, ge=1, validation_alias=_env("RDEV_MAX_REQUESTS_IN_FLIGHT")
    )
    header_timeout_seconds: float = Field(
        10.0, gt=0, le=300, validation_alias=_env("RDEV_HEADER_TIMEOUT_SECONDS")
    )
    body_timeout_seconds: float = Field(
        30.0, gt=0, le=3600, validation_alias=_env("RDEV_BODY_TIMEOUT_SECONDS")
    )
    fd_reserve: int = Field(64, ge=16, validation_alias=_env("RDEV_FD_RESERVE"))
    trusted_proxies: str = Field("", validation_alias=_env("RDEV_TRUSTED_PROXIES"))
    key_cache_seconds: float = Field(
        5.0, ge=0, le=5, validation_alias=_env("RDEV_KEY_CACHE_SECONDS")
    )
    # From SIGTERM to exit, everything included (see rdev.runtime.shutdown). The old name,
    # RDEV_SHUTDOWN_GRACE_SECONDS (time for commands only), is still read, as the whole budget.
    shutdown_budget_seconds: float = Field(
        20.0,
        gt=0,
        validation_alias=_env("RDEV_SHUTDOWN_BUDGET_SECONDS", "RDEV_SHUTDOWN_GRACE_SECONDS"),
    )
    shutdown_drain_seconds: float = Field(
        5.0, ge=0, validation_alias=_env("RDEV_SHUTDOWN_DRAIN_SECONDS")
    )
    log_format: Literal["console", "json"] = Field(
        "console", validation_alias=_env("RDEV_LOG_FORMAT")
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", validation_alias=_env("RDEV_LOG_LEVEL")
    )
    replica_id: str = Field("", validation_alias=_env("RDEV_REPLICA_ID"))
    # Claude cost and budgets (docs/claude-cost.md): the daily spend (UTC) past which new
    # Claude commands of a key, or of a project without its own daily_budget_usd, are refused
    key_daily_budget_usd: float | None = Field(
        None, gt=0, le=1_000_000, validation_alias=_env("RDEV_KEY_DAILY_BUDGET_USD")
    )
    project_daily_budget_usd: float | None = Field(
        None, gt=0, le=1_000_000, validation_alias=_env("RDEV_PROJECT_DAILY_BUDGET_USD")
    )

    # Browser-ready streams (docs/browser.md): CORS origins, stream tokens for EventSource.
    cors_origins: str = Field("", validation_alias=_env("RDEV_CORS_ORIGINS"))
    stream_token_ttl_seconds: int = Field(
        300, ge=10, le=3600, validation_alias=_env("RDEV_STREAM_TOKEN_TTL_SECONDS")
    )
    stream_token_secret: str = Field(
        "", repr=False, validation_alias=_env("RDEV_STREAM_TOKEN_SECRET")
    )

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        items = [v.strip() for v in value.split(",") if v.strip()]
        if items == ["*"]:
            return value  # any origin, answered `*`, never with credentials (docs/browser.md)
        for item in items:
            if not _ORIGIN.fullmatch(item):
                raise ValueError(
                    f"{item!r} is not an origin: give exact origins such as "
                    "https://app.example.com (scheme, host and optional port; no path), "
                    "or '*' alone"
                )
        return value

    @property
    def cors_origin_list(self) -> tuple[str, ...]:
        return tuple(v.strip().lower() for v in self.cors_origins.split(",") if v.strip())

    # Claude Code for real (issue #10): what reaches the CLI, its retries, the check for it
    claude_env: str = Field("", validation_alias=_env("RDEV_CLAUDE_ENV"))
    claude_max_retries: int = Field(
        2, ge=0, le=10, validation_alias=_env("RDEV_CLAUDE_MAX_RETRIES")
    )
    claude_check_seconds: float = Field(
        300.0, gt=0, validation_alias=_env("RDEV_CLAUDE_CHECK_SECONDS")
    )

    @field_validator("claude_env")
    @classmethod
    def _claude_env(cls, value: str) -> str:
        parse_names(value)  # a refused or malformed name stops start-up, naming it
        return value

    # Rate limits across replicas (issue #11): the per-key burst (RATE_LIMIT_RPS times the window
    # in seconds; see adapters/http/ratelimit.py) and how often a replica counting in memory
    # tries Redis again after it went away.
    rate_limit_burst: int = Field(
        20, ge=1, le=100_000, validation_alias=_env("RDEV_RATE_LIMIT_BURST")
    )
    redis_retry_seconds: float = Field(
        30.0, gt=0, le=3600, validation_alias=_env("RDEV_REDIS_RETRY_SECONDS")
    )

    # -- metrics (issue #11): who may scrape GET /metrics (docs/monitoring.md) --
    metrics_token: str = Field("", validation_alias=_env("RDEV_METRICS_TOKEN"))
    metrics_port: int = Field(0, ge=0, le=65535, validation_alias=_env("RDEV_METRICS_PORT"))
    metrics_host: str = Field("", validation_alias=_env("RDEV_METRICS_HOST"))

    @model_validator(mode="after")
    def _metrics_port(self) -> Settings:
        if self.metrics_port and self.metrics_port == self.port:
            raise ValueError(
                "RDEV_METRICS_PORT must differ from PORT (it is a listener of its own)"
            )
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: str) -> str:
        for item in filter(None, (v.strip() for v in value.split(","))):
            ipaddress.ip_network(item, strict=False)
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://")):
            raise ValueError("must start with redis:// or rediss://")
        return value

    @field_validator("database_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must start with sqlite:/// or postgresql+psycopg://")
        return value

    @model_validator(mode="after")
    def _timeouts(self) -> Settings:
        if self.default_timeout_seconds > self.max_timeout_seconds:
            raise ValueError("RDEV_DEFAULT_TIMEOUT exceeds RDEV_MAX_TIMEOUT_SECONDS")
        return self

    @model_validator(mode="after")
    def _shutdown(self) -> Settings:
        plan = self.shutdown_plan
        if plan.budget < plan.minimum_budget:
            raise ValueError(
                f"RDEV_SHUTDOWN_BUDGET_SECONDS ({plan.budget:g}) must be at least "
                f"RDEV_KILL_GRACE_SECONDS + {plan.minimum_budget - plan.kill_grace:g} "
                f"({plan.minimum_budget:g}), to stop a command that ignores SIGTERM in time"
            )
        if plan.drain > plan.requests_until:
            raise ValueError(
                f"RDEV_SHUTDOWN_DRAIN_SECONDS ({plan.drain:g}) must be at most "
                f"RDEV_SHUTDOWN_BUDGET_SECONDS - {plan.budget - plan.requests_until:g} "
                f"({plan.requests_until:g})"
            )
        return self

    @property
    def shutdown_plan(self) -> ShutdownPlan:
        return ShutdownPlan(
            budget=self.shutdown_budget_seconds,
            drain=self.shutdown_drain_seconds,
            kill_grace=self.kill_grace_seconds,
        )

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        if self.postgres_host:
            auth = quote(self.postgres_user, safe="")
            if self.postgres_password:
                auth += ":" + quote(self.postgres_password, safe="")
            return (
                f"postgresql+psycopg://{auth}@{self.postgres_host}:{self.postgres_port}/"
                f"{self.postgres_db}"
            )
        return f"sqlite:///{self.data_dir / 'rdev.db'}"

    @property
    def workspace_root(self) -> Path:
        return self.local_root or self.data_dir / "workspaces"

    @property
    def trusted_proxy_networks(self) -> tuple[str, ...]:
        return tuple(v.strip() for v in self.trusted_proxies.split(",") if v.strip())

    @property
    def replica(self) -> str:
        return self.replica_id or f"{socket.gethostname()}-{os.getpid()}"

    # --- Webhooks (issue #11; docs/webhooks.md) ---
    webhook_allow_http: bool = Field(False, validation_alias=_env("RDEV_WEBHOOK_ALLOW_HTTP"))
    webhook_allowed_cidrs: str = Field("", validation_alias=_env("RDEV_WEBHOOK_ALLOWED_CIDRS"))
    webhook_timeout_seconds: float = Field(
        10.0, gt=0, le=300, validation_alias=_env("RDEV_WEBHOOK_TIMEOUT_SECONDS")
    )
    webhook_concurrency: int = Field(
        16, ge=1, le=1000, validation_alias=_env("RDEV_WEBHOOK_CONCURRENCY")
    )
    webhook_max_attempts: int = Field(
        12, ge=1, le=100, validation_alias=_env("RDEV_WEBHOOK_MAX_ATTEMPTS")
    )
    webhook_retry_first_seconds: float = Field(
        10.0, gt=0, validation_alias=_env("RDEV_WEBHOOK_RETRY_FIRST_SECONDS")
    )
    webhook_retry_factor: float = Field(
        3.0, ge=1, validation_alias=_env("RDEV_WEBHOOK_RETRY_FACTOR")
    )
    webhook_retry_max_seconds: float = Field(
        5 * 3600.0, gt=0, validation_alias=_env("RDEV_WEBHOOK_RETRY_MAX_SECONDS")
    )
    webhook_retry_jitter: float = Field(
        0.2, ge=0, lt=1, validation_alias=_env("RDEV_WEBHOOK_RETRY_JITTER")
    )
    webhook_disable_after_seconds: float = Field(
        3 * 86400.0, gt=0, validation_alias=_env("RDEV_WEBHOOK_DISABLE_AFTER_SECONDS")
    )
    webhook_poll_seconds: float = Field(
        5.0, gt=0, le=300, validation_alias=_env("RDEV_WEBHOOK_POLL_SECONDS")
    )

    @field_validator("webhook_allowed_cidrs")
    @classmethod
    def _webhook_cidrs(cls, value: str) -> str:
        for item in filter(None, (v.strip() for v in value.split(","))):
            ipaddress.ip_network(item, strict=False)
        return value


_FIELD_ENV = {
    name: (
        field.validation_alias.choices[0]
        if isinstance(field.validation_alias, AliasChoices)
        else name
    )
    for name, field in Settings.model_fields.items()
}


def load_settings(**overrides: object) -> Settings:
    """Read the environment; raise ConfigError with one line naming the bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as e:
        err = e.errors()[0]
        loc = str(err["loc"][0]) if err["loc"] else ""
        var = _FIELD_ENV.get(loc, loc) or "settings"
        raise ConfigError(f"invalid setting {var}: {err['msg']}") from None


def check_data_dir(settings: Settings) -> None:
    """The data folder exists (it is made if need be) and takes a new file; else one line
    naming the folder and the setting, instead of a traceback from deep inside start-up."""
    folder = settings.data_dir.absolute()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise ConfigError(
            f"the data folder {folder} cannot be written ({reason}); "
            "set RDEV_DATA_DIR to a writable folder"
        ) from None
