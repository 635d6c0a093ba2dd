"""`softswitch relay` options: bad values are usage errors (exit 2) naming the option."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from softswitch.cli import main
from softswitch.cli.relay_cmd import parse_host_port, parse_ports, parse_udp


def test_parse_udp() -> None:
    assert parse_udp("udp:127.0.0.1:2223") == ("127.0.0.1", 2223)
    assert parse_udp("udp:[::1]:2223") == ("::1", 2223)
    for bad in ("udp:127.0.0.1", "udp:host:22", "udp:1.2.3.4:0", "tcp:1.2.3.4:99999"):
        with pytest.raises(ValueError):
            parse_udp(bad)


def test_parse_host_port() -> None:
    assert parse_host_port("127.0.0.1:9060") == ("127.0.0.1", 9060)
    assert parse_host_port("[::1]:9060") == ("::1", 9060)
    assert parse_host_port("homer.example:9060") == ("homer.example", 9060)
    for bad in ("homer.example", ":9060", "::1:9060", "h:0", "h:x"):
        with pytest.raises(ValueError):
            parse_host_port(bad)


def test_parse_ports() -> None:
    assert parse_ports("30000-39999") == (30000, 39999)
    for bad in ("3-4", "40000-30000", "x-y", "30000"):
        with pytest.raises(ValueError):
            parse_ports(bad)


@pytest.mark.parametrize("args", [
    ["relay", "--advertise", "not-an-ip"],
    ["relay", "--advertise", "127.0.0.1", "--ports", "9-8"],
    ["relay", "--advertise", "127.0.0.1", "--control", "udp:x"],
    ["relay", "--advertise", "127.0.0.1", "--hep", "nowhere"],
    ["relay", "--advertise", "127.0.0.1", "--hep", "127.0.0.1:9060", "--hep-id", "-1"],
    ["relay"],
])
def test_bad_options_are_usage_errors(args: list[str]) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "Error" in result.output
