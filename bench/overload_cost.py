"""What overload control costs per message, in-process (no sockets, no sipp).

Feeds messages to a `SipCore` (the real parser and transaction layer on a
fake clock, sends discarded) and prints messages per second:
1. BYE (in-dialog, answered 200 by a handler) with no gate, with the gate
   installed at NORMAL (the check every message pays), and with the gate
   REFUSING (the prefilter lets the BYE through: what accepted work pays);
2. new INVITEs: admitted (parsed, a transaction, a handler answering 100),
   refused (parsed, a stateless 503) and dropped (request line and To tag
   read, nothing else), i.e. how much cheaper shedding is than serving.
Alternating repeats, best of each: the machine is shared.

Run: .venv/bin/python bench/overload_cost.py [--seconds 1.0] [--repeats 3]
Figures only: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import task  # noqa: E402

from softswitch.core import SipCore  # noqa: E402
from softswitch.logs import configure  # noqa: E402
from softswitch.overload import Level, OverloadController, Signals, Thresholds  # noqa: E402
from softswitch.overload_gate import OverloadGate  # noqa: E402
from softswitch.sip.message import make_response  # noqa: E402
from softswitch.sip.peer import Peer  # noqa: E402

PEER = Peer("udp", "192.0.2.10", 5062, 1)
_numbers = itertools.count(1)


def message(method: str, to_tag: str | None) -> bytes:
    n = next(_numbers)
    to = "<sip:1002@pbx.example.com>" + (f";tag={to_tag}" if to_tag else "")
    return (f"{method} sip:1002@pbx.example.com SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKcost{n};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: \"Alice\" <sip:1001@pbx.example.com>;tag=from{n}\r\n"
            f"To: {to}\r\nCall-ID: cost{n}@192.0.2.10\r\nCSeq: 1 {method}\r\n"
            "Contact: <sip:1001@192.0.2.10:5062>\r\nUser-Agent: bench\r\n"
            "Content-Length: 0\r\n\r\n").encode()


def core(level: Level | None) -> SipCore:
    c = SipCore(task.Clock(), lambda m, p: None)
    c.route("BYE", lambda tx, req: tx.respond(make_response(req, 200)))
    c.route("INVITE", lambda tx, req: tx.respond(make_response(req, 100)))
    if level is not None:
        controller = OverloadController(Thresholds(max_lag=1.0, lag_samples=1, drop_factor=3.0,
                                                    loss_step=1.0))
        c.overload = OverloadGate(controller, c.send, lambda data, peer: None,
                                  has_transaction=c.transactions.has_server_transaction,
                                  has_transaction_at=c.transactions.has_server_transaction_at)
        controller.update(Signals(lag={Level.NORMAL: 0.0, Level.REFUSE: 1.5,
                                       Level.DROP: 5.0}[level]), 0.0)
    return c


def rate(c: SipCore, messages: list[bytes], seconds: float) -> float:
    done, start = 0, time.perf_counter()
    for data in itertools.cycle(messages):
        c.receive(data, PEER)
        done += 1
        if done % 500 == 0 and time.perf_counter() - start >= seconds:
            break
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    configure("console", "warning")
    # Distinct messages, so that no transaction absorbs a retransmission.
    byes = [message("BYE", "t1") for _ in range(200_000)]
    invites = [message("INVITE", None) for _ in range(200_000)]
    cases: list[tuple[str, Callable[[], float]]] = [
        ("BYE, no gate", lambda: rate(core(None), byes, args.seconds)),
        ("BYE, gate at NORMAL", lambda: rate(core(Level.NORMAL), byes, args.seconds)),
        ("BYE, gate REFUSING", lambda: rate(core(Level.REFUSE), byes, args.seconds)),
        ("new INVITE admitted", lambda: rate(core(Level.NORMAL), invites, args.seconds)),
        ("new INVITE refused (503)", lambda: rate(core(Level.REFUSE), invites, args.seconds)),
        ("new INVITE dropped", lambda: rate(core(Level.DROP), invites, args.seconds)),
    ]
    best = {name: 0.0 for name, _ in cases}
    for _ in range(args.repeats):
        for name, run in cases:
            best[name] = max(best[name], run())
    base = best["BYE, no gate"]
    print(f"{'case':<28}{'messages/s':>12}{'us/message':>12}")
    for name, value in best.items():
        print(f"{name:<28}{value:>12,.0f}{1e6 / value:>12.1f}")
    print(f"the gate at NORMAL costs {100 * (base / best['BYE, gate at NORMAL'] - 1):+.1f}% "
          f"per BYE (noise is a few %); a refused INVITE costs "
          f"{best['new INVITE admitted'] / best['new INVITE refused (503)']:.2f} of an admitted "
          f"one, a dropped one {best['new INVITE admitted'] / best['new INVITE dropped']:.3f}")


if __name__ == "__main__":
    main()
