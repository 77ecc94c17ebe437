"""Pure builders of the argv each command kind runs (easy to test, no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rdev.domain import policy


@dataclass(frozen=True, slots=True)
class ClaudeSpec:
    prompt: str
    model: str | None = None
    max_turns: int | None = None
    permission_mode: str | None = None
    resume_session: str | None = None
    allowed_tools: Sequence[str] | None = None
    append_system_prompt: str | None = None


def claude_argv(binary: str, spec: ClaudeSpec) -> tuple[str, ...]:
    """`claude -p PROMPT --output-format stream-json --verbose [...]`; the prompt is one argv
    item and never passes through a shell."""
    prompt = policy.check_text(spec.prompt, field="prompt", limit=policy.MAX_PROMPT_BYTES)
    argv = [binary, "-p", prompt, "--output-format", "stream-json", "--verbose"]
    if spec.model:
        argv += ["--model", policy.check_model(spec.model)]
    if spec.max_turns is not None:
        argv += ["--max-turns", str(spec.max_turns)]
    if spec.permission_mode:
        argv += ["--permission-mode", policy.check_permission_mode(spec.permission_mode)]
    if spec.resume_session:
        argv += ["--resume", policy.check_session_id(spec.resume_session)]
    if spec.allowed_tools:
        argv += ["--allowedTools", ",".join(policy.check_tools(spec.allowed_tools))]
    if spec.append_system_prompt:
        text = policy.check_text(
            spec.append_system_prompt, field="append_system_prompt", limit=policy.MAX_PROMPT_BYTES
        )
        argv += ["--append-system-prompt", text]
    return tuple(argv)
