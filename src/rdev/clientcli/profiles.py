"""Where the CLI client finds its server and key: `--url`/`--key`, then an explicit
`--profile`, then `RDEV_URL`/`RDEV_API_KEY`, then the profile named by `RDEV_PROFILE` or the
file's `default_profile`.

Profiles live in `$RDEV_CONFIG`, else `$XDG_CONFIG_HOME/rdev/config.toml`, else
`~/.config/rdev/config.toml` (the XDG rule is three lines; platformdirs would be a dependency
for it). The file holds keys, so it is written 0600 in a 0700 folder, and reading one that
others may read prints a warning. TOML is read with tomllib and written by hand: the file is
only tables of strings."""

from __future__ import annotations

import json
import os
import stat
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ProfileError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    key: str | None


def config_path() -> Path:
    if os.environ.get("RDEV_CONFIG"):
        return Path(os.environ["RDEV_CONFIG"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "rdev" / "config.toml"


def load(path: Path | None = None) -> dict[str, Any]:
    path = path or config_path()
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise ProfileError(f"cannot read {path}: {e.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(f"rdev: warning: {path} holds API keys and others may read it; "
              f"run: chmod 600 {path}", file=sys.stderr)  # fmt: skip
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"{path} is not valid TOML: {e}") from None


def _profile(config: dict[str, Any], name: str) -> dict[str, Any]:
    profiles = config.get("profiles") or {}
    found = profiles.get(name)
    if not isinstance(found, dict):
        known = ", ".join(sorted(profiles)) or "none"
        raise ProfileError(f"no profile {name!r} in {config_path()} (profiles: {known})")
    return found


def resolve(url: str | None, key: str | None, profile: str | None) -> Target:
    env = os.environ
    chosen: dict[str, Any] = {}
    if profile:
        chosen = _profile(load(), profile)
    elif not (url or env.get("RDEV_URL")) or not (key or env.get("RDEV_API_KEY")):
        config = load()
        implicit = env.get("RDEV_PROFILE") or config.get("default_profile")
        if implicit:
            chosen = _profile(config, str(implicit))
    final_url = url or (chosen.get("url") if profile else None) or env.get("RDEV_URL")
    final_url = final_url or chosen.get("url")
    final_key = key or (chosen.get("key") if profile else None) or env.get("RDEV_API_KEY")
    final_key = final_key or chosen.get("key")
    if not final_url:
        raise ProfileError(
            "no server: give --url, set RDEV_URL, or add a profile (rdev profile set NAME "
            "--url URL --key KEY)"
        )
    return Target(str(final_url), str(final_key) if final_key else None)


def save_profile(name: str, url: str, key: str | None, *, default: bool) -> Path:
    path = config_path()
    config = load(path)
    profiles = dict(config.get("profiles") or {})
    entry = {"url": url, **({"key": key} if key else {})}
    profiles[name] = entry
    config["profiles"] = profiles
    if default or not config.get("default_profile"):
        config["default_profile"] = name
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(_dump(config))
    os.chmod(tmp, 0o600)  # O_CREAT's mode does not apply to a file that already existed
    tmp.replace(path)
    return path


def _dump(config: dict[str, Any]) -> str:
    """A TOML string is a JSON string for what is kept here (ASCII escapes are TOML's too)."""
    lines = []
    if config.get("default_profile"):
        lines.append(f"default_profile = {json.dumps(str(config['default_profile']))}")
    for name, entry in sorted((config.get("profiles") or {}).items()):
        lines.append(f"\n[profiles.{json.dumps(str(name))}]")
        for field in ("url", "key"):
            if entry.get(field):
                lines.append(f"{field} = {json.dumps(str(entry[field]))}")
    return "\n".join(lines) + "\n"


def server_named(url: str | None, profile: str | None) -> bool:
    """Whether this invocation names a server: `--url`, `--profile`, RDEV_URL, RDEV_PROFILE,
    or a default profile in the config file. `rdev keys` goes over the API then, and
    straight to the database otherwise."""
    if url or profile or os.environ.get("RDEV_URL") or os.environ.get("RDEV_PROFILE"):
        return True
    try:
        return bool(load().get("default_profile"))
    except ProfileError:
        return True  # a broken config file is reported by the API path, not ignored
