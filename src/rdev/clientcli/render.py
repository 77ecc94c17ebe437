"""How the CLI client shows a command's events: output lines to the terminal's stdout or
stderr as they came, Claude's stream-json messages as readable text (assistant text, tool
uses, the final cost), a queued command's position (a spinner on a terminal, plain lines
otherwise), and `--json` events one per line."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from rich.console import Console
from rich.status import Status

from rdev.client import Event

EXIT_WITHOUT_CODE = {"timed_out": 124, "cancelled": 130}
OWN_FAILURE = 255  # rdev itself failed (like ssh): the command's own codes stay unambiguous


def exit_code_of(status: str, exit_code: int | None) -> int:
    """What `rdev run` exits with: the command's code; 128+N for death by signal N (as a
    shell reports it); 124 timed out and 130 cancelled without a code; else OWN_FAILURE."""
    if exit_code is not None:
        return 128 - exit_code if exit_code < 0 else min(exit_code, 255)
    if status == "succeeded":
        return 0
    return EXIT_WITHOUT_CODE.get(status, OWN_FAILURE)


class QueueDisplay:
    """A queued command's position on stderr: a spinner that updates in place on a
    terminal, a plain line per change otherwise."""

    def __init__(self, command_id: str, err: Console) -> None:
        self._id = command_id
        self._err = err
        self._spinner: Status | None = None
        self._shown: int | None = -1

    def queued(self, position: int | None) -> None:
        if position == self._shown:
            return
        self._shown = position
        where = f"position {position}" if position is not None else "waiting"
        text = f"{self._id} queued ({where})"
        if self._err.is_terminal:
            if self._spinner is None:
                self._spinner = self._err.status(text)
                self._spinner.start()
            else:
                self._spinner.update(text)
        else:
            self._err.print(f"rdev: {text}", highlight=False)

    def done(self) -> None:
        if self._spinner is not None:
            self._spinner.stop()
            self._spinner = None
        self._shown = -1


class Renderer:
    def __init__(self, *, raw_json: bool = False, claude: bool = False,
                 out: TextIO | None = None, err: TextIO | None = None) -> None:  # fmt: skip
        self.raw_json = raw_json
        self.claude = claude
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def event(self, event: Event) -> None:
        if self.raw_json:
            record = {"event": event.event, "id": event.id, "data": event.data}
            self.out.write(json.dumps(record, ensure_ascii=False) + "\n")
            self.out.flush()
            return
        if event.event == "output":
            stream = self.err if event.stream == "stderr" else self.out
            stream.write(f"{event.line}\n")
            stream.flush()
        elif event.event == "message" and self.claude:
            self._claude(event.data)
        elif event.event == "truncated":
            self._note(f"output truncated at {event.data.get('limit_bytes')} bytes")

    def _note(self, text: str) -> None:
        self.err.write(f"rdev: {text}\n")
        self.err.flush()

    def _claude(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "system" and message.get("subtype") == "init":
            self._note(f"claude session {message.get('session_id')} ({message.get('model')})")
        elif kind == "assistant":
            for block in (message.get("message") or {}).get("content") or []:
                self._block(block)
        elif kind == "result":
            self._result(message)

    def _block(self, block: dict[str, Any]) -> None:
        if block.get("type") == "text":
            self.out.write(f"{block.get('text', '')}\n")
        elif block.get("type") == "tool_use":
            args = json.dumps(block.get("input") or {}, ensure_ascii=False)
            self.out.write(f"-> {block.get('name')} {args[:200]}\n")
        self.out.flush()

    def _result(self, message: dict[str, Any]) -> None:
        parts = []
        cost = message.get("total_cost_usd")
        if isinstance(cost, int | float):
            parts.append(f"cost ${cost:.4f}")
        if message.get("num_turns") is not None:
            parts.append(f"{message['num_turns']} turns")
        if message.get("duration_ms") is not None:
            parts.append(f"{message['duration_ms']} ms")
        if message.get("is_error"):
            parts.append("error")
        self.out.write(f"-- {' · '.join(parts) or 'done'}\n")
        self.out.flush()
