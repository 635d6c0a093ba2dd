"""Loading and validating conf/softswitch.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from softswitch.config import ConfigError, ListenAddress, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_config_loads() -> None:
    config = load_config(ROOT / "conf" / "softswitch.yaml")
    assert [str(a) for a in config.settings.listen_addresses] == [
        "udp:0.0.0.0:5060", "tcp:0.0.0.0:5060"]
    assert config.resolve("dialplan.yaml") == ROOT / "conf" / "dialplan.yaml"


@pytest.mark.parametrize("text,expected", [
    ("udp:127.0.0.1:5060", ListenAddress("udp", "127.0.0.1", 5060)),
    ("TLS:[::1]:5061", ListenAddress("tls", "::1", 5061)),
    ("tcp::5080", ListenAddress("tcp", "0.0.0.0", 5080)),
])
def test_listen_address_forms(text: str, expected: ListenAddress) -> None:
    assert ListenAddress.parse(text) == expected


@pytest.mark.parametrize("text", ["sctp:1.2.3.4:5060", "udp:1.2.3.4", "udp:1.2.3.4:99999",
                                  "udp:[::1:5060"])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(ValueError):
        ListenAddress.parse(text)


def test_every_error_is_reported_with_its_position(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("listen:\n  - udp:0.0.0.0:5060\n  - foo:1\nsip:\n  t1: -1\n  bogus: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.errors == [
        f"{path}:3:5: listen.1: expected udp:HOST:PORT, tcp:HOST:PORT or tls:HOST:PORT, got 'foo:1'",
        f"{path}:5:7: sip.t1: Input should be greater than 0",
        f"{path}:6:10: sip.bogus: Extra inputs are not permitted",
    ]


def test_yaml_syntax_error_has_a_position(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("listen: [udp:0.0.0.0:5060\nsip: {\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.errors[0].startswith(f"{path}:")
    assert info.value.errors[0].split(":")[1].isdigit()


def test_media_defaults_and_settings(tmp_path: Path) -> None:
    path = tmp_path / "media.yaml"
    path.write_text(
        "media:\n  mode: direct\n  embedded: false\n"
        "  relays:\n    - address: udp:10.0.0.5:2223\n      weight: 3\n"
        "trunks:\n  - name: t\n    host: 192.0.2.1\n    media: relay\n")
    s = load_config(path).settings
    assert s.media.mode == "direct" and not s.media.embedded
    assert [(r.address, r.weight) for r in s.media.relays] == [("udp:10.0.0.5:2223", 3)]
    assert s.trunks[0].media == "relay"
    default = load_config(None).settings
    assert default.media.mode == "relay" and default.media.embedded
    assert default.media.ports == "16384-32767"


def test_media_errors_have_positions(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "media:\n  mode: relayed\n  ports: 40000-30000\n"
        "  relays:\n    - address: 10.0.0.5\n      weight: -1\n"
        "trunks:\n  - name: t\n    host: h\n    media: sometimes\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert sorted(info.value.errors) == sorted([
        f"{path}:2:9: media.mode: Input should be 'relay' or 'direct'",
        f"{path}:3:10: media.ports: expected LOW-HIGH between 1024 and 65535, got '40000-30000'",
        f"{path}:5:16: media.relays.0.address: expected udp:HOST:PORT, got '10.0.0.5'",
        f"{path}:6:15: media.relays.0.weight: Input should be greater than or equal to 0",
        f"{path}:10:12: trunks.0.media: Input should be 'relay' or 'direct'",
    ])


def test_relay_mode_without_any_relay_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "none.yaml"
    path.write_text("media:\n  embedded: false\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    [error] = info.value.errors
    assert error.startswith(f"{path}:1:1: ") and "relays must list at least one relay" in error


def test_trunk_record_calls_needs_relayed_media(tmp_path: Path) -> None:
    good = tmp_path / "rec.yaml"
    good.write_text("trunks:\n  - name: t\n    host: 192.0.2.1\n    record_calls: true\n")
    assert load_config(good).settings.trunks[0].record_calls
    bad = tmp_path / "direct.yaml"
    bad.write_text("trunks:\n  - name: t\n    host: 192.0.2.1\n    media: direct\n"
                   "    record_calls: true\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    [error] = info.value.errors
    assert "trunk t: record_calls needs relayed media" in error


def test_overload_and_stream_limits_load_and_bad_values_have_positions(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("overload:\n  max_udp_queue: 0\n  loss_step: 1.0\n"
                    "sip:\n  max_connections_per_source: 3\n  partial_timeout: 2\n")
    settings = load_config(good).settings
    assert settings.overload.max_udp_queue == 0 and settings.overload.loss_step == 1.0
    assert settings.overload.enabled and settings.sip.max_connections_per_source == 3
    bad = tmp_path / "bad.yaml"
    bad.write_text("overload:\n  loss_step: 2\n  drop_factor: 0.5\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert any(e.startswith(f"{bad}:2:14: overload.loss_step") for e in info.value.errors)
    assert any(e.startswith(f"{bad}:3:16: overload.drop_factor") for e in info.value.errors)
