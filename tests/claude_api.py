"""A tiny stand-in for the Anthropic Messages API, so the real Claude Code CLI can run offline.

`POST /v1/messages` answers every request with one text block, `You said: <last prompt>`,
streamed as the real API streams it (message_start, content_block_start/delta/stop,
message_delta with usage, message_stop) or as one JSON message when `stream` is false. It
records what the model was given: each request's system prompt and its user turns as plain
text, leaving out `role: "system"` turns and the CLI's `<system-reminder>` blocks, and the
credentials it was called with (`x-api-key`, `authorization`).

Scripted by the prompt's text:
- `run bash: CMD` asks for a Bash tool use of CMD; once a tool result comes back, it answers
  `Tool said: <the result's text>`;
- `api error NNN` answers every such request with HTTP NNN and an Anthropic error body (529 is
  `overloaded_error`), so the CLI retries (`api_retry` messages) and gives up;
- `slow stream S` (or `slow stream S xN`) streams slowly: message_start and content_block_start
  go out at once, then the answer's text arrives as N content_block_delta events (5 unless
  given), each after a wait of S seconds, so the turn lasts about N*S seconds while the CLI is
  connected and receiving. `slow_streams` counts the slow answers that have begun (their
  message_start sent), `slow_streams_ended` those whose last delta went out; one cut short (the
  CLI gone) never ends. Without `stream` the JSON answer waits N*S seconds before it is sent.

The usage it reports is `DEFAULT_USAGE` unless a test queues its own figures in `usage`: each
request takes the next one (input, output, cache-read and cache-creation tokens)."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Turn:
    """One request as the model saw it."""

    system: str
    user_texts: list[str]
    model: str
    api_key: str = ""
    tool_results: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 12
    output_tokens: int = 7
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0

    def fields(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
        }


DEFAULT_USAGE = Usage()


@dataclass
class FakeAnthropic:
    url: str = ""
    turns: list[Turn] = field(default_factory=list)
    other_paths: list[str] = field(default_factory=list)
    usage: list[Usage] = field(default_factory=list)  # taken one per request, in order
    slow_streams: int = 0
    slow_streams_ended: int = 0

    def next_usage(self) -> Usage:
        return self.usage.pop(0) if self.usage else DEFAULT_USAGE

    def prompts(self) -> list[str]:
        """The last user text of every request, in order."""
        return [t.user_texts[-1] for t in self.turns if t.user_texts]


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    out = []
    for block in content or []:
        if isinstance(block, dict) and block.get("type") == "text":
            text = str(block.get("text", ""))
            if not text.lstrip().startswith("<system-reminder>"):
                out.append(text)
    return out


def _system(value: Any) -> str:
    return "\n".join(_texts(value)) if not isinstance(value, str) else value


def _turn(body: dict[str, Any], api_key: str) -> Turn:
    user_texts = []
    results: list[str] = []
    for message in body.get("messages", []):
        if message.get("role") == "user":
            user_texts += _texts(message.get("content"))
            content = message.get("content")
            blocks = content if isinstance(content, list) else []
            results = [_result_text(b) for b in blocks if _is_result(b)] or results
    return Turn(
        _system(body.get("system")), user_texts, str(body.get("model", "")), api_key, results
    )


def _is_result(block: Any) -> bool:
    return isinstance(block, dict) and block.get("type") == "tool_result"


def _result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    return content if isinstance(content, str) else "\n".join(_texts(content))


def _sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()


_END = {"stop_reason": "end_turn", "stop_sequence": None}


_BASH = re.compile(r"run bash: (.+)", re.DOTALL)
_API_ERROR = re.compile(r"api error (\d{3})")
_SLOW = re.compile(r"slow stream (\d+(?:\.\d+)?)(?: x(\d+))?")
_ERROR_TYPES = {529: "overloaded_error", 500: "api_error", 429: "rate_limit_error"}


def _pieces(text: str, parts: int) -> list[str]:
    """`text` cut into `parts` consecutive pieces (none empty while the text lasts)."""
    size = -(-len(text) // parts)
    return [text[i : i + size] for i in range(0, len(text), size)] or [text]


def _events(
    model: str,
    text: str,
    figures: Usage,
    *,
    tool: dict[str, Any] | None = None,
    parts: int = 1,
) -> list[bytes]:
    # as the real API: message_start holds the input side, message_delta the output tokens
    usage = figures.fields() | {"output_tokens": 1}
    message = {"id": "msg_stand_in", "type": "message", "role": "assistant", "model": model,
               "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}  # fmt: skip
    if tool is not None:
        block = {"type": "tool_use", "id": f"toolu_{secrets.token_hex(8)}", "name": tool["name"],
                 "input": {}}  # fmt: skip
        delta = {"type": "input_json_delta", "partial_json": json.dumps(tool["input"])}
        end = {"stop_reason": "tool_use", "stop_sequence": None}
    else:
        block, delta, end = {"type": "text", "text": ""}, {"type": "text_delta", "text": text}, _END
    deltas = [delta] if tool is not None else [delta | {"text": t} for t in _pieces(text, parts)]
    return [
        _sse("message_start", {"message": message}),
        _sse("content_block_start", {"index": 0, "content_block": block}),
        *(_sse("content_block_delta", {"index": 0, "delta": d}) for d in deltas),
        _sse("content_block_stop", {"index": 0}),
        _sse("message_delta", {"delta": end, "usage": {"output_tokens": figures.output_tokens}}),
        _sse("message_stop", {}),
    ]


def build_app(state: FakeAnthropic) -> Starlette:
    async def messages(request: Request) -> Response:
        body = await request.json()
        key = request.headers.get("x-api-key") or request.headers.get("authorization", "")
        turn = _turn(body, key)
        state.turns.append(turn)
        figures = state.next_usage()
        prompt = turn.user_texts[-1] if turn.user_texts else ""
        text = f"You said: {prompt}"
        tool = None
        if (failing := _API_ERROR.search(prompt)) is not None:
            status = int(failing[1])
            kind = _ERROR_TYPES.get(status, "api_error")
            error = {"type": "error", "error": {"type": kind, "message": f"stand-in {status}"}}
            return JSONResponse(error, status)
        if (bash := _BASH.search(prompt)) is not None:
            if turn.tool_results:
                text = f"Tool said: {turn.tool_results[-1]}"
            else:
                tool = {"name": "Bash", "input": {"command": bash[1].strip()}}
        slow = _SLOW.search(prompt) if tool is None else None
        pause, parts = (float(slow[1]), int(slow[2] or 5)) if slow else (0.0, 1)
        if not body.get("stream"):
            await asyncio.sleep(pause * parts)
            content = [{"type": "text", "text": text}]
            usage = figures.fields()
            return JSONResponse(
                {
                    "id": "msg_stand_in",
                    "type": "message",
                    "role": "assistant",
                    "model": turn.model,
                    "content": content,
                    "usage": usage,
                    **_END,
                }
            )

        async def stream() -> AsyncIterator[bytes]:
            events = _events(turn.model, text, figures, tool=tool, parts=parts)
            if slow is None:
                for event in events:
                    yield event
                return
            yield b"".join(events[:2])  # message_start, content_block_start
            state.slow_streams += 1
            for event in events[2:-3]:  # the deltas
                await asyncio.sleep(pause)
                yield event
            state.slow_streams_ended += 1
            yield b"".join(events[-3:])

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def other(request: Request) -> Response:
        state.other_paths.append(request.url.path)
        return JSONResponse({"type": "error", "error": {"type": "not_found_error"}}, 404)

    return Starlette(
        routes=[
            Route("/v1/messages", messages, methods=["POST"]),
            Route("/{path:path}", other, methods=["GET", "POST", "PUT", "HEAD"]),
        ]
    )


@asynccontextmanager
async def fake_anthropic() -> AsyncIterator[FakeAnthropic]:
    """The stand-in served by uvicorn on an ephemeral loopback port."""
    state = FakeAnthropic()
    server = uvicorn.Server(
        uvicorn.Config(build_app(state), host="127.0.0.1", port=0, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    state.url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    try:
        yield state
    finally:
        server.should_exit = True
        await task
