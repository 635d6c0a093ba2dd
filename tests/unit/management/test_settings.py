"""The management and HEP sections of the configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from softswitch.config import ConfigError, load_config


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "softswitch.yaml"
    path.write_text(text)
    return load_config(path).settings


def test_off_loopback_needs_a_token_reported_with_its_position(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, "log:\n  level: info\nmanagement:\n  listen: 0.0.0.0:8089\n")
    [error] = refused.value.errors
    assert error.startswith(f"{tmp_path / 'softswitch.yaml'}:4:") and "token" in error
    with pytest.raises(ConfigError):
        load(tmp_path, "management:\n  listen: '[::]:8089'\n  token: short\n")


def test_token_is_a_secret_and_addresses_parse(tmp_path: Path) -> None:
    settings = load(tmp_path, "management:\n  listen: '[::]:0'\n  token: 0123456789abcdefXYZ\n"
                              "hep:\n  collector: 192.0.2.20:9060\n")
    management = settings.management  # type: ignore[attr-defined]
    assert management.address == ("::", 0)
    assert "0123456789abcdefXYZ" not in repr(settings)
    assert management.token.get_secret_value() == "0123456789abcdefXYZ"
    assert settings.hep.address == ("192.0.2.20", 9060)  # type: ignore[attr-defined]
    defaults = load(tmp_path, "{}\n")
    assert defaults.management.address == ("127.0.0.1", 8089)  # type: ignore[attr-defined]
    assert defaults.hep.address is None  # type: ignore[attr-defined]
    with pytest.raises(ConfigError):
        load(tmp_path, "hep:\n  collector: nowhere\n")
