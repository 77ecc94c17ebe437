"""rdev as `rdev serve` builds it, plus one extra route for the throughput baseline.

`python -m bench._server` reads the same environment as `rdev serve`, builds the app with
`rdev.bootstrap.build`, mounts `GET /_bench/baseline?lines=N&size=B&batch=K` on `app.http` and
serves it as the CLI does (`make_server`). The baseline is a bare Starlette streaming endpoint that
sends N `output` events formatted exactly like rdev's SSE frames (JSON data, `id: C:N`), K per
chunk, then `complete`: the same process, event loop, middleware and HTTP stack as rdev, without
the subprocess, the event log or the hub."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse

from rdev import logsetup
from rdev.bootstrap import build, make_server
from rdev.config import load_settings

BASELINE_PATH = "/_bench/baseline"
_FAKE_ID = "cmd_000000000000000000000000"  # as long as a real command id


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


async def _baseline_frames(lines: int, size: int, batch: int) -> AsyncIterator[str]:
    text = "x" * max(0, size - 1)  # `size` bytes with the newline the command would print
    yield "retry: 2000\nevent: connected\ndata: " + _json({"stream_id": _FAKE_ID}) + "\n\n"
    for start in range(1, lines + 1, batch):
        stop = min(lines, start + batch - 1)
        yield "".join(
            f"id: {_FAKE_ID}:{seq}\nevent: output\n"
            f"data: {_json({'line': text, 'stream': 'stdout'})}\n\n"
            for seq in range(start, stop + 1)
        )
    done = {"status": "succeeded", "exit_code": 0, "duration_ms": 0}
    yield f"id: {_FAKE_ID}:final\nevent: complete\ndata: {_json(done)}\n\n"


async def baseline(request: Request) -> StreamingResponse:
    q = request.query_params
    lines = int(q.get("lines", "200000"))
    size = int(q.get("size", "100"))
    batch = max(1, int(q.get("batch", "500")))
    return StreamingResponse(
        _baseline_frames(lines, size, batch),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def main() -> None:
    settings = load_settings()
    logsetup.configure(fmt=settings.log_format, level=settings.log_level)
    rdev_app = build(settings)
    rdev_app.http.add_route(BASELINE_PATH, baseline, methods=["GET"])
    make_server(rdev_app, access_log=False).run()  # served exactly as `rdev serve` serves


if __name__ == "__main__":
    main()
