"""One `hep:` block for SIP and RTCP: the embedded relay's command line and environment."""

from __future__ import annotations

from pathlib import Path

from twisted.internet import task

from softswitch.config import load_config
from softswitch.relay.child import HEP_AUTH_KEY_ENV
from softswitch.relay.side import build_media_side


def side_for(tmp_path: Path, hep: str) -> tuple[list[str], dict[str, str] | None]:
    path = tmp_path / "softswitch.yaml"
    path.write_text("media:\n  advertise: 192.0.2.5\n" + hep)
    side = build_media_side(load_config(path), tmp_path, task.Clock())
    assert side.embedded is not None
    return side.embedded.argv, side.embedded.env


def test_the_embedded_relay_captures_rtcp_where_the_softswitch_captures_sip(
        tmp_path: Path) -> None:
    argv, env = side_for(tmp_path, "hep:\n  collector: 192.0.2.20:9060\n  agent_id: 4\n"
                                   "  auth_key: s3cret\n")
    assert argv[argv.index("--hep") + 1] == "192.0.2.20:9060"
    assert argv[argv.index("--hep-id") + 1] == "4"
    assert "s3cret" not in " ".join(argv)  # ps shows the command line
    assert env is not None and env[HEP_AUTH_KEY_ENV] == "s3cret"
    assert env.get("PATH")  # the rest of our environment still goes with it


def test_without_a_collector_the_relay_captures_nothing(tmp_path: Path) -> None:
    argv, env = side_for(tmp_path, "")
    assert "--hep" not in argv and env is None
