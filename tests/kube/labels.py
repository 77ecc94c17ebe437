"""Label and field selector matching, as the API server applies them to lists and watches.

Selectors arrive as query strings (``labelSelector=app=x,tier!=db``) and a malformed one must
be refused with 400 like the real server does, so parsing is kept strict.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Matcher = Callable[[Mapping[str, str]], bool]

_SPLIT = re.compile(r",(?![^()]*\))")
_SET = re.compile(r"^([\w./-]+)\s+(in|notin)\s+\(([^()]*)\)$")
_EQ = re.compile(r"^([\w./-]+)\s*(==|!=|=)\s*([\w.-]*)$")
_KEY = re.compile(r"^(!?)\s*([\w./-]+)$")
_FIELDS: dict[str, tuple[str, ...]] = {
    "pods": ("metadata.name", "metadata.namespace", "status.phase", "spec.nodeName"),
    "configmaps": ("metadata.name", "metadata.namespace"),
}


class SelectorError(ValueError):
    """A selector the real API server would reject with 400 BadRequest."""


def _requirement(text: str) -> Matcher:
    if m := _SET.match(text):
        key, op, raw = m.groups()
        values = {v.strip() for v in raw.split(",") if v.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if m := _EQ.match(text):
        key, op, value = m.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if m := _KEY.match(text):
        negate, key = m.groups()
        if negate:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise SelectorError(f"unable to parse requirement: {text!r}")


def parse_label_selector(selector: str | None) -> Matcher:
    """Compile ``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``, ``k in (a,b)``, ``k notin (a)``."""
    parts = [p.strip() for p in _SPLIT.split(selector or "") if p.strip()]
    matchers = [_requirement(p) for p in parts]
    return lambda labels: all(m(labels) for m in matchers)


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        node = node.get(part, "") if isinstance(node, Mapping) else ""
    return str(node)


def parse_field_selector(resource: str, selector: str | None) -> Callable[[Any], bool]:
    """Compile a field selector such as ``metadata.name=x,status.phase!=Running``."""
    checks: list[tuple[str, bool, str]] = []
    for part in (p.strip() for p in (selector or "").split(",") if p.strip()):
        m = _EQ.match(part)
        if m is None:
            raise SelectorError(f"invalid field selector: {part!r}")
        field, op, value = m.groups()
        if field not in _FIELDS.get(resource, ()):
            raise SelectorError(f'field label not supported: "{field}"')
        checks.append((field, op != "!=", value))
    return lambda obj: all((_field_value(obj, f) == v) == eq for f, eq, v in checks)
