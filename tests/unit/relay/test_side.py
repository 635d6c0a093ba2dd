"""The media side's notices from relays: a `media event` becomes the call machine's event."""

from __future__ import annotations

from twisted.internet import task

from rtpmedia import ng
from softswitch.b2bua.events import MediaEvent
from softswitch.relay.choice import MediaChoice
from softswitch.relay.ng_client import NgClient
from softswitch.relay.side import MediaSide, media_event_of

RELAY = ("127.0.0.1", 2223)


class FakeUDP:
    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        return None


def test_a_media_event_is_read_with_its_fields_and_a_malformed_one_is_none() -> None:
    assert media_event_of({"command": "media event", "call-id": "u", "from-tag": "t",
                           "event": "recorded", "file": "greetings/1001.wav",
                           "duration": "3.25", "reason": "digit"}) == MediaEvent(
        "t", "recorded", file="greetings/1001.wav", duration=3.25, reason="digit")
    assert media_event_of({"from-tag": "t", "event": "dtmf", "digit": "5"}) == MediaEvent(
        "t", "dtmf", digit="5")
    assert media_event_of({"from-tag": "t", "event": "played", "duration": "x"}) == MediaEvent(
        "t", "played")
    assert media_event_of({"from-tag": "t"}) is None
    assert media_event_of({"event": "played"}) is None


def test_the_media_side_hands_relays_media_events_to_the_calls() -> None:
    client = NgClient(task.Clock())
    client.makeConnection(FakeUDP())  # type: ignore[arg-type]
    side = MediaSide(MediaChoice("relay", None), client, None)
    delivered: list[tuple[str, MediaEvent]] = []
    side.on_media_event(lambda call, event: delivered.append((call, event)))
    client.datagramReceived(ng.encode(b"c1", {"command": "media event", "call-id": "u-1",
                                              "from-tag": "t", "event": "ended"}), RELAY)
    client.datagramReceived(ng.encode(b"c2", {"command": "media event", "call-id": "u-1"}),
                            RELAY)  # no event: logged, not delivered
    assert delivered == [("u-1", MediaEvent("t", "ended"))]
