"""What rdev accepts as text, in one place: Unicode scalar values without NUL.

A JSON body can carry a lone surrogate (`"\\ud800"`) and a URL can carry `%00` or bytes that
are not UTF-8. Neither can be encoded for a response, written to a file name, passed in argv
or environment, or stored by PostgreSQL, so the edge refuses them (`problem`) before anything
is stored. `scrub` is for the other direction: text that reached storage before these rules
(or from a process's output) is shown with U+FFFD instead of failing the read."""

from __future__ import annotations

REPLACEMENT = "\ufffd"


def problem(value: str) -> str | None:
    """Why `value` is not acceptable text, or None when it is."""
    if "\x00" in value:
        return "must not contain a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode (it holds a lone surrogate)"
    return None


def decode(raw: bytes) -> str | None:
    """Bytes as acceptable text (strict UTF-8, no NUL), or None."""
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if "\x00" in value else value


def scrub(value: str) -> str:
    """`value` with each lone surrogate replaced by U+FFFD; valid text is returned as is."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


def utf8(value: str) -> bytes:
    """UTF-8 bytes of `value`, lone surrogates replaced: encoding never fails a response."""
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        return scrub(value).encode("utf-8")
