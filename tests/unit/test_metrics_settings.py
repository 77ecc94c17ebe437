"""The metrics settings: defaults (off), and a metrics port that cannot be the API's."""

from __future__ import annotations

import pytest

from rdev.config import ConfigError, load_settings


def test_metrics_are_off_by_default() -> None:
    settings = load_settings()
    assert settings.metrics_token == "" and settings.metrics_port == 0
    assert settings.metrics_host == ""


def test_metrics_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RDEV_METRICS_TOKEN", "t" * 32)
    monkeypatch.setenv("RDEV_METRICS_PORT", "9090")
    monkeypatch.setenv("RDEV_METRICS_HOST", "10.0.0.1")
    settings = load_settings()
    assert (settings.metrics_token, settings.metrics_port, settings.metrics_host) == (
        "t" * 32, 9090, "10.0.0.1",
    )  # fmt: skip


@pytest.mark.parametrize("port", ["8080", "-1", "70000", "http"])
def test_a_bad_metrics_port_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, port: str
) -> None:
    monkeypatch.setenv("PORT", "8080")
    monkeypatch.setenv("RDEV_METRICS_PORT", port)
    with pytest.raises(ConfigError, match="RDEV_METRICS_PORT"):
        load_settings()
