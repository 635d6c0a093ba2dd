"""The message-summary package: RFC 3842 bodies and the RFC 6665 subscription machine.

Requests are bytes through the real parser; time is a plain number moved by
the test (the machine never reads a clock).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from softswitch.mwi import (
    CONTENT_TYPE,
    Forget,
    MessageCounts,
    MessageSummary,
    Save,
    SendNotify,
    SubscribePolicy,
    SubscribeRefused,
    Subscription,
    Subscriptions,
    SummaryError,
    build_notify,
    build_unsolicited_notify,
    plan_subscribe,
)
from softswitch.sip.message import Request, parse_message
from softswitch.sip.peer import Peer

NOW = 1_700_000_000.0
SOURCE = Peer("udp", "192.0.2.10", 5070)
POLICY = SubscribePolicy()


# -- bodies ------------------------------------------------------------------------------

def test_rfc_3842_example_body_is_read() -> None:
    # RFC 3842 section 6's example NOTIFY body.
    body = (b"Messages-Waiting: yes\r\nMessage-Account: sip:alice@vmail.example.com\r\n"
            b"Voice-Message: 2/8 (0/2)\r\n")
    summary = MessageSummary.parse(body)
    assert summary.waiting is True
    assert summary.account == "sip:alice@vmail.example.com"
    assert summary.counts == (("Voice-Message", MessageCounts(2, 8, 0, 2)),)
    assert summary.render() == body


def test_voice_summary_waits_while_a_new_message_is_there() -> None:
    assert MessageSummary.for_voice(MessageCounts(0, 3), None).render() == \
        b"Messages-Waiting: no\r\nVoice-Message: 0/3\r\n"
    assert MessageSummary.for_voice(MessageCounts(1, 0, 1, 0), "sip:1001@x").waiting


def test_optional_message_headers_after_a_blank_line_are_skipped() -> None:
    body = (b"Messages-Waiting: yes\r\nVoice-Message: 1/0\r\n\r\n"
            b"To: <sip:alice@example.com>\r\nFrom: <sip:bob@example.com>\r\n")
    assert MessageSummary.parse(body).counts == (("Voice-Message", MessageCounts(1, 0)),)


@pytest.mark.parametrize("body", [
    b"", b"Voice-Message: 1/0\r\n", b"Messages-Waiting: maybe\r\n",
    b"Messages-Waiting: yes\r\nVoice-Message: one/two\r\n",
    b"Messages-Waiting: yes\r\nMessage-Account: not a uri\r\n",
    b"Messages-Waiting: yes\r\nVoice-Message 1/2\r\n", b"\xff\xfe",
])
def test_bodies_outside_the_grammar_are_refused(body: bytes) -> None:
    with pytest.raises(SummaryError):
        MessageSummary.parse(body)


_counts = st.builds(MessageCounts, *(st.integers(0, 10**6) for _ in range(4)))
_classes = st.sampled_from(["Voice-Message", "Fax-Message", "Multimedia-Message",
                            "Text-Message", "None"])


@given(st.booleans(), st.one_of(st.none(), st.sampled_from(
    ["sip:1001@pbx.example.com", "sips:vm@example.org", "tel:+15551234567"])),
    st.lists(st.tuples(_classes, _counts), max_size=4))
def test_render_then_parse_is_the_identity(waiting: bool, account: str | None,
                                           counts: list[tuple[str, MessageCounts]]) -> None:
    summary = MessageSummary(waiting, account, tuple(counts))
    assert MessageSummary.parse(summary.render()) == summary


@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_a_summary_or_summary_error(data: bytes) -> None:
    try:
        MessageSummary.parse(data)
    except SummaryError:
        pass


@given(st.text(alphabet="Messaging-Wt:yesno/0123456789() \r\nVoice", max_size=120))
def test_near_miss_text_gives_a_summary_or_summary_error(text: str) -> None:
    try:
        summary = MessageSummary.parse(text.encode())
    except SummaryError:
        return
    # Whatever was accepted renders to a body that reads back the same.
    assert MessageSummary.parse(summary.render()) == summary


# -- SUBSCRIBE checks ------------------------------------------------------------------

def subscribe(*, event: str | None = "message-summary", expires: str | None = "600",
              cseq: int = 1, to_tag: str | None = None, call_id: str = "sub-1",
              from_tag: str = "phone1", accept: str | None = None,
              contact: str = "<sip:1001@192.0.2.10:5070>") -> Request:
    lines = [
        "SUBSCRIBE sip:1001@pbx.example.com SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK" + f"{cseq}{call_id}",
        "Max-Forwards: 70",
        f"From: <sip:1001@pbx.example.com>;tag={from_tag}",
        "To: <sip:1001@pbx.example.com>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} SUBSCRIBE",
        f"Contact: {contact}",
    ]
    if event is not None:
        lines.append(f"Event: {event}")
    if expires is not None:
        lines.append(f"Expires: {expires}")
    if accept is not None:
        lines.append(f"Accept: {accept}")
    message = parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


@pytest.mark.parametrize(("request_kwargs", "status"), [
    ({"event": "presence"}, 489),
    ({"event": "dialog;id=1"}, 489),
    ({"event": None}, 400),
    ({"expires": "abc"}, 400),
    ({"expires": "10"}, 423),
    ({"accept": "application/pidf+xml"}, 406),
])
def test_subscribe_refusals(request_kwargs: dict[str, str | None], status: int) -> None:
    with pytest.raises(SubscribeRefused) as refused:
        plan_subscribe(subscribe(**request_kwargs), POLICY)  # type: ignore[arg-type]
    assert refused.value.status == status
    if status == 489:
        assert ("Allow-Events", "message-summary") in refused.value.headers
    if status == 423:
        assert ("Min-Expires", "60") in refused.value.headers


def test_expires_is_capped_and_defaulted() -> None:
    assert plan_subscribe(subscribe(expires="99999"), POLICY).expires == 7200
    assert plan_subscribe(subscribe(expires=None), POLICY).expires == 3600
    assert plan_subscribe(subscribe(expires="0"), POLICY).expires == 0
    asked = plan_subscribe(subscribe(event="message-summary;id=7",
                                     accept=f"{CONTENT_TYPE}, application/sdp"), POLICY)
    assert asked.event_id == "7"


# -- the subscription machine -------------------------------------------------------------

WAITING = MessageSummary.for_voice(MessageCounts(1, 0), "sip:1001@pbx.example.com")
EMPTY = MessageSummary.for_voice(MessageCounts(0, 0), "sip:1001@pbx.example.com")


def new_subscription(table: Subscriptions, expires: str = "600") -> Subscription:
    request = subscribe(expires=expires)
    accepted = table.subscribe(request, SOURCE, "1001@pbx.example.com",
                               plan_subscribe(request, POLICY), EMPTY, NOW)
    assert accepted.expires == int(expires)
    notify, save = accepted.effects
    assert isinstance(notify, SendNotify) and isinstance(save, Save)
    assert notify.subscription_state == f"active;expires={expires}"
    assert notify.body == EMPTY.render()
    return save.subscription


def test_subscribe_gives_an_immediate_notify_and_a_stored_subscription() -> None:
    table = Subscriptions()
    sub = new_subscription(table)
    assert len(table) == 1 and table.get(sub.id) == sub
    assert sub.local_cseq == 1 and sub.remote_target == "sip:1001@192.0.2.10:5070"
    assert (sub.host, sub.port) == ("192.0.2.10", 5070)
    assert Subscription.from_dict(sub.as_dict()) == sub


def test_mailbox_change_notifies_each_subscriber_with_growing_cseq() -> None:
    table = Subscriptions()
    sub = new_subscription(table)
    effects = table.mailbox_changed("1001@pbx.example.com", WAITING, NOW + 100)
    notify = effects[0]
    assert isinstance(notify, SendNotify)
    assert notify.subscription_state == "active;expires=500"
    assert MessageSummary.parse(notify.body).waiting is True
    assert notify.subscription.local_cseq == sub.local_cseq + 1
    assert table.mailbox_changed("1002@pbx.example.com", WAITING, NOW) == []


def test_refresh_extends_and_unsubscribe_ends_with_a_terminated_notify() -> None:
    table = Subscriptions()
    sub = new_subscription(table)
    refresh = subscribe(expires="900", cseq=2, to_tag=sub.local_tag)
    accepted = table.refresh(refresh, plan_subscribe(refresh, POLICY), WAITING, NOW + 300)
    assert accepted.expires == 900 and accepted.to_tag == sub.local_tag
    assert table.get(sub.id).expires_at == NOW + 1200  # type: ignore[union-attr]
    bye = subscribe(expires="0", cseq=3, to_tag=sub.local_tag)
    accepted = table.refresh(bye, plan_subscribe(bye, POLICY), WAITING, NOW + 400)
    notify, forget = accepted.effects
    assert isinstance(notify, SendNotify) and isinstance(forget, Forget)
    assert notify.subscription_state == "terminated;reason=timeout"
    assert len(table) == 0


def test_refresh_of_an_unknown_subscription_is_481_and_old_cseq_500() -> None:
    table = Subscriptions()
    sub = new_subscription(table)
    stray = subscribe(cseq=2, to_tag="nosuchtag")
    with pytest.raises(SubscribeRefused) as refused:
        table.refresh(stray, plan_subscribe(stray, POLICY), EMPTY, NOW)
    assert refused.value.status == 481
    old = subscribe(cseq=1, to_tag=sub.local_tag)
    with pytest.raises(SubscribeRefused) as refused:
        table.refresh(old, plan_subscribe(old, POLICY), EMPTY, NOW)
    assert refused.value.status == 500


def test_expiry_sends_the_last_notify_and_forgets() -> None:
    table = Subscriptions()
    sub = new_subscription(table, expires="120")
    assert table.next_deadline() == NOW + 120
    assert table.expire(NOW + 119, {}) == []
    effects = table.expire(NOW + 120, {sub.mailbox: WAITING})
    assert [type(e) for e in effects] == [SendNotify, Forget]
    assert effects[0].subscription_state == "terminated;reason=timeout"  # type: ignore[union-attr]
    assert len(table) == 0 and table.next_deadline() is None


def test_fetch_with_expires_zero_notifies_once_and_keeps_nothing() -> None:
    table = Subscriptions()
    request = subscribe(expires="0")
    accepted = table.subscribe(request, SOURCE, "1001@pbx.example.com",
                               plan_subscribe(request, POLICY), WAITING, NOW)
    assert accepted.expires == 0
    assert [type(e) for e in accepted.effects] == [SendNotify, Forget]
    assert len(table) == 0


def test_a_notify_answered_481_ends_the_subscription() -> None:
    table = Subscriptions()
    sub = new_subscription(table)
    assert table.notify_failed(sub.id, 486) == []  # busy: kept
    assert table.notify_failed(sub.id, 481) == [Forget(sub.id)]
    assert len(table) == 0


def test_restore_drops_what_expired_while_down() -> None:
    table = Subscriptions()
    sub = new_subscription(table, expires="120")
    fresh = Subscriptions()
    assert fresh.restore([sub], NOW + 60) == [] and len(fresh) == 1
    assert Subscriptions().restore([sub], NOW + 121) == [Forget(sub.id)]


# -- the NOTIFY requests -------------------------------------------------------------------

def test_notify_in_the_dialog_names_event_state_and_body() -> None:
    table = Subscriptions()
    sub = new_subscription(table)
    effect = table.mailbox_changed(sub.mailbox, WAITING, NOW)[0]
    assert isinstance(effect, SendNotify)
    request = build_notify(effect, via_host="192.0.2.1", via_port=5060)
    parsed = parse_message(request.to_bytes())
    assert isinstance(parsed, Request)
    assert parsed.method == "NOTIFY"
    assert str(parsed.uri) == "sip:1001@192.0.2.10:5070"
    assert parsed.call_id == "sub-1"
    assert parsed.from_tag == sub.local_tag and parsed.to_tag == "phone1"
    assert parsed.cseq.seq == 2
    assert parsed.get("event") == "message-summary"
    assert parsed.get("subscription-state") == "active;expires=600"
    assert parsed.get("content-type") == CONTENT_TYPE
    assert MessageSummary.parse(parsed.body) == WAITING


def test_unsolicited_notify_goes_to_the_contact() -> None:
    request = build_unsolicited_notify("sip:1001@192.0.2.10:5070;ob", "1001@pbx.example.com",
                                       WAITING, transport="tcp", via_host="192.0.2.1",
                                       via_port=5060)
    parsed = parse_message(request.to_bytes())
    assert isinstance(parsed, Request)
    assert str(parsed.uri) == "sip:1001@192.0.2.10:5070;ob"
    assert parsed.to_addr.uri is not None and str(parsed.to_addr.uri) == \
        "sip:1001@pbx.example.com"
    assert parsed.top_via.transport == "TCP"
    assert parsed.get("event") == "message-summary"
    assert MessageSummary.parse(parsed.body).waiting


def test_subscriptions_per_mailbox_are_bounded() -> None:
    table = Subscriptions()
    policy = SubscribePolicy(max_per_mailbox=2)
    for n in range(3):
        request = subscribe(call_id=f"sub-{n}")
        asked = plan_subscribe(request, policy)
        if n < 2:
            table.subscribe(request, SOURCE, "1001@pbx.example.com", asked, EMPTY, NOW)
        else:
            with pytest.raises(SubscribeRefused) as refused:
                table.subscribe(request, SOURCE, "1001@pbx.example.com", asked, EMPTY, NOW)
            assert refused.value.status == 403
    assert len(table) == 2
