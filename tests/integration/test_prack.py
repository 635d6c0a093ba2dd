"""Reliable provisional responses (RFC 3262) and 422 (RFC 4028) towards a callee."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.server import ServerProcess
from tests.support.trunk_call import call_through_trunk, start_with_trunk

pytestmark = pytest.mark.integration


def test_reliable_ringing_from_the_callee_is_pracked(own_server: ServerProcess,
                                                     tmp_path: Path) -> None:
    port = start_with_trunk(own_server)
    log = call_through_trunk(own_server, port, "uas_100rel.xml", tmp_path)
    assert "4711 1 INVITE" in log  # the RAck of our PRACK names the callee's 180
    # The caller supports 100rel too (pjsua does): its ringing was reliable
    # and PRACKed on its own leg.
    pjsua_log = next(tmp_path.glob("phone-1001-*.pjsua.log")).read_text(errors="replace")
    assert "Require: 100rel" in pjsua_log and "PRACK sip:" in pjsua_log


def test_a_callee_asking_for_a_longer_session_interval_gets_it(own_server: ServerProcess,
                                                                tmp_path: Path) -> None:
    port = start_with_trunk(own_server)
    log = call_through_trunk(own_server, port, "uas_422.xml", tmp_path)
    assert "1800;refresher=uac" in log  # the INVITE again, with the callee's Min-SE
