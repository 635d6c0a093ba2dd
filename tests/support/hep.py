"""A HEP collector for tests: a UDP socket that keeps every HEP v3 packet it can parse."""

from __future__ import annotations

import socket

from rtpmedia.hep import HepError, HepPacket, decode


class Collector:
    """What Homer would receive: `drain()` reads what arrived and returns all packets so far."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.packets: list[HepPacket] = []
        self.malformed = 0

    def drain(self) -> list[HepPacket]:
        while True:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return self.packets
            try:
                self.packets.append(decode(data))
            except HepError:
                self.malformed += 1

    def close(self) -> None:
        self.sock.close()
