"""OpenTelemetry tracing through the real server: a span per request continuing the client's
W3C traceparent and named by route template, a command's life as a span in the request's trace
with backend and database spans under it, TRACEPARENT in the command's environment (both
backends), the OTLP/HTTP exporter delivering to a receiver on loopback, and rdev untraced when
OTEL_* is absent or the extra is missing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from rdev.adapters.otel import setup as otel_setup
from rdev.config import Settings
from tests.e2e.conftest import Launch
from tests.support import eventually, make_project, output_text, read_to_end, serve

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@pytest.fixture
def exporter() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    yield provider, spans
    provider.shutdown()


def hexid(value: int, width: int) -> str:
    return format(value, f"0{width}x")


def named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


async def test_each_request_is_a_span_named_by_route_continuing_the_clients_trace(
    settings_factory: Callable[..., Settings],
    exporter: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, spans = exporter
    settings = settings_factory()
    make_project(settings.workspace_root, "demo")
    async with serve(settings, tracer_provider=provider) as running:
        resp = await running.admin.get("/projects/demo", headers={"traceparent": TRACEPARENT})
        assert resp.status_code == 200
        assert (await running.admin.get("/keys")).status_code == 200  # a FastAPI route
        assert (await running.client().get("/projects")).status_code == 401
    got = spans.get_finished_spans()
    [project] = named(got, "GET /projects/{project_id}")  # the template, not the id
    assert project.kind is SpanKind.SERVER
    assert hexid(project.context.trace_id, 32) == TRACE_ID
    assert project.parent is not None and hexid(project.parent.span_id, 16) == PARENT_ID
    assert project.attributes is not None
    assert project.attributes["http.response.status_code"] == 200
    assert project.attributes["http.route"] == "/projects/{project_id}"
    [keys] = named(got, "GET /keys")
    assert keys.parent is None and hexid(keys.context.trace_id, 32) != TRACE_ID  # a new trace
    [refused] = named(got, "GET /projects")
    assert refused.attributes is not None and refused.attributes["http.response.status_code"] == 401
    # the database work of a request is inside its trace
    db = [
        s for s in got if s.name.startswith("db ") and s.context.trace_id == keys.context.trace_id
    ]
    assert db and all(s.attributes and s.attributes["db.system.name"] == "sqlite" for s in db)


async def test_a_command_is_a_span_in_the_request_trace_and_its_process_sees_traceparent(
    launch: Launch, exporter: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, spans = exporter
    async with launch(tracer_provider=provider) as running:
        resp = await running.admin.post(
            "/projects/demo/shell",
            json={"argv": ["printenv", "TRACEPARENT"]},
            headers={"traceparent": TRACEPARENT},
        )
        assert resp.status_code in (200, 201, 202), resp.text
        cid = resp.json()["data"]["command_id"]
        events = await read_to_end(running.admin, f"/commands/{cid}/events")
        seen = output_text(events).strip()

        def command_span() -> list[ReadableSpan]:
            return named(spans.get_finished_spans(), "command shell")

        await eventually(command_span)
    version, trace_id, span_id, flags = seen.split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "01")  # the request's trace
    got = spans.get_finished_spans()
    [post] = named(got, "POST /projects/{project_id}/shell")
    [command] = named(got, "command shell")
    assert hexid(command.context.trace_id, 32) == TRACE_ID
    assert command.parent is not None and command.parent.span_id == post.context.span_id
    assert command.attributes is not None
    assert command.attributes["rdev.project"] == "demo"
    assert command.attributes["rdev.command.kind"] == "shell"
    assert command.attributes["rdev.command.status"] == "succeeded"
    assert [e.name for e in command.events] == ["running", "complete"]
    [execute] = [
        s for s in named(got, "backend.exec") if s.context.trace_id == command.context.trace_id
    ]
    assert execute.parent is not None and execute.parent.span_id == command.context.span_id
    # the process's TRACEPARENT names a span inside the command's
    inside = {
        hexid(s.context.span_id, 16) for s in got if s.context.trace_id == command.context.trace_id
    }
    assert span_id in inside
    assert command.start_time is not None and post.start_time is not None
    assert command.start_time >= post.start_time  # backdated to the command's creation


class Receiver:
    """An OTLP/HTTP receiver on loopback: decodes each POST /v1/traces with opentelemetry-proto."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {
                    k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if lines[0].startswith("POST /v1/traces"):
                    self.requests.append(ExportTraceServiceRequest.FromString(body))
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\n"
                             b"content-length: 0\r\n\r\n")  # fmt: skip
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    def spans(self) -> list[tuple[str, str, Any]]:
        """(service.name, span name, span) of everything received."""
        out = []
        for request in self.requests:
            for rs in request.resource_spans:
                service = next(
                    a.value.string_value for a in rs.resource.attributes if a.key == "service.name"
                )
                out += [(service, s.name, s) for ss in rs.scope_spans for s in ss.spans]
        return out

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.close()


async def test_the_otlp_http_exporter_delivers_spans_to_a_receiver(
    settings_factory: Callable[..., Settings],
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert receiver.server is not None
    port = receiver.server.sockets[0].getsockname()[1]
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "rdev-under-test")
    settings = settings_factory()
    make_project(settings.workspace_root, "demo")
    async with serve(settings) as running:
        assert running.app.tracer_provider is not None
        resp = await running.admin.get("/projects/demo", headers={"traceparent": TRACEPARENT})
        assert resp.status_code == 200
    # closing rdev flushed the batch
    received = await eventually(lambda: [s for s in receiver.spans() if s[1].startswith("GET")])
    service, name, span = received[0]
    assert (service, name) == ("rdev-under-test", "GET /projects/{project_id}")
    assert span.trace_id.hex() == TRACE_ID and span.parent_span_id.hex() == PARENT_ID


async def test_tracing_is_off_without_otel_variables(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    async with serve(settings_factory()) as running:
        assert running.app.tracer_provider is None
        assert (await running.admin.get("/projects")).status_code == 200


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x"}, False),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://h"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_the_standard_variables_turn_tracing_on(environ: dict[str, str], on: bool) -> None:
    provider = otel_setup.tracer_provider(environ)
    try:
        assert (provider is not None) is on
    finally:
        if provider is not None:
            provider.shutdown()


# What the `otel` extra adds (the SDK and the exporter) made unimportable; opentelemetry-api
# itself is a dependency of FastAPI, so it is always there.
BLOCK_OTEL = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.startswith(("opentelemetry.sdk", "opentelemetry.exporter", "opentelemetry.proto")):
            raise ImportError(f"blocked: {name}")
sys.meta_path.insert(0, Block())
from rdev.adapters.otel.setup import tracer_provider
from rdev.bootstrap import build
from rdev.config import Settings
assert tracer_provider({"OTEL_TRACES_EXPORTER": "otlp"}) is None
app = build(Settings(data_dir=sys.argv[1]))
assert app.tracer_provider is None
assert not any(m.startswith("opentelemetry.sdk") for m in sys.modules)
print("untraced")
"""


def test_rdev_runs_untraced_without_the_extra(tmp_path: Any) -> None:
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "otlp"}
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK_OTEL, str(tmp_path / "data")],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "untraced"
    assert "otel.unavailable" in proc.stdout + proc.stderr
