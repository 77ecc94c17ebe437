"""How a Claude turn ended, told honestly.

Headless (`-p`), the CLI denies a tool that no rule allows at once (`default`, `dontAsk`, `plan`
modes), tells the model, and finishes the turn with exit 0: to the process table a turn whose
every tool was refused looks like one that did the work. The result message says what happened
(`subtype`, `terminal_reason`, `permission_denials`); rdev keeps it, bounded, and derives one
word, the `outcome`:

- `completed`: the result is a success and no tool use was denied;
- `denied`: the result is a success but at least one tool use was denied (the work asked for
  may not be done; `permission_denials` says which);
- `error`: the result is an error (`is_error`, or a subtype other than `success`, such as
  `error_max_turns` or `error_during_execution`);
- `null`: no result message (the run was cancelled, timed out, or the CLI died).

The command's `status` stays what the exit code says (`succeeded` for exit 0): it is about the
process, and clients already branch on it; `outcome` is about the turn.
"""

from __future__ import annotations

import json
from typing import Any

from rdev.domain.models import ClaudeResult

MAX_DENIALS = 20
MAX_TOOL_CHARS = 100
MAX_SUMMARY_CHARS = 200
MAX_WORD_CHARS = 64


def _short(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


def _word(value: object) -> str | None:
    return _short(value, MAX_WORD_CHARS) if isinstance(value, str) and value else None


def input_summary(tool_input: object) -> str:
    """A short, single-line summary of a tool's input: a Bash command or a file path as it is,
    anything else as compact JSON."""
    if isinstance(tool_input, dict):
        for key in ("command", "file_path", "path", "pattern", "url"):
            if isinstance(tool_input.get(key), str):
                return _short(" ".join(tool_input[key].split()), MAX_SUMMARY_CHARS)
    try:
        shown = json.dumps(tool_input, ensure_ascii=False, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        shown = ""
    return _short(shown, MAX_SUMMARY_CHARS)


def denials(value: object) -> tuple[tuple[str, str], ...]:
    """`permission_denials` of a result message, bounded (at most MAX_DENIALS, short strings)."""
    if not isinstance(value, list):
        return ()
    out = []
    for item in value[:MAX_DENIALS]:
        if isinstance(item, dict) and isinstance(item.get("tool_name"), str):
            tool = _short(item["tool_name"], MAX_TOOL_CHARS)
            out.append((tool, input_summary(item.get("tool_input"))))
    return tuple(out)


def outcome_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """The outcome fields of ClaudeResult from a `result` message."""
    return {
        "subtype": _word(obj.get("subtype")),
        "terminal_reason": _word(obj.get("terminal_reason")),
        "permission_denials": denials(obj.get("permission_denials")),
    }


def outcome(result: ClaudeResult) -> str | None:
    if result.subtype is None and result.is_error is None:
        return None  # no result message
    if result.is_error or (result.subtype is not None and result.subtype != "success"):
        return "error"
    return "denied" if result.permission_denials else "completed"


def view(result: ClaudeResult) -> dict[str, Any]:
    """The outcome as shown in `GET /commands/{id}` and the `complete` event."""
    return {
        "outcome": outcome(result),
        "subtype": result.subtype,
        "terminal_reason": result.terminal_reason,
        "permission_denials": [
            {"tool_name": tool, "input_summary": summary}
            for tool, summary in result.permission_denials
        ],
    }
