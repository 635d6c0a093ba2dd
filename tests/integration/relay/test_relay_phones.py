"""Real phones through softswitch + its embedded relay: the SDP each phone sees
names the relay, and a known signal arrives intact end to end, both ways,
after hold/resume (re-INVITEs) and after a blind transfer (REFER).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.audio import read_wav, similarity, tone_sequence
from tests.support.phone import Phone, answered_call, registered_phones
from tests.support.server import ServerProcess, embedded_relay_config
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

# Intact PCMU scores 0.99 or more here, also with the jitter-buffer slips of
# a loaded machine; silence, noise or another signal score under 0.1, and a
# stranger's noise mixed into the stream (without strict-source) 0.88.
INTACT = 0.97


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    media, ports = embedded_relay_config(100)
    server = ServerProcess(
        tmp_path_factory.mktemp("relay-phones"),
        extra_config=media)
    server.port_range = ports  # type: ignore[attr-defined]
    server.start()
    try:
        yield server
    finally:
        server.stop()


Leg = tuple[Phone, int]  # a phone and its number for the call


def assert_relayed(server: ServerProcess, *legs: Leg, address: str = "127.0.0.1") -> None:
    """Each phone's remote SDP (where it sends RTP) is a relay port."""
    low, high = server.port_range  # type: ignore[attr-defined]
    for phone, call in legs:
        host, _, port = str(phone.stats(call)["remote_rtp"]).rpartition(":")
        assert host == address and low <= int(port) <= high, (phone.user, host, port)


def exchange(folder: Path, *directions: tuple[Leg, Leg]) -> list[float]:
    """Each (sender, receiver) pair at once: the sender streams its own tone
    sequence, the receiver records; the similarity of each recording to what
    was sent."""
    folder.mkdir(parents=True, exist_ok=True)
    sent = []
    for (sender, _), (receiver, r_call) in directions:
        seed = random.randrange(1 << 30)
        signal = tone_sequence(folder / f"{sender.user}-{seed}.wav", seed)
        record = folder / f"{receiver.user}-from-{sender.user}-{seed}.wav"
        receiver.record(r_call, record)
        sent.append((signal, folder / f"{sender.user}-{seed}.wav", record))
    cursors = [sender.play(s_call, wav) for ((sender, s_call), _), (_, wav, _) in
               zip(directions, sent, strict=True)]
    for ((sender, s_call), _), since in zip(directions, cursors, strict=True):
        sender.wait_played(s_call, since)
    scores = []
    for (_, (receiver, r_call)), (signal, _, record) in zip(directions, sent, strict=True):
        # The jitter buffer still holds the last frames: wait until 10 more
        # packets have come in rather than a fixed time.
        count = receiver.stats(r_call)["rx_packets"]
        wait_for(lambda r=receiver, c=r_call, n=count: r.stats(c)["rx_packets"] > n + 10,
                 5, f"RTP at {receiver.user} after the signal")
        receiver.stop_record(r_call, record)
        scores.append(similarity(signal, read_wav(record)))
    return scores


def flowing(*legs: Leg) -> None:
    """Wait until each leg's phone has received 10 more RTP packets."""
    for phone, call in legs:
        count = phone.stats(call)["rx_packets"]
        wait_for(lambda p=phone, c=call, n=count: p.stats(c)["rx_packets"] > n + 10,
                 5, f"RTP flowing again at {phone.user}")


def test_audio_crosses_the_relay_both_ways_and_through_hold_and_resume(
        server: ServerProcess, tmp_path: Path) -> None:
    a, b = registered_phones(server.udp_port, ["1001", "1002"], tmp_path)
    try:
        call, incoming = answered_call(a, b, f"sip:1002@127.0.0.1:{server.udp_port}")
        alice, bob = (a, call), (b, incoming)
        assert_relayed(server, alice, bob)

        [one_way] = exchange(tmp_path / "one-way", (alice, bob))
        assert one_way > INTACT, one_way
        both = exchange(tmp_path / "both", (alice, bob), (bob, alice))
        assert min(both) > INTACT, both

        # Hold: a re-INVITE offering a=sendonly; Alice still sends (music on hold).
        since_a, since_b = a.mark(), b.mark()
        a.hold(call)
        a.wait_event("media_state", 10, since=since_a,
                     where=lambda e: e["call"] == call and e["status"] == "LOCAL_HOLD")
        b.wait_event("media_state", 10, since=since_b,
                     where=lambda e: e["call"] == incoming and e["status"] == "REMOTE_HOLD")
        assert_relayed(server, alice, bob)
        flowing(bob)
        [held] = exchange(tmp_path / "held", (alice, bob))
        assert held > INTACT, held

        since_a, since_b = a.mark(), b.mark()
        a.unhold(call)
        a.wait_event("media_state", 10, since=since_a,
                     where=lambda e: e["call"] == call and e["status"] == "ACTIVE")
        b.wait_event("media_state", 10, since=since_b,
                     where=lambda e: e["call"] == incoming and e["status"] == "ACTIVE")
        assert_relayed(server, alice, bob)
        # Both phones restart their streams after the re-INVITE: the exchange
        # starts once packets come in again at each end (under the full suite
        # its first 200 ms were once lost to that restart).
        flowing(alice, bob)
        resumed = exchange(tmp_path / "resumed", (alice, bob), (bob, alice))
        assert min(resumed) > INTACT, resumed

        a.hangup(call)
        b.wait_call_state(incoming, "DISCONNECTED", 10)
    finally:
        a.close()
        b.close()


def test_audio_crosses_the_relay_after_a_blind_transfer(
        server: ServerProcess, tmp_path: Path) -> None:
    a, b, c = registered_phones(server.udp_port, ["1001", "1002", "1003"], tmp_path)
    try:
        call, at_bob = answered_call(a, b, f"sip:1002@127.0.0.1:{server.udp_port}")
        assert_relayed(server, (a, call), (b, at_bob))

        since = c.mark()
        b.transfer(at_bob, f"sip:1003@127.0.0.1:{server.udp_port}")
        at_carol = int(c.wait_event("incoming_call", 10, since=since)["call"])
        c.answer(at_carol, 200)
        c.wait_call_state(at_carol, "CONFIRMED", 10)
        b.wait_call_state(at_bob, "DISCONNECTED", 10)
        alice, carol = (a, call), (c, at_carol)
        # Alice's re-INVITE (or UPDATE) has moved her stream to Carol's side.
        wait_for(lambda: c.stats(at_carol)["rx_packets"] > 25, 10, "RTP at Carol")
        assert_relayed(server, alice, carol)
        scores = exchange(tmp_path / "transferred", (alice, carol), (carol, alice))
        assert min(scores) > INTACT, scores

        a.hangup(call)
        c.wait_call_state(at_carol, "DISCONNECTED", 10)
    finally:
        for phone in (a, b, c):
            phone.close()
