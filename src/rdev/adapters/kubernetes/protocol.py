"""The exec websocket protocol (`v5.channel.k8s.io`, `v4.channel.k8s.io`) as pure functions.

Each binary frame is one channel byte and a payload: 0 stdin, 1 stdout, 2 stderr, 3 status,
4 resize; v5 adds 255 <channel> to close a channel (our stdin EOF). Output payloads stay bytes:
a frame may end inside a UTF-8 character, and the runner decodes streams incrementally. The
status frame is how the kubelet says how the process ended; parsing it here keeps "exit code"
and "could not run" apart.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from rdev.domain.errors import BackendUnavailable, ExecFailed, RdevError

STDIN, STDOUT, STDERR, STATUS, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
PROTOCOLS = (V5, V4)
STDIN_CHUNK = 32 * 1024


@dataclass(frozen=True, slots=True)
class Exited:
    """The process ran and ended with this code."""

    code: int


@dataclass(frozen=True, slots=True)
class Refused:
    """The kubelet could not run the process (e.g. executable not found): not an exit code."""

    message: str


@dataclass(frozen=True, slots=True)
class Lost:
    """The connection ended without a status: the outcome is unknown."""

    message: str


Outcome = Exited | Refused | Lost


def split_frame(data: bytes) -> tuple[int, bytes] | None:
    return (data[0], data[1:]) if data else None


def parse_status(raw: bytes) -> Outcome:
    """The channel-3 Status document: Success, NonZeroExitCode with its code, or a failure."""
    try:
        doc = json.loads(raw)
    except ValueError:
        text = raw.decode("utf-8", "replace").strip()
        return Refused(text or "exec failed without a status")
    if not isinstance(doc, dict):
        return Refused("exec status is not an object")
    if doc.get("status") == "Success":
        return Exited(0)
    message = str(doc.get("message") or doc.get("reason") or "exec failed")
    if doc.get("reason") == "NonZeroExitCode":
        code = _exit_code(doc.get("details"))
        if code is not None:
            return Exited(code)
    return Refused(message)


def _exit_code(details: object) -> int | None:
    causes = details.get("causes") if isinstance(details, dict) else None
    for cause in causes if isinstance(causes, list) else []:
        if isinstance(cause, dict) and cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message", ""))
            except ValueError:
                return None
    return None


def stdin_frames(data: bytes, *, protocol: str) -> Iterator[bytes]:
    """Stdin as frames, then (v5 only) CLOSE; v4 has no way to signal EOF."""
    for start in range(0, len(data), STDIN_CHUNK):
        yield bytes([STDIN]) + data[start : start + STDIN_CHUNK]
    if protocol == V5:
        yield bytes([CLOSE, STDIN])


def exec_path(namespace: str, pod: str) -> str:
    return f"/api/v1/namespaces/{namespace}/pods/{pod}/exec"


def exec_query(argv: Sequence[str], *, container: str | None, stdin: bool) -> list[tuple[str, str]]:
    """Each argv element is its own `command=` parameter: nothing is joined into a shell line."""
    query = [("command", arg) for arg in argv]
    if container:
        query.append(("container", container))
    query += [("stdin", _flag(stdin)), ("stdout", "true"), ("stderr", "true"), ("tty", "false")]
    return query


def _flag(value: bool) -> str:
    return "true" if value else "false"


def handshake_error(status: int, pod: str) -> RdevError:
    """An HTTP answer instead of the websocket upgrade, as a domain error."""
    if status == 404:
        return ExecFailed(f"pod {pod} not found", details={"reason": "pod_not_found"})
    if status == 403:
        return ExecFailed(f"exec in pod {pod} is forbidden", details={"reason": "forbidden"})
    if status in (400, 409, 422):
        return ExecFailed(
            f"the Kubernetes API refused the exec in pod {pod} (HTTP {status})",
            details={"reason": "rejected", "status": status},
        )
    return BackendUnavailable(
        f"Kubernetes API answered HTTP {status} to exec", details={"status": status}
    )
