"""Every process a command started, found by the marker it inherits, and ended with it.

Each command runs with `RDEV_COMMAND_ID=<its id>` in its environment. Fork and exec pass the
environment on, so every descendant carries the marker, also one that left the command's session
and process group (`setsid`), was double-forked and reparented to init, or was `nohup`ed; and the
marker survives the server (after a crash, the next replica finds the processes of a command it
sweeps to `lost`). A scan of `/proc/*/environ` finds them; the same scan runs inside a pod
(adapters/kubernetes/scripts.py), so both backends keep one promise.

Why not the alternatives: a process group or session is left by `setsid`; making the server a
child subreaper (PR_SET_CHILD_SUBREAPER) would hand it every orphan to reap, behind the back of
Popen and the pidfd reaping, and still lose track of them after a crash; cgroups need privileges
rdev does not have. The limit: a process that leaves the command's group *and* execs with a
cleared environment (`setsid env -i …`) is not found; process.py still stops waiting for the
output pipes such a process holds, so the command ends anyway.

Races: processes are signalled through pidfds opened after the marker was seen and re-checked,
so a recycled pid is never hit (kernels without pidfds fall back to the pid). A process may fork
while it is being killed: each pass stops what it found (a stopped process cannot fork), then
kills it, and the next pass scans again, until one finds nothing; the passes are bounded.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal

MARKER = "RDEV_COMMAND_ID"
_PASSES = 100
_PROC = "/proc"


def marker_env(marker: str) -> dict[str, str]:
    return {MARKER: marker}


def _carries(pid: str, needle: bytes) -> bool:
    try:
        with open(f"{_PROC}/{pid}/environ", "rb") as fh:
            environ = fh.read()
    except OSError:  # gone, or not ours to read
        return False
    return needle in b"\0" + environ + b"\0"


def find(marker: str) -> list[int]:
    """Live processes carrying the marker (a zombie's environment reads empty)."""
    needle = f"\0{MARKER}={marker}\0".encode()
    me = os.getpid()
    return [
        int(name)
        for name in os.listdir(_PROC)
        if name.isdigit() and int(name) != me and _carries(name, needle)
    ]


def _open(pid: int, needle: bytes) -> int | None:
    """A handle on `pid` if it still carries the marker once opened (not a recycled pid): a
    pidfd, or where the kernel has none (before Linux 5.3) the negated pid."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError as e:
        if e.errno == errno.ENOSYS and _carries(str(pid), needle):
            return -pid
        return None
    if _carries(str(pid), needle):
        return pidfd
    os.close(pidfd)
    return None


def _send(handle: int, sig: signal.Signals) -> None:
    with contextlib.suppress(OSError):
        if handle < 0:
            os.kill(-handle, sig)
        else:
            signal.pidfd_send_signal(handle, sig)


def _close(handle: int) -> None:
    if handle >= 0:
        os.close(handle)


def signal_all(marker: str, sig: signal.Signals) -> int:
    """Send `sig` to every process carrying the marker; returns how many there were."""
    needle = f"\0{MARKER}={marker}\0".encode()
    sent = 0
    for pid in find(marker):
        handle = _open(pid, needle)
        if handle is not None:
            _send(handle, sig)
            _close(handle)
            sent += 1
    return sent


def end(marker: str, *, group: int | None = None) -> int:
    """SIGKILL every process carrying the marker (and the process group `group`, whose members
    may have cleared their environment), pass after pass until a scan finds none. Returns how
    many processes were killed."""
    needle = f"\0{MARKER}={marker}\0".encode()
    killed: set[int] = set()
    for _ in range(_PASSES):
        if group is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
        found = [(pid, _open(pid, needle)) for pid in find(marker)]
        handles = {pid: handle for pid, handle in found if handle is not None}
        if not handles:
            break
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for handle in handles.values():
                _send(handle, sig)
        for handle in handles.values():
            _close(handle)
        killed.update(handles)  # a killed process may show once more while it exits
    return len(killed)
