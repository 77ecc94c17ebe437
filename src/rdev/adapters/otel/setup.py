"""Whether to trace, from the standard OTEL_* variables: on when OTEL_TRACES_EXPORTER names an
exporter other than `none`, or an OTLP endpoint is set (OTEL_EXPORTER_OTLP_ENDPOINT,
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT); off otherwise, and off (with a warning) when the `otel`
extra is not installed. The SDK reads the rest itself (OTEL_SERVICE_NAME,
OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_HEADERS, OTEL_TRACES_SAMPLER …)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

log = structlog.get_logger(__name__)

_EXPORTERS = ("otlp", "console")


def wanted(environ: Mapping[str, str]) -> bool:
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def tracer_provider(environ: Mapping[str, str]) -> Any:
    """A configured SDK TracerProvider, or None when tracing is off."""
    if not wanted(environ) or environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("otel.unavailable", detail="OTEL_* is set but rdev[otel] is not installed")
        return None
    names = [n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    provider = TracerProvider(resource=Resource.create({"service.name": _service(environ)}))
    for name in names:
        if name not in _EXPORTERS:
            log.warning("otel.unknown_exporter", exporter=name[:40], known=list(_EXPORTERS))
            continue
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    return provider


def _service(environ: Mapping[str, str]) -> str:
    return environ.get("OTEL_SERVICE_NAME") or "rdev"


def _exporter(name: str) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout: OTEL_EXPORTER_OTLP_*
