"""Hosted media cost: milliseconds of one engine tick for N parties the relay hosts.

    .venv/bin/python bench/hosted.py [--parties 50,200] [--ticks 250]

Half the parties hear a prompt, half their own echo; every party sends one
PCMU packet per tick (put in its Receiver). A tick is every party's
`HostedParty.tick` (jitter buffer, concealment, digit scan, encode, packet)
plus the shared in-band digit scan. Two variants side by side in one run:
each party running Goertzel on its own frame, and one `ToneScanner` pass for
all. The tick budget is 20 ms per core.
"""

from __future__ import annotations

import argparse
import struct
import time

import numpy as np

from rtpmedia import codecs
from rtpmedia.relay.calls import Hosting, MediaEnd
from rtpmedia.relay.hosted import HostedParty, ToneScanner


def run(count: int, ticks: int, shared: bool) -> tuple[float, float]:
    """(ms per tick, µs per packet put) for `count` parties."""
    pcmu = codecs.get("PCMU/8000")
    scanner = ToneScanner() if shared else None
    parties = [HostedParty(MediaEnd("bench", str(i), 0, 30000 + 2 * i,
                                    expected=("127.0.0.1", 4000)),
                           Hosting(0, "PCMU", 0, 101), lambda event: None, scanner=scanner)
               for i in range(count)]
    rng = np.random.default_rng(1)
    for i, party in enumerate(parties):
        if i % 2:
            party.start_echo()
        else:
            party.play((rng.standard_normal(8000 * 60) * 3000).astype(np.int16), 1)
    payload = pcmu.encode((np.sin(np.arange(160) * 0.2) * 6000).astype(np.int16))
    ticking = putting = 0.0
    for k in range(ticks):
        now = k * 0.02
        packet = struct.pack("!BBHII", 0x80, 0, k, k * 160, 9) + payload
        t0 = time.perf_counter()
        for party in parties:
            party.rtp(party.end, memoryview(packet), now)
        t1 = time.perf_counter()
        for party in parties:
            party.tick(now, lambda end, datagram: None)
        if scanner is not None:
            scanner.run(now)
        ticking += time.perf_counter() - t1
        putting += t1 - t0
    return ticking / ticks * 1000, putting / ticks / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parties", default="50,200")
    parser.add_argument("--ticks", type=int, default=250)
    args = parser.parse_args()
    print(f"{'parties':>8} {'own scan ms/tick':>17} {'one scan ms/tick':>17} {'ratio':>6} "
          f"{'us/packet in':>13}")
    for count in (int(x) for x in args.parties.split(",")):
        own, _ = run(count, args.ticks, shared=False)
        one, put = run(count, args.ticks, shared=True)
        print(f"{count:>8} {own:>17.1f} {one:>17.1f} {own / one:>6.2f} {put:>13.1f}")


if __name__ == "__main__":
    main()
