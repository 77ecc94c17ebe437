"""The constant `sh` scripts rdev execs in a pod, and the argv that carries client values to them.

Client input (argv, env, paths, file content) only ever travels as positional arguments (`"$@"`)
or stdin, never inside a script, so no quoting bug can turn data into shell code.

The command wrapper records `$$` (its pid, and the command's process-group id once it has
`exec`ed) in `/tmp/rdev-<token>.pid`, so a second exec can signal the whole group: cancel kills
by token, not by anything the command controls. A small watcher subshell in the same group
notices when the command's pid is gone and kills what it left behind (`sleep 1000 &` holding
stdout would otherwise keep the exec open forever, since an exec ends only at output EOF).
Problems the kubelet cannot see (the wrapper always starts) are recorded as marker lines in the
pid file, which the cleanup exec prints and removes.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence

from rdev.domain import policy
from rdev.domain.errors import InvalidInput

SHELL = "sh"
NOT_FOUND = "notfound"
NO_CWD = "nocwd"
EXIT_MISSING = 3  # file scripts: the path does not exist
EXIT_IS_DIR = 4  # write: the target is a directory
EXIT_NO_PARENT = 5  # write: parent directories cannot be created

RUN = r"""t=$1 d=$2 n=$3
shift 3
f=/tmp/rdev-$t
echo $$ >"$f.pid" || exit 125
if [ -e "$f.cancel" ]; then exit 143; fi
if [ "$n" -ge 0 ]; then head -c "$n" >"$f.in" && exec <"$f.in"; rm -f "$f.in"; fi
cd "$d" 2>/dev/null || { echo nocwd >>"$f.pid"; exit 126; }
(while [ -d "/proc/$$" ] || kill -0 $$ 2>/dev/null; do sleep 1 || exit 0; done
 kill -s KILL 0) </dev/null >/dev/null 2>&1 &
while [ "$#" -gt 0 ] && [ "$1" != -- ]; do export "$1"; shift; done
shift
case $1 in
*/*) [ -f "$1" ] && [ -x "$1" ] ;;
*) command -v "$1" >/dev/null 2>&1 ;;
esac || { echo notfound >>"$f.pid"; exit 127; }
exec "$@"
"""

SIGNAL = r"""f=/tmp/rdev-$1
if [ "$3" = mark ]; then : >"$f.cancel"; fi
{ read -r pg <"$f.pid"; } 2>/dev/null || exit 0
case $pg in ''|*[!0-9]*) exit 0 ;; esac
kill -s "$2" -- "-$pg" 2>/dev/null || kill "-$2" "-$pg" 2>/dev/null
exit 0
"""

CLEANUP = r"""f=/tmp/rdev-$1
if { read -r pg <"$f.pid"; } 2>/dev/null; then
  case $pg in
  ''|*[!0-9]*) ;;
  *) kill -s KILL -- "-$pg" 2>/dev/null || kill -KILL "-$pg" 2>/dev/null ;;
  esac
  cat "$f.pid"
fi
rm -f "$f.pid" "$f.cancel" "$f.in"
exit 0
"""

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
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SIGNALS = frozenset({"TERM", "KILL"})


def _script(script: str, *args: str) -> list[str]:
    return [SHELL, "-c", script, "rdev", *args]


def _token(token: str) -> str:
    if not _TOKEN.fullmatch(token):
        raise ValueError("token must be lowercase hex")
    return token


def run_argv(
    *, token: str, workdir: str, env: Mapping[str, str], argv: Sequence[str], stdin_len: int
) -> list[str]:
    """The wrapped command: `sh -c RUN rdev TOKEN WORKDIR STDIN_LEN K=V… -- ARGV…`."""
    if not argv:
        raise InvalidInput("argv must not be empty", details={"field": "argv"})
    for name in env:
        if not _ENV_NAME.fullmatch(name):
            raise InvalidInput(f"env name {name!r} is invalid", details={"field": "env"})
    pairs = [f"{name}={value}" for name, value in env.items()]
    return _script(RUN, _token(token), workdir, str(stdin_len), *pairs, "--", *argv)


def signal_argv(token: str, signal: str, *, mark: bool) -> list[str]:
    """Signal the command's group; `mark` also stops a wrapper that has not started yet."""
    if signal not in _SIGNALS:
        raise ValueError(f"unsupported signal {signal}")
    return _script(SIGNAL, _token(token), signal, "mark" if mark else "")


def cleanup_argv(token: str) -> list[str]:
    return _script(CLEANUP, _token(token))


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
