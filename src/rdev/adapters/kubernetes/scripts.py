"""The constant `sh` scripts rdev execs in a pod, and the argv that carries client values to them.

Client input (argv, env, paths, file content) only ever travels as positional arguments (`"$@"`)
or stdin, never inside a script, so no quoting bug can turn data into shell code.

The command wrapper records `$$` (its pid, and the command's process-group id once it has
`exec`ed) in `/tmp/rdev-<token>.pid`, so a second exec can signal the whole group: cancel kills
by token, not by anything the command controls. It also exports `RDEV_COMMAND_ID=<marker>`
(the command id), which every process the command starts inherits, also after `setsid`, a double
fork or `nohup`: `reap` finds them all by a scan of `/proc/*/environ` (why this marker: see
adapters/local/tree.py, which does the same on the local backend) and stops then kills them,
pass after pass until none is left, so a process forking meanwhile is caught too. A small watcher
subshell in the same group, started before the marker is set, notices when the command's pid is
gone and reaps what it left behind (`sleep 1000 &` holding stdout would otherwise keep the exec
open forever, since an exec ends only at output EOF). The scan needs `grep` in the container.

A Claude command gets its own temporary folder, `TMPDIR=/tmp/rdev-<token>.tmp` (the CLI leaves
a folder per run in it): the wrapper makes it, the cleanup exec removes it.

Problems the kubelet cannot see (the wrapper always starts) are recorded as marker lines in the
pid file, which the cleanup exec prints and removes: the program is not found, not executable
(or a directory), not an executable format (neither `#!` nor ELF: the shell would otherwise run
it as a script where the kernel refuses it), or the directory cannot be entered.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence

from rdev.domain import policy
from rdev.domain.errors import InvalidInput

SHELL = "sh"
NOT_FOUND = "notfound"
NOT_PERMITTED = "noperm"
NOT_EXECUTABLE = "noexec"
NO_CWD = "nocwd"
MARKER = "RDEV_COMMAND_ID"
EXIT_MISSING = 3  # file scripts: the path does not exist
EXIT_IS_DIR = 4  # write: the target is a directory
EXIT_NO_PARENT = 5  # write: parent directories cannot be created
NAME_MAX = 255  # bytes in one path component
PATH_MAX = 4096  # bytes in a path, with its terminating NUL

# marked M: pids carrying RDEV_COMMAND_ID=M. reap M: SIGSTOP (no more forks) then SIGKILL them,
# until a scan finds none (bounded); prints how many it killed.
REAP = r"""marked() {
  for e in $(grep -lF -e "RDEV_COMMAND_ID=$1" /proc/[0-9]*/environ 2>/dev/null); do
    p=${e#/proc/}; p=${p%/environ}
    [ "$p" = "$$" ] || echo "$p"
  done
}
reap() {
  r=0 k=0
  while [ $r -lt 100 ]; do
    ps=$(marked "$1")
    [ -n "$ps" ] || break
    kill -s STOP $ps 2>/dev/null; kill -s KILL $ps 2>/dev/null
    k=$((k + $(echo "$ps" | wc -l))) r=$((r + 1))
  done
  echo "reaped $k"
}
"""

RUN = (
    REAP
    + r"""t=$1 d=$2 n=$3 m=$4
shift 4
f=/tmp/rdev-$t
echo $$ >"$f.pid" || exit 125
if [ -e "$f.cancel" ]; then exit 143; fi
if [ "$n" -ge 0 ]; then head -c "$n" >"$f.in" && exec <"$f.in"; rm -f "$f.in"; fi
cd "$d" 2>/dev/null || { echo nocwd >>"$f.pid"; exit 126; }
(while [ -d "/proc/$$" ] || kill -0 $$ 2>/dev/null; do sleep 1 || exit 0; done
 reap "$m"; kill -s KILL 0) </dev/null >/dev/null 2>&1 &
while [ "$#" -gt 0 ] && [ "$1" != -- ]; do export "$1"; shift; done
shift
if [ "${TMPDIR-}" = "$f.tmp" ]; then mkdir -m 700 "$f.tmp" || exit 125; fi
export RDEV_COMMAND_ID="$m"
case $1 in
*/*) p=$1 ;;
*) p=$(command -v "$1" 2>/dev/null) || p= ;;
esac
case $p in
'') echo notfound >>"$f.pid"; exit 127 ;;
*/*)
  if [ -d "$p" ] || { [ -e "$p" ] && [ ! -x "$p" ]; }; then echo noperm >>"$f.pid"; exit 126; fi
  [ -f "$p" ] || { echo notfound >>"$f.pid"; exit 127; }
  if [ -r "$p" ]; then
    case $(head -c 4 "$p" 2>/dev/null) in
    '#!'*|"\177ELF") ;;
    *) echo noexec >>"$f.pid"; exit 126 ;;
    esac
  fi ;;
esac
exec "$@"
""".replace("\\177", "\x7f")  # ELF's magic; the file stays printable
)

SIGNAL = (
    REAP
    + r"""f=/tmp/rdev-$1
if [ "$3" = mark ]; then : >"$f.cancel"; fi
if { read -r pg <"$f.pid"; } 2>/dev/null; then
  case $pg in
  ''|*[!0-9]*) ;;
  *) kill -s "$2" -- "-$pg" 2>/dev/null || kill "-$2" "-$pg" 2>/dev/null ;;
  esac
fi
if [ "$2" = KILL ]; then reap "$4" >/dev/null; else kill -s "$2" $(marked "$4") 2>/dev/null; fi
exit 0
"""
)

CLEANUP = (
    REAP
    + r"""f=/tmp/rdev-$1
reap "$2" >/dev/null
if { read -r pg <"$f.pid"; } 2>/dev/null; then
  case $pg in
  ''|*[!0-9]*) ;;
  *) kill -s KILL -- "-$pg" 2>/dev/null || kill -KILL "-$pg" 2>/dev/null ;;
  esac
  cat "$f.pid"
fi
rm -f "$f.pid" "$f.cancel" "$f.in"
rm -rf "$f.tmp"
exit 0
"""
)

KILL = REAP + 'reap "$1"\n'

LIST = r"""cd "$1" 2>/dev/null || exit 0
for e in * .[!.]* ..?*; do
  if [ -e "$e" ] || [ -L "$e" ]; then printf '%s\0' "$e"; fi
done
"""

READ = r"""[ -f "$1" ] || exit 3
exec cat "$1"
"""

WRITE = r"""[ -d "$3" ] && exit 4
mkdir -p "$1" 2>/dev/null || exit 5
if head -c "$4" >"$2" && [ $(wc -c <"$2") -eq "$4" ] && mv -f "$2" "$3"; then exit 0; fi
rm -f "$2"
exit 1
"""

DELETE = r"""[ -e "$1" ] || [ -L "$1" ] || exit 3
rm -rf "$1"
"""

_TOKEN = re.compile(r"[0-9a-f]{8,64}")
_MARKER = re.compile(r"[A-Za-z0-9_]{8,64}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SIGNALS = frozenset({"TERM", "KILL"})
_REAPED = re.compile(rb"^reaped (\d+)$", re.MULTILINE)


def _script(script: str, *args: str) -> list[str]:
    return [SHELL, "-c", script, "rdev", *args]


def _token(token: str) -> str:
    if not _TOKEN.fullmatch(token):
        raise ValueError("token must be lowercase hex")
    return token


def _marker(marker: str) -> str:
    if not _MARKER.fullmatch(marker):
        raise ValueError("marker must be 8-64 letters, digits or _")
    return marker


def run_argv(
    *,
    token: str,
    marker: str,
    workdir: str,
    env: Mapping[str, str],
    argv: Sequence[str],
    stdin_len: int,
) -> list[str]:
    """The wrapped command: `sh -c RUN rdev TOKEN WORKDIR STDIN_LEN MARKER K=V… -- ARGV…`."""
    if not argv:
        raise InvalidInput("argv must not be empty", details={"field": "argv"})
    for name in env:
        if not _ENV_NAME.fullmatch(name):
            raise InvalidInput(f"env name {name!r} is invalid", details={"field": "env"})
    pairs = [f"{name}={value}" for name, value in env.items() if name != MARKER]
    return _script(
        RUN, _token(token), workdir, str(stdin_len), _marker(marker), *pairs, "--", *argv
    )


def program_name_problem(program: str) -> str | None:
    """ENAMETOOLONG when the program's name cannot be a path (the wrapper's shell would only
    report it as not found)."""
    raw = program.encode("utf-8", "surrogateescape")
    if len(raw) >= PATH_MAX or any(len(part) > NAME_MAX for part in raw.split(b"/")):
        return "ENAMETOOLONG"
    return None


def signal_argv(token: str, signal: str, *, marker: str, mark: bool) -> list[str]:
    """Signal the command's group and every marked process (KILL reaps them until none is
    left); `mark` also stops a wrapper that has not started yet."""
    if signal not in _SIGNALS:
        raise ValueError(f"unsupported signal {signal}")
    return _script(SIGNAL, _token(token), signal, "mark" if mark else "", _marker(marker))


def temp_dir(token: str) -> str:
    """The per-command TMPDIR the wrapper makes and the cleanup exec removes."""
    return f"/tmp/rdev-{_token(token)}.tmp"


def cleanup_argv(token: str, *, marker: str) -> list[str]:
    return _script(CLEANUP, _token(token), _marker(marker))


def kill_argv(marker: str) -> list[str]:
    """Reap every process carrying the marker (a swept command's); prints `reaped N`."""
    return _script(KILL, _marker(marker))


def reaped(output: bytes) -> int:
    found = _REAPED.search(output)
    return int(found.group(1)) if found else 0


def markers(pidfile: bytes) -> frozenset[str]:
    """Marker lines the wrapper appended after the pgid (first line)."""
    lines = pidfile.decode("utf-8", "replace").splitlines()
    return frozenset(line.strip() for line in lines[1:] if line.strip())


def workspace_path(
    workspace: str, path: str, *, allow_root: bool = True, field: str = "path"
) -> str:
    """A workspace-relative client path joined onto the project's absolute workspace."""
    rel = policy.check_relative_path(path, field=field) if path else ""
    if not rel and not allow_root:
        raise InvalidInput(
            f"{field} must name a file inside the workspace", details={"field": field}
        )
    return posixpath.normpath(posixpath.join(workspace, rel)) if rel else workspace


def list_argv(directory: str) -> list[str]:
    return _script(LIST, directory)


def read_argv(file: str) -> list[str]:
    return _script(READ, file)


def write_argv(target: str, *, token: str, size: int) -> list[str]:
    """Content arrives on stdin; `head -c SIZE` ends without EOF, so v4 (no CLOSE) works too."""
    parent = posixpath.dirname(target)
    temp = posixpath.join(parent, f".rdev-{_token(token)}.tmp")
    return _script(WRITE, parent, temp, target, str(size))


def delete_argv(path: str) -> list[str]:
    return _script(DELETE, path)


def entry_names(output: bytes) -> list[str]:
    return sorted(name.decode("utf-8", "replace") for name in output.split(b"\0") if name)
