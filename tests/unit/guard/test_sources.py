"""The per-source guard with a fake clock: rate limits, bans, scanners, trust."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from softswitch.guard.settings import SCANNER_USER_AGENTS
from softswitch.guard.sources import SourceGuard, Verdict

OPTIONS = (b"OPTIONS sip:100@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7\r\n"
           b"User-Agent: %s\r\n\r\n")


def guard(**kwargs: object) -> SourceGuard:
    return SourceGuard(trusted=["127.0.0.1", "10.0.0.0/8"],
                       scanner_agents=SCANNER_USER_AGENTS, **kwargs)  # type: ignore[arg-type]


def test_failures_beyond_the_threshold_ban_for_the_ban_time() -> None:
    g = guard(auth_failures=3, failure_window=60, ban_time=100)
    assert [g.auth_failed("198.51.100.7", 0.0) for _ in range(3)] == [None] * 3
    ban = g.auth_failed("198.51.100.7", 1.0)
    assert ban is not None and (ban.since, ban.until) == (1.0, 101.0)
    assert g.admit("198.51.100.7", OPTIONS % b"x", 50.0) is Verdict.BANNED
    assert g.admit("198.51.100.8", OPTIONS % b"x", 50.0) is Verdict.ADMIT  # others pass
    assert g.expire(100.0) == []
    assert [b.address for b in g.expire(101.0)] == ["198.51.100.7"]
    assert g.admit("198.51.100.7", OPTIONS % b"x", 101.0) is Verdict.ADMIT


def test_failures_spread_over_the_window_do_not_ban() -> None:
    g = guard(auth_failures=3, failure_window=60)
    assert all(g.auth_failed("198.51.100.7", t * 20.0) is None for t in range(20))


def test_trusted_sources_are_never_banned_nor_limited() -> None:
    g = guard(auth_failures=1, requests_per_second=1, request_burst=1)
    for _ in range(10):
        assert g.auth_failed("10.1.2.3", 0.0) is None
        assert g.admit("127.0.0.1", OPTIONS % b"x", 0.0) is Verdict.ADMIT


def test_request_rate_per_source() -> None:
    g = guard(requests_per_second=10, request_burst=5)
    verdicts = [g.admit("198.51.100.7", b"x", 0.0) for _ in range(6)]
    assert verdicts[:5] == [Verdict.ADMIT] * 5 and verdicts[5] is Verdict.RATE_LIMITED
    assert g.admit("198.51.100.7", b"x", 0.1) is Verdict.ADMIT
    assert g.dropped[Verdict.RATE_LIMITED] == 1


def test_scanner_user_agents_are_dropped_in_any_case_responses_are_not() -> None:
    g = guard()
    for agent in (b"friendly-scanner", b"SIPVicious 0.3", b"sipcli/v1.8", b"Friendly-Scanner"):
        assert g.admit("198.51.100.7", OPTIONS % agent, 0.0) is Verdict.SCANNER
    assert g.admit("198.51.100.7", OPTIONS % b"Linphone/5.2", 0.0) is Verdict.ADMIT
    response = b"SIP/2.0 200 OK\r\nUser-Agent: friendly-scanner\r\n\r\n"
    assert g.admit("198.51.100.7", response, 0.0) is Verdict.ADMIT
    # The name elsewhere than in User-Agent is not a scanner.
    assert g.admit("198.51.100.7", b"OPTIONS sip:friendly-scanner@x SIP/2.0\r\n\r\n",
                   0.0) is Verdict.ADMIT


def test_too_many_challenges_count_as_failures() -> None:
    g = guard(auth_failures=2, challenges_per_minute=5)
    assert all(g.challenged("198.51.100.7", 0.0) is None for _ in range(5 + 2))
    assert g.challenged("198.51.100.7", 0.0) is not None


def test_lift() -> None:
    g = guard(auth_failures=1)
    g.auth_failed("198.51.100.7", 0.0)
    assert g.auth_failed("198.51.100.7", 0.0) is not None
    assert g.lift("198.51.100.7") is not None
    assert g.lift("198.51.100.7") is None
    assert g.admit("198.51.100.7", b"x", 1.0) is Verdict.ADMIT
    assert g.auth_failed("198.51.100.7", 1.0) is None  # the count starts again


@given(st.binary(max_size=300), st.sampled_from(["198.51.100.7", "::1", "not-an-ip"]))
def test_any_bytes_get_a_verdict(data: bytes, host: str) -> None:
    assert isinstance(guard().admit(host, data, 0.0), Verdict)
