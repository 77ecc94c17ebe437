"""What a Claude run cost: its own share of the CLI's figures, per model.

The CLI's result reports `total_cost_usd` and `modelUsage` (cost and tokens per model) for its
process's cost state, which a resumed session may have restored from the run before it: then
both are cumulative over the session, and summing them over a resumed chain counts every
earlier turn again. Its `usage` is this run's own tokens and is never restored.

So a run's own figures are the reported ones minus its *baseline*: the reported figures of the
session's previous run, the latest of the session's runs that finished before this one
started (a run that overlapped it cannot be what the CLI restored, so concurrent resumes of
one point each subtract the same baseline; a run without figures, e.g. cancelled before its
result, is passed over). Whether the CLI restored anything is read from the tokens: restored
per-model figures hold at least the baseline's tokens plus this run's `usage`, per-run figures
do not. The pinned CLI (2.1.197) restores in `--print` mode only when its project config
names the session as the last one, which `--print` runs do not write; both cases occur.

Whatever the case, the run costs of a chain add up to what the CLI reported over it: nothing is
counted twice, and spend the CLI reported but no earlier run recorded (a cancelled run) falls
to the next run that reports it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

UNKNOWN_MODEL = "unknown"
MAX_MODELS = 20  # a result naming more models keeps the first ones (bounded storage)
_MODEL_CHARS = 100


@dataclass(frozen=True, slots=True)
class Tokens:
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_creation: int = 0

    @property
    def total(self) -> int:
        return self.input + self.output + self.cache_read + self.cache_creation

    def covers(self, other: Tokens) -> bool:
        return (
            self.input >= other.input
            and self.output >= other.output
            and self.cache_read >= other.cache_read
            and self.cache_creation >= other.cache_creation
        )

    def minus(self, other: Tokens) -> Tokens:
        return Tokens(
            max(0, self.input - other.input),
            max(0, self.output - other.output),
            max(0, self.cache_read - other.cache_read),
            max(0, self.cache_creation - other.cache_creation),
        )


@dataclass(frozen=True, slots=True)
class ModelUsage:
    model: str
    cost_usd: float
    tokens: Tokens


@dataclass(frozen=True, slots=True)
class Reported:
    """A result's figures as the CLI gave them: `cost_usd` is `total_cost_usd`, `models` is
    `modelUsage` (both possibly cumulative), `run_tokens` is `usage` (this run only)."""

    cost_usd: float | None
    models: tuple[ModelUsage, ...] = ()
    run_tokens: Tokens | None = None


@dataclass(frozen=True, slots=True)
class RunUsage:
    """A run's own cost and tokens per model (what usage reports sum)."""

    cost_usd: float
    models: tuple[ModelUsage, ...]


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _money(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1e9:
        return float(value)
    return None


def _tokens(obj: Mapping[str, Any], *, camel: bool) -> Tokens:
    if camel:
        names = ("inputTokens", "outputTokens", "cacheReadInputTokens", "cacheCreationInputTokens")
    else:
        names = ("input_tokens", "output_tokens", "cache_read_input_tokens",
                 "cache_creation_input_tokens")  # fmt: skip
    return Tokens(*(_count(obj.get(n)) for n in names))


def parse_reported(result: Mapping[str, Any]) -> Reported:
    """The figures of a stream-json `result` message; anything malformed counts as absent."""
    models = []
    raw = result.get("modelUsage")
    if isinstance(raw, Mapping):
        for name, obj in list(raw.items())[:MAX_MODELS]:
            if isinstance(name, str) and name and isinstance(obj, Mapping):
                cost = _money(obj.get("costUSD")) or 0.0
                models.append(ModelUsage(name[:_MODEL_CHARS], cost, _tokens(obj, camel=True)))
    usage = result.get("usage")
    run_tokens = _tokens(usage, camel=False) if isinstance(usage, Mapping) else None
    return Reported(_money(result.get("total_cost_usd")), tuple(models), run_tokens)


def _by_model(models: Sequence[ModelUsage]) -> dict[str, ModelUsage]:
    return {m.model: m for m in models}


def continues(reported: Reported, baseline: Reported) -> bool:
    """Whether the CLI restored `baseline` before this run, so its figures include it."""
    if reported.cost_usd is None or baseline.cost_usd is None:
        return False
    if reported.cost_usd < baseline.cost_usd:
        return False
    now, before = _by_model(reported.models), _by_model(baseline.models)
    if any(m not in now or not now[m].tokens.covers(b.tokens) for m, b in before.items()):
        return False
    run = reported.run_tokens.total if reported.run_tokens is not None else 0
    total_now = sum(m.tokens.total for m in reported.models)
    total_before = sum(m.tokens.total for m in baseline.models)
    # per-run figures hold only this run's tokens; restored ones hold the baseline's as well
    return total_now >= total_before + run and total_now > run


def run_usage(reported: Reported, baseline: Reported | None, *, model: str | None) -> RunUsage:
    """This run's own cost and per-model tokens. `model` names the row of a result that has
    no `modelUsage` (the init message's model), with `usage` as its tokens."""
    cost = reported.cost_usd or 0.0
    if baseline is not None and continues(reported, baseline):
        assert baseline.cost_usd is not None
        before = _by_model(baseline.models)
        rows = []
        for m in reported.models:
            prev = before.get(m.model)
            if prev is None:
                rows.append(m)
                continue
            own = ModelUsage(
                m.model, max(0.0, m.cost_usd - prev.cost_usd), m.tokens.minus(prev.tokens)
            )
            if own.cost_usd > 0 or own.tokens.total > 0:
                rows.append(own)
        return RunUsage(max(0.0, cost - baseline.cost_usd), tuple(rows))
    if reported.models:
        return RunUsage(cost, reported.models)
    if reported.run_tokens is not None or reported.cost_usd:
        name = (model or UNKNOWN_MODEL)[:_MODEL_CHARS]
        return RunUsage(cost, (ModelUsage(name, cost, reported.run_tokens or Tokens()),))
    return RunUsage(cost, ())


def resumed_session(argv: Sequence[str]) -> str | None:
    """The session a Claude argv (built by argv.claude_argv) resumes, if any."""
    for arg in argv:
        if arg == "--":
            return None
        if arg.startswith("--resume="):
            return arg.removeprefix("--resume=")
    return None


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One day's (UTC) sums for one model."""

    day: date
    model: str
    cost_usd: float
    tokens: Tokens
    commands: int
