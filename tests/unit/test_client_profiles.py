"""Where the CLI client takes its server and key from, in order: flags, an explicit
--profile, RDEV_URL/RDEV_API_KEY, RDEV_PROFILE or the file's default profile; and the
profile file kept private."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from rdev.clientcli import profiles
from rdev.clientcli.profiles import ProfileError, Target, resolve, save_profile, server_named


@pytest.fixture(autouse=True)
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("RDEV_URL", "RDEV_API_KEY", "RDEV_PROFILE", "RDEV_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "rdev" / "config.toml"


def two_profiles() -> None:
    save_profile("a", "http://a", "ka", default=False)  # the first becomes the default
    save_profile("b", "http://b", "kb", default=False)


def test_nothing_configured_is_an_error_that_says_what_to_do() -> None:
    with pytest.raises(ProfileError, match="--url"):
        resolve(None, None, None)
    assert not server_named(None, None)


def test_the_default_profile(config: Path) -> None:
    two_profiles()
    assert resolve(None, None, None) == Target("http://a", "ka")
    assert server_named(None, None)
    assert 'default_profile = "a"' in config.read_text()


def test_rdev_profile_names_another(monkeypatch: pytest.MonkeyPatch) -> None:
    two_profiles()
    monkeypatch.setenv("RDEV_PROFILE", "b")
    assert resolve(None, None, None) == Target("http://b", "kb")


def test_the_environment_beats_an_implicit_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    two_profiles()
    monkeypatch.setenv("RDEV_URL", "http://env")
    assert resolve(None, None, None) == Target("http://env", "ka")  # the key from the profile
    monkeypatch.setenv("RDEV_API_KEY", "kenv")
    assert resolve(None, None, None) == Target("http://env", "kenv")


def test_an_explicit_profile_beats_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    two_profiles()
    monkeypatch.setenv("RDEV_URL", "http://env")
    monkeypatch.setenv("RDEV_API_KEY", "kenv")
    assert resolve(None, None, "b") == Target("http://b", "kb")


def test_flags_beat_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    two_profiles()
    monkeypatch.setenv("RDEV_URL", "http://env")
    assert resolve("http://flag", "kflag", "b") == Target("http://flag", "kflag")


def test_an_unknown_profile_names_the_known_ones() -> None:
    two_profiles()
    with pytest.raises(ProfileError, match=r"no profile 'c'.*profiles: a, b"):
        resolve(None, None, "c")


def test_the_file_is_private_even_when_it_was_not(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    two_profiles()
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    config.chmod(0o644)
    profiles.load()
    assert "chmod 600" in capsys.readouterr().err
    save_profile("c", "http://c", None, default=True)
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert resolve(None, None, None) == Target("http://c", None)


@pytest.mark.parametrize("name", ['we"ird', "sp ace", "ünï", "a.b", "x\\y"])
def test_names_and_values_survive_the_round_trip(name: str) -> None:
    save_profile(name, 'http://h/"q"', "k\\ey", default=True)
    assert resolve(None, None, name) == Target('http://h/"q"', "k\\ey")


def test_a_broken_file_is_reported(config: Path) -> None:
    config.parent.mkdir(parents=True)
    config.write_text("default_profile = [")
    with pytest.raises(ProfileError, match="not valid TOML"):
        resolve(None, None, None)
