"""The overload monitor's UDP signal: datagrams waiting, not bytes.

Real sockets on loopback: the kernel's own accounting of what waits in a
receive queue, read as the server reads it.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from twisted.internet.task import Clock

from softswitch.overload import OverloadController
from softswitch.overload_monitor import (
    OverloadMonitor,
    head_datagram_size,
    queued_datagrams,
    receive_queue_bytes,
)


@pytest.fixture
def receiver() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


def fill(receiver: socket.socket, size: int, count: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for _ in range(count):
            sender.sendto(b"x" * size, receiver.getsockname())


def monitor(receiver: socket.socket, read: list[tuple[int, int]]) -> OverloadMonitor:
    """A monitor of `receiver`; `read` holds the (datagrams, bytes) read so far."""
    return OverloadMonitor(OverloadController(), Clock(), udp_sockets=lambda: [receiver],
                           transactions=lambda: 0, udp_read=lambda: read[0])


def test_the_estimate_divides_by_the_charge_of_a_datagram() -> None:
    assert queued_datagrams(0, 500.0) == 0
    assert queued_datagrams(1_524_000, 500.0) == 1000
    assert queued_datagrams(61_024 * 3, 60_000.0) == 3


def test_big_junk_datagrams_count_as_few_though_they_fill_the_queue(
        receiver: socket.socket) -> None:
    fill(receiver, 60_000, 40)
    assert receive_queue_bytes(receiver) > 2 << 20  # the old limit, in bytes
    assert head_datagram_size(receiver) == 60_000
    # Even when what was read lately was small (the reads lag behind the
    # queue after a stall), the datagram at the head tells the size.
    signals = monitor(receiver, [(100, 40_000)]).sample(0.0)
    assert 34 <= signals.udp_datagrams <= 46
    assert signals.udp_bytes > 2 << 20


def test_a_flood_of_small_requests_counts_as_many(receiver: socket.socket) -> None:
    fill(receiver, 450, 1500)
    read = [(0, 0)]
    probe = monitor(receiver, read)
    read[0] = (2000, 2000 * 450)  # what the server read meanwhile: requests like these
    signals = probe.sample(0.0)
    assert 1200 <= signals.udp_datagrams <= 1800
    assert head_datagram_size(receiver) == 450


def test_an_empty_queue_is_no_datagram(receiver: socket.socket) -> None:
    signals = monitor(receiver, [(5, 300_000)]).sample(0.0)
    assert signals.udp_datagrams == 0 and signals.udp_bytes == 0
    assert head_datagram_size(receiver) == 0
