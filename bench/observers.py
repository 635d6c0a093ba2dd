"""Cost per SIP message of the operations observers on the SIP core, and ring memory.

A call's messages (INVITE with SDP, 100, 180, 200, ACK, BYE, 200 on each of
two legs) are replayed through each observer the management service adds:
`SipCounters` (metrics, always on), `MessageLog` (the call rings, on with
the API) and `HepCapture` (only with a collector; its datagrams are dropped
here). Prints microseconds per message of each, side by side with a no-op
observer in the same run, and the memory the rings keep per call.
Figures only: nothing here asserts on time.

Run: .venv/bin/python bench/observers.py [--calls 20000]
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.parse import INVITE  # noqa: E402
from softswitch.management.hep import HepCapture  # noqa: E402
from softswitch.management.messages import MessageLog  # noqa: E402
from softswitch.management.metrics import SipCounters  # noqa: E402
from softswitch.sip.message import Request, make_response, parse_message  # noqa: E402
from softswitch.sip.peer import Peer  # noqa: E402

PEER = Peer("udp", "192.0.2.41", 5060)


def call_messages(n: int) -> list[tuple[bool, Any]]:
    """The 14 messages of call `n` (two legs), as the core would see them."""
    out: list[tuple[bool, Any]] = []
    for leg in ("a", "b"):
        text = INVITE.replace(b"Call-ID: ", f"Call-ID: {leg}{n}-".encode(), 1)
        invite = parse_message(text)
        assert isinstance(invite, Request)
        received = leg == "a"
        out.append((received, invite))
        for status in (100, 180, 200):
            out.append((not received, make_response(invite, status, to_tag="tt")))
        ack = parse_message(text.replace(b"INVITE sip:", b"ACK sip:", 1)
                            .replace(b" INVITE\r\n", b" ACK\r\n"))
        out.append((received, ack))
        bye = parse_message(text.replace(b"INVITE sip:", b"BYE sip:", 1)
                            .replace(b" INVITE\r\n", b" BYE\r\n"))
        out.append((received, bye))
        assert isinstance(bye, Request)
        out.append((not received, make_response(bye, 200, to_tag="tt")))
    return out


class Noop:
    def message_received(self, message: Any, peer: Peer, now: float) -> None:
        pass

    def message_sent(self, message: Any, peer: Peer, now: float) -> None:
        pass


def per_message(observer: Any, messages: list[tuple[bool, Any]]) -> float:
    start = time.perf_counter()
    now = 1.0
    for received, message in messages:
        if received:
            observer.message_received(message, PEER, now)
        else:
            observer.message_sent(message, PEER, now)
    return (time.perf_counter() - start) / len(messages) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    messages = [m for n in range(args.calls) for m in call_messages(n)]
    for _ in range(2):  # the second round is the one printed: warm caches, same heap
        results = {
            "no-op observer": per_message(Noop(), messages),
            "SipCounters (metrics)": per_message(SipCounters(), messages),
            "MessageLog (call rings)": per_message(MessageLog(max_rings=4 * args.calls),
                                                   messages),
            "HepCapture (encode, no socket)": per_message(
                HepCapture(lambda d: None, lambda p: ("192.0.2.1", 5060)), messages),
        }
    print(f"{len(messages):,} messages ({args.calls:,} calls of 14)")
    for name, micros in results.items():
        print(f"  {name:<32} {micros:6.2f} us/message")
    # The rings' own structures (deques, Captured records). The messages they
    # keep alive, which the core would otherwise free once each transaction
    # ends, come on top: bench/calls.py measures the whole (memory per call).
    del messages
    held = [m for n in range(2000) for m in call_messages(n)]
    tracemalloc.start()
    log = MessageLog(max_rings=4 * args.calls)
    before = tracemalloc.get_traced_memory()[0]
    for received, message in held:
        (log.message_received if received else log.message_sent)(message, PEER, 1.0)
    kept = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    print(f"  ring structures: {kept / 2000 / 1024:.1f} KiB per call of 14 messages "
          f"({kept / len(held):,.0f} bytes per message), the messages themselves apart")

if __name__ == "__main__":
    main()
