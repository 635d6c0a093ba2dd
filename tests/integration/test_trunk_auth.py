"""Outbound calls to a trunk that challenges our INVITEs (RFC 3261 22.2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from softswitch.cdr import Disposition
from tests.support.cdrs import wait_for_cdrs
from tests.support.server import ServerProcess
from tests.support.trunk_call import call_through_trunk, start_with_trunk

pytestmark = pytest.mark.integration


def test_provider_challenge_is_answered_with_the_trunk_credentials(
        own_server: ServerProcess, tmp_path: Path) -> None:
    port = start_with_trunk(own_server, username="trunkuser", password="trunkpass")
    log = call_through_trunk(own_server, port, "uas_auth.xml", tmp_path)
    # The dialplan normalised the number to E.164 before it went out.
    assert "dialled INVITE sip:+12125551234@" in log
    [record] = wait_for_cdrs(own_server.data_dir)
    assert record.disposition is Disposition.ANSWERED and record.trunk == "provider"
    assert record.b_leg_codes[-1] == 200
