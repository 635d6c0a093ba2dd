"""Calls through the B2BUA between real pjsua2 softphones."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from softswitch.cdr import CdrRecord, Disposition, HangupSide, read_cdrs
from tests.support.phone import Phone, PhoneError, start_phones
from tests.support.server import ROOT, ServerProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration





def cdrs(server: ServerProcess) -> list[CdrRecord]:
    path = server.data_dir / "cdr.sqlite"
    return read_cdrs(path) if path.exists() else []


@pytest.fixture
def phones(server: ServerProcess, tmp_path: Path) -> Iterator[tuple[Phone, Phone]]:
    a, b = start_phones([
        dict(user="1001", password="1001pass", server_port=server.udp_port, log_dir=tmp_path),
        dict(user="1002", password="1002pass", server_port=server.udp_port, log_dir=tmp_path),
    ])
    try:
        assert a.register() == 200 and b.register() == 200
        yield a, b
    finally:
        a.close()
        b.close()


def test_call_answer_rtp_both_ways_and_caller_hangs_up(server: ServerProcess,
                                                       phones: tuple[Phone, Phone]) -> None:
    a, b = phones
    before = len(cdrs(server))
    call = a.call(f"sip:1002@127.0.0.1:{server.udp_port}")
    incoming = b.wait_event("incoming_call", 10)
    assert "1001" in incoming["remote_uri"]
    b.answer(incoming["call"], 180)
    a.wait_call_state(call, "EARLY", 10)
    b.answer(incoming["call"], 200)
    a.wait_call_state(call, "CONFIRMED", 10)
    # Direct media: each phone receives the other's RTP.
    wait_for(lambda: a.stats(call)["rx_packets"] > 25 and b.stats(incoming["call"])["rx_packets"] > 25,
             10, "RTP both ways")
    a.hangup(call)
    b.wait_call_state(incoming["call"], "DISCONNECTED", 10)
    records = wait_for(lambda: cdrs(server)[before:], 10, "the CDR")
    [record] = records
    assert record.caller == "1001" and record.dialled == "1002" and record.callee == "user/1002"
    assert record.disposition is Disposition.ANSWERED and record.hangup_side.value == "caller"
    assert record.answer is not None and record.billsec > 0.5


# -- the scenarios of the B2BUA issue, on a server of this module ------------------------------
#
# One server for the scenarios below, with the shipped dialplan plus a few
# test rules in `internal` (short ring timeouts and their branches). Its
# phones unregister when their test ends, so that no stale binding of a
# closed phone is forked to by the next test.

PASSWORDS = {"1001": "1001pass", "1002": "1002pass", "1003": "1003pass", "1004": "1004pass"}

TEST_RULES = [
    {"name": "test-no-answer-goto", "match": "2002",
     "actions": [{"dial": {"to": "user/1002", "timeout": 3,
                           "on_no_answer": [{"goto": {"context": "internal",
                                                      "number": "1004"}}]}}]},
    {"name": "test-no-answer-hangup", "match": "2102",
     "actions": [{"dial": {"to": "user/1002", "timeout": 2,
                           "on_no_answer": [{"hangup": {"code": 480,
                                                        "reason": "Nobody Home"}}]}}]},
    {"name": "test-busy-no-branch", "match": "2202",
     "actions": [{"dial": "user/1002"}]},
]


@pytest.fixture(scope="module")
def pbx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with the shipped dialplan and the test rules above."""
    workdir = Path(tmp_path_factory.mktemp("b2bua"))
    yaml = YAML(typ="safe")
    plan = yaml.load((ROOT / "conf" / "dialplan.yaml").read_text())
    plan["contexts"]["internal"]["rules"][:0] = TEST_RULES
    plan_path = workdir / "dialplan.yaml"
    yaml.dump(plan, plan_path)
    proc = ServerProcess(workdir / "server", dialplan=plan_path)
    proc.start()
    yield proc
    proc.stop()


class Phones:
    """Registered phones on `pbx`, unregistered and closed at the end of the test."""

    def __init__(self, server: ServerProcess, log_dir: Path) -> None:
        self.server = server
        self.log_dir = log_dir
        self.started: list[Phone] = []

    def __call__(self, user: str) -> Phone:
        return self.many(user)[0]

    def many(self, *users: str) -> list[Phone]:
        new = start_phones([dict(user=u, password=PASSWORDS[u], server_port=self.server.udp_port,
                                 log_dir=self.log_dir) for u in users])
        self.started.extend(new)
        for p in new:
            assert p.register() == 200, p.log()
        return new

    def close(self) -> None:
        for p in self.started:
            try:
                if p.process.poll() is None:
                    p.unregister(5)
            except PhoneError:
                pass
            p.close()


@pytest.fixture
def phone(pbx: ServerProcess, tmp_path: Path) -> Iterator[Phones]:
    """`phone("1002")`: a registered phone of that user; `phone.many(...)`: several."""
    phones = Phones(pbx, tmp_path)
    try:
        yield phones
    finally:
        phones.close()


def uri(server: ServerProcess, number: str) -> str:
    return f"sip:{number}@127.0.0.1:{server.udp_port}"


def new_cdr(server: ServerProcess, before: int) -> CdrRecord:
    [record] = wait_for(lambda: cdrs(server)[before:], 10, "the CDR")
    return record


def ring(a: Phone, b: Phone, server: ServerProcess, number: str) -> tuple[int, int]:
    """A calls `number`, B gets the call and answers 180; A sees EARLY."""
    since = b.mark()
    call = a.call(uri(server, number))
    incoming = b.wait_event("incoming_call", 10, since=since)
    b.answer(incoming["call"], 180)
    a.wait_call_state(call, "EARLY", 10)
    return call, int(incoming["call"])


def connect(a: Phone, b: Phone, server: ServerProcess, number: str) -> tuple[int, int]:
    call, incoming = ring(a, b, server, number)
    b.answer(incoming, 200)
    a.wait_call_state(call, "CONFIRMED", 10)
    b.wait_call_state(incoming, "CONFIRMED", 10)
    return call, incoming


def rtp_flows(a: Phone, call: int, b: Phone, incoming: int, more_than: int = 10) -> None:
    base_a, base_b = a.stats(call)["rx_packets"], b.stats(incoming)["rx_packets"]
    wait_for(lambda: a.stats(call)["rx_packets"] > base_a + more_than
             and b.stats(incoming)["rx_packets"] > base_b + more_than, 10, "RTP both ways")


def test_callee_hangs_up(pbx: ServerProcess, phone: Phones) -> None:
    a, b = phone("1001"), phone("1002")
    before = len(cdrs(pbx))
    call, incoming = connect(a, b, pbx, "1002")
    rtp_flows(a, call, b, incoming)
    b.hangup(incoming)
    ended = a.wait_call_state(call, "DISCONNECTED", 10)
    assert ended["code"] == 200  # the call was up; pjsua keeps the 200's code
    record = new_cdr(pbx, before)
    assert record.disposition is Disposition.ANSWERED
    assert record.hangup_side is HangupSide.CALLEE and record.hangup_cause == "BYE"
    assert record.callee == "user/1002" and record.sip_code == 200
    assert record.b_leg_codes == [200] and record.billsec > 0


def test_busy_callee_runs_the_shipped_on_busy_branch(pbx: ServerProcess,
                                                     phone: Phones) -> None:
    """The shipped plan sends a busy extension to voicemail, which cannot run
    without the media relay: the caller still hears the callee's busy (a
    failed fallback does not hide the original failure)."""
    a, b = phone("1001"), phone("1002")
    before = len(cdrs(pbx))
    since = b.mark()
    call = a.call(uri(pbx, "1002"))
    incoming = b.wait_event("incoming_call", 10, since=since)
    b.answer(incoming["call"], 486)
    ended = a.wait_call_state(call, "DISCONNECTED", 10)
    assert ended["code"] == 486
    record = new_cdr(pbx, before)
    assert record.sip_code == 486 and record.b_leg_codes == [486]
    assert record.hangup_side is HangupSide.CALLEE and record.answer is None


def test_busy_callee_cdr_says_busy_despite_the_branch(pbx: ServerProcess,
                                                      phone: Phones) -> None:
    a, b = phone("1001"), phone("1002")
    before = len(cdrs(pbx))
    since = b.mark()
    call = a.call(uri(pbx, "1002"))
    incoming = b.wait_event("incoming_call", 10, since=since)
    b.answer(incoming["call"], 486)
    a.wait_call_state(call, "DISCONNECTED", 10)
    assert new_cdr(pbx, before).disposition is Disposition.BUSY


def test_busy_callee_without_branch_gives_486(pbx: ServerProcess,
                                              phone: Phones) -> None:
    a, b = phone("1001"), phone("1002")
    before = len(cdrs(pbx))
    since = b.mark()
    call = a.call(uri(pbx, "2202"))
    incoming = b.wait_event("incoming_call", 10, since=since)
    b.answer(incoming["call"], 486)
    ended = a.wait_call_state(call, "DISCONNECTED", 10)
    assert ended["code"] == 486
    record = new_cdr(pbx, before)
    assert record.disposition is Disposition.BUSY and record.sip_code == 486
    assert record.b_leg_codes == [486] and record.hangup_side is HangupSide.CALLEE


def test_no_answer_goto_branch_rings_the_next_extension(pbx: ServerProcess,
                                                        phone: Phones) -> None:
    """2002 rings 1002 for 3 s; its on_no_answer goes to 1004, who answers."""
    a, b, d = phone("1001"), phone("1002"), phone("1004")
    before = len(cdrs(pbx))
    call, first = ring(a, b, pbx, "2002")
    since = d.mark()
    # The ring timeout cancels 1002 and the branch rings 1004.
    b.wait_call_state(first, "DISCONNECTED", 10)
    incoming = d.wait_event("incoming_call", 10, since=since)
    d.answer(incoming["call"], 200)
    a.wait_call_state(call, "CONFIRMED", 10)
    rtp_flows(a, call, d, int(incoming["call"]))
    a.hangup(call)
    d.wait_call_state(int(incoming["call"]), "DISCONNECTED", 10)
    record = new_cdr(pbx, before)
    assert record.dialled == "2002" and record.callee == "user/1004"
    assert record.disposition is Disposition.ANSWERED
    assert record.b_leg_codes == [487, 200] and record.hangup_side is HangupSide.CALLER


def _no_answer_via_hangup_branch(pbx: ServerProcess, phone: Phones) -> CdrRecord:
    """2102 rings 1002 for 2 s, then its on_no_answer answers 480 "Nobody Home"."""
    a, b = phone("1001"), phone("1002")
    before = len(cdrs(pbx))
    call, incoming = ring(a, b, pbx, "2102")
    stopped = b.wait_call_state(incoming, "DISCONNECTED", 10)
    assert stopped["code"] == 487  # the ring timeout CANCELs the B-leg
    ended = a.wait_call_state(call, "DISCONNECTED", 10)
    assert (ended["code"], ended["reason"]) == (480, "Nobody Home")
    return new_cdr(pbx, before)


def test_no_answer_hangup_branch(pbx: ServerProcess, phone: Phones) -> None:
    record = _no_answer_via_hangup_branch(pbx, phone)
    assert record.sip_code == 480 and record.hangup_cause == "480 Nobody Home"
    assert record.answer is None and record.callee is None
    assert 1.5 < record.duration < 6


def test_no_answer_hangup_branch_cdr_says_no_answer(pbx: ServerProcess, phone: Phones) -> None:
    record = _no_answer_via_hangup_branch(pbx, phone)
    assert record.disposition is Disposition.NO_ANSWER
    assert record.b_leg_codes == [487]


def test_caller_cancels_while_ringing(pbx: ServerProcess, phone: Phones) -> None:
    a, b = phone("1001"), phone("1002")
    before = len(cdrs(pbx))
    call, incoming = ring(a, b, pbx, "1002")
    a.hangup(call)  # before the answer: CANCEL
    stopped = b.wait_call_state(incoming, "DISCONNECTED", 10)
    assert stopped["code"] == 487
    ended = a.wait_call_state(call, "DISCONNECTED", 10)
    assert ended["code"] == 487
    record = new_cdr(pbx, before)
    assert record.disposition is Disposition.CANCELLED and record.sip_code == 487
    assert record.hangup_side is HangupSide.CALLER and record.answer is None


def test_two_devices_ring_and_the_other_stops_when_one_answers(
        pbx: ServerProcess, phone: Phones) -> None:
    a = phone("1001")
    desk, mobile = phone.many("1002", "1002")
    before = len(cdrs(pbx))
    marks = desk.mark(), mobile.mark()
    call = a.call(uri(pbx, "1002"))
    rings = [p.wait_event("incoming_call", 10, since=m) for p, m in zip((desk, mobile), marks, strict=True)]
    for p, event in zip((desk, mobile), rings, strict=True):
        p.answer(event["call"], 180)
    a.wait_call_state(call, "EARLY", 10)
    mobile.answer(rings[1]["call"], 200)
    a.wait_call_state(call, "CONFIRMED", 10)
    stopped = desk.wait_call_state(rings[0]["call"], "DISCONNECTED", 10)
    assert stopped["code"] == 487
    # The CANCEL says why (RFC 3326), so the desk phone logs no missed call.
    cancel = wait_for(lambda: _cancel_received(desk), 5, "the CANCEL in the desk's log")
    assert re.search(r'^Reason:\s*SIP\s*;\s*cause=200\s*;\s*text="Call completed elsewhere"',
                     cancel, re.MULTILINE | re.IGNORECASE), cancel
    rtp_flows(a, call, mobile, int(rings[1]["call"]))
    a.hangup(call)
    mobile.wait_call_state(int(rings[1]["call"]), "DISCONNECTED", 10)
    record = new_cdr(pbx, before)
    assert record.disposition is Disposition.ANSWERED and record.callee == "user/1002"
    assert sorted(record.b_leg_codes) == [200, 487]


def _cancel_received(phone: Phone) -> str | None:
    """The first CANCEL request in the phone's pjsua log, if any."""
    text = phone.pjsua_log_path.read_text(errors="replace")
    match = re.search(r"RX \d+ bytes Request msg CANCEL.*?\n(CANCEL .*?)\n--end msg--", text,
                      re.DOTALL)
    return match.group(1) if match else None


def test_hold_and_resume(pbx: ServerProcess, phone: Phones) -> None:
    a, b = phone("1001"), phone("1002")
    before = len(cdrs(pbx))
    call, incoming = connect(a, b, pbx, "1002")
    rtp_flows(a, call, b, incoming)
    since_a, since_b = a.mark(), b.mark()
    a.hold(call)
    # The re-INVITE (sendonly) reaches B, who answers recvonly.
    b.wait_event("media_state", 10, since=since_b,
                 where=lambda e: e["call"] == incoming and e["status"] == "REMOTE_HOLD")
    a.wait_event("media_state", 10, since=since_a,
                 where=lambda e: e["call"] == call and e["status"] == "LOCAL_HOLD")
    since_a, since_b = a.mark(), b.mark()
    a.unhold(call)
    b.wait_event("media_state", 10, since=since_b,
                 where=lambda e: e["call"] == incoming and e["status"] == "ACTIVE")
    a.wait_event("media_state", 10, since=since_a,
                 where=lambda e: e["call"] == call and e["status"] == "ACTIVE")
    rtp_flows(a, call, b, incoming, more_than=25)
    # Neither re-INVITE ended or disturbed the call.
    for p, c in ((a, call), (b, incoming)):
        assert [e["state"] for e in p.events_named("call_state") if e["call"] == c][-1] \
            == "CONFIRMED"
    a.hangup(call)
    b.wait_call_state(incoming, "DISCONNECTED", 10)
    record = new_cdr(pbx, before)
    assert record.disposition is Disposition.ANSWERED
    assert record.hangup_side is HangupSide.CALLER


def test_unregistered_user_runs_the_shipped_no_answer_branch(
        pbx: ServerProcess, phone: Phones) -> None:
    """1003 has no phone on this server: the dial fails with 480; the shipped
    plan's on_no_answer (voicemail) cannot run, so the caller gets that 480."""
    a = phone("1001")
    before = len(cdrs(pbx))
    call = a.call(uri(pbx, "1003"))
    ended = a.wait_call_state(call, "DISCONNECTED", 10)
    assert (ended["code"], ended["reason"]) == (480, "Temporarily Unavailable")
    record = new_cdr(pbx, before)
    assert record.dialled == "1003" and record.sip_code == 480 and record.answer is None
    # Nothing rang: a failure of the system's, not an unanswered phone.
    assert record.disposition is Disposition.FAILED and record.hangup_side.value == "system"


def test_call_between_phones_registered_over_tcp(pbx: ServerProcess, tmp_path: Path) -> None:
    """The B-leg INVITE reaches a TCP phone over the connection it registered on."""
    a, b = start_phones([
        dict(user=u, password=f"{u}pass", server_port=pbx.udp_port, transport="tcp",
             log_dir=tmp_path) for u in ("1001", "1002")])
    try:
        assert a.register() == 200 and b.register() == 200
        before = len(cdrs(pbx))
        call = a.call(f"sip:1002@127.0.0.1:{pbx.tcp_port};transport=tcp")
        incoming = b.wait_event("incoming_call", 10)
        b.answer(incoming["call"], 200)
        a.wait_call_state(call, "CONFIRMED", 10)
        wait_for(lambda: b.stats(incoming["call"])["rx_packets"] > 10, 10, "RTP at the callee")
        b.hangup(incoming["call"])
        a.wait_call_state(call, "DISCONNECTED", 10)
        record = new_cdr(pbx, before)
        assert record.disposition is Disposition.ANSWERED and record.hangup_side.value == "callee"
        assert a.unregister() == 200 and b.unregister() == 200
    finally:
        a.close()
        b.close()


def test_call_between_phones_registered_over_tls(pbx: ServerProcess, tmp_path: Path) -> None:
    """SIP over TLS on both legs; the B-leg goes back over the phone's own connection."""
    tls = dict(transport="tls", tls_cert=pbx.workdir / "cert.pem",
               tls_key=pbx.workdir / "key.pem")
    a, b = start_phones([
        dict(user=u, password=f"{u}pass", server_port=pbx.tls_port, log_dir=tmp_path, **tls)
        for u in ("1001", "1002")])
    try:
        assert a.register() == 200 and b.register() == 200
        before = len(cdrs(pbx))
        call = a.call(f"sip:1002@127.0.0.1:{pbx.tls_port};transport=tls")
        incoming = b.wait_event("incoming_call", 10)
        b.answer(incoming["call"], 200)
        a.wait_call_state(call, "CONFIRMED", 10)
        wait_for(lambda: b.stats(incoming["call"])["rx_packets"] > 10, 10, "RTP at the callee")
        a.hangup(call)
        b.wait_call_state(incoming["call"], "DISCONNECTED", 10)
        record = new_cdr(pbx, before)
        assert record.disposition is Disposition.ANSWERED
        assert a.unregister() == 200 and b.unregister() == 200
    finally:
        a.close()
        b.close()
