"""Pure builders of the argv each command kind runs (easy to test, no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rdev.domain import policy
from rdev.domain.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class ClaudeSpec:
    prompt: str
    model: str | None = None
    max_turns: int | None = None
    permission_mode: str | None = None
    resume_session: str | None = None
    allowed_tools: Sequence[str] | None = None
    append_system_prompt: str | None = None
    max_budget_usd: float | None = None  # the CLI stops the run past it (--max-budget-usd)


MAX_RUN_BUDGET_USD = 1000.0


def check_run_budget(value: float) -> str:
    """A run's budget as the CLI option's value: a finite number of dollars, more than 0 and
    at most MAX_RUN_BUDGET_USD (NaN and infinities fail the comparison)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput("max_budget_usd must be a number", details={"field": "max_budget_usd"})
    if not 0 < value <= MAX_RUN_BUDGET_USD:
        raise InvalidInput(
            f"max_budget_usd must be more than 0 and at most {MAX_RUN_BUDGET_USD:g}",
            details={"field": "max_budget_usd"},
        )
    return repr(float(value))


# What the workspace may not configure unless the project trusts it: its `.claude/settings*.json`
# (hooks are programs; permission rules widen tools) and its `.mcp.json` (servers are programs).
WORKSPACE_CONFIG_OFF = ("--setting-sources=user", "--strict-mcp-config")


def claude_argv(
    binary: str, spec: ClaudeSpec, *, workspace_config: bool = False
) -> tuple[str, ...]:
    """`claude --print --output-format=stream-json --verbose [--opt=VALUE...] -- PROMPT`.

    No client value can be read as an option, by construction: every value is joined to its
    option with `=` (so `--model=-c` is the model "-c"), and the prompt is the one operand,
    after `--`, which ends option parsing. Nothing passes through a shell.

    Files in the workspace can be written by other keys (git, shell) and by Claude's own edit
    tools, so settings and MCP servers from the workspace load only when `workspace_config`
    (the project's `allow_claude_shell`) says the project trusts them."""
    prompt = policy.check_text(spec.prompt, field="prompt", limit=policy.MAX_PROMPT_BYTES)
    argv = [binary, "--print", "--output-format=stream-json", "--verbose"]
    if not workspace_config:
        argv += WORKSPACE_CONFIG_OFF
    if spec.model:
        argv.append("--model=" + policy.check_model(spec.model))
    if spec.max_turns is not None:
        argv.append(f"--max-turns={int(spec.max_turns)}")
    if spec.permission_mode:
        argv.append("--permission-mode=" + policy.check_permission_mode(spec.permission_mode))
    if spec.max_budget_usd is not None:
        argv.append("--max-budget-usd=" + check_run_budget(spec.max_budget_usd))
    if spec.resume_session:
        argv.append("--resume=" + policy.check_session_id(spec.resume_session))
    if spec.allowed_tools:
        argv.append("--allowedTools=" + ",".join(policy.check_tools(spec.allowed_tools)))
    if spec.append_system_prompt:
        text = policy.check_text(
            spec.append_system_prompt, field="append_system_prompt", limit=policy.MAX_PROMPT_BYTES
        )
        argv.append("--append-system-prompt=" + text)
    return (*argv, "--", prompt)


def claude_prompt_index(argv: Sequence[str]) -> int | None:
    """Where the prompt is in an argv built by claude_argv: the item after the first `--`."""
    try:
        end = list(argv).index("--", 1)
    except ValueError:
        return None
    return end + 1 if end + 1 < len(argv) else None
