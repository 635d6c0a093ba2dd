"""Samples the server's load and feeds the overload controller (the Twisted side).

Every `sample_interval` seconds, from a reactor timer:
- event-loop lag: how late the timer itself ran (a busy reactor runs
  timers late; the lag is the time a message waits behind others);
- the UDP receive queues: datagrams the kernel holds for our listening
  sockets, i.e. the work the process has not even seen yet. The kernel
  tells bytes, not datagrams (getsockopt(SO_MEMINFO), Linux, one cheap
  syscall a socket, in its `truesize` accounting); the datagrams are those
  bytes over the charge of a datagram of the typical size: the mean of
  those read since the last sample, or the one at the head of the queue
  (ioctl FIONREAD) if that is larger, since after a stall the reads are
  older news than the queue. Counting bytes would let a few large junk
  datagrams (cheap to read and discard) pass for a flood of requests;
- server transactions still owed a final response.

The controller (`softswitch/overload.py`) decides; this module only
measures, logs level changes and, when `report_interval` is set, the peak
of each signal over each interval (to tune the limits: bench/overload.py).
"""

from __future__ import annotations

import fcntl
import socket
import struct
import termios
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service

from softswitch.logs import get_logger
from softswitch.overload import OverloadController, Signals, Thresholds
from softswitch.overload_gate import OverloadGate

if TYPE_CHECKING:
    from softswitch.config import OverloadSettings
    from softswitch.core import SipCore
    from softswitch.transport.layer import TransportLayer

# <linux/sock_diag.h>: SO_MEMINFO fills u32 meminfo[SK_MEMINFO_VARS];
# index 0 is SK_MEMINFO_RMEM_ALLOC, the bytes charged to the receive queue.
SO_MEMINFO = 55
_MEMINFO = struct.Struct("9I")


# The kernel charges a datagram its payload plus its buffer's overhead (the
# skb and a head rounded up to a power of two). Measured on loopback, Linux
# 6.x: 832 bytes for a 100-byte payload, 1,280 for 500, 2,304 for 1,000,
# 60,832 for 60,000; payload + 1 KiB is within 20% for SIP-sized ones.
DATAGRAM_OVERHEAD = 1024
TYPICAL_PAYLOAD = 800.0  # until something has been read


def queued_datagrams(queue_bytes: int, mean_payload: float) -> int:
    """Datagrams in a receive queue holding `queue_bytes` (kernel accounting) when
    they are about `mean_payload` bytes each (what was read lately)."""
    return int(queue_bytes / (max(0.0, mean_payload) + DATAGRAM_OVERHEAD))


_INT = struct.Struct("i")


def head_datagram_size(sock: socket.socket) -> int:
    """The payload size of the datagram at the head of `sock`'s queue, 0 if none."""
    try:
        return int(_INT.unpack(fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0" * 4))[0])
    except OSError:
        return 0


def receive_queue_bytes(sock: socket.socket) -> int:
    """Bytes queued for reading on `sock` (kernel accounting), 0 where unknown."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, _MEMINFO.size)
    except OSError:
        return 0
    return int(_MEMINFO.unpack(raw)[0]) if len(raw) == _MEMINFO.size else 0


class OverloadMonitor(Service):
    def __init__(self, controller: OverloadController, reactor: Any, *,
                 udp_sockets: Callable[[], list[socket.socket]],
                 transactions: Callable[[], int], interval: float = 0.05,
                 report_interval: float = 0.0,
                 udp_read: Callable[[], tuple[int, int]] = lambda: (0, 0)) -> None:
        self.controller = controller
        self.reactor = reactor
        self.udp_sockets = udp_sockets
        self.udp_read = udp_read  # (datagrams, bytes) read since start
        self._read = (0, 0)
        self._mean_payload = TYPICAL_PAYLOAD
        self.transactions = transactions
        self.interval = interval
        self.report_interval = report_interval
        self.log = get_logger("softswitch.overload")
        self._call: Any = None
        self._due = 0.0
        self._peak = Signals()
        self._report_due = 0.0

    def startService(self) -> None:  # noqa: N802
        super().startService()
        now = self.reactor.seconds()
        self._report_due = now + self.report_interval
        self._schedule(now)

    def stopService(self) -> None:  # noqa: N802
        super().stopService()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _schedule(self, now: float) -> None:
        self._due = now + self.interval
        self._call = self.reactor.callLater(self.interval, self._tick)

    def sample(self, now: float) -> Signals:
        """The signals now, the lag measured against when this tick was due."""
        datagrams, size = self.udp_read()
        if datagrams > self._read[0]:
            # What was read since the last tick is what the queue holds more of.
            self._mean_payload = (size - self._read[1]) / (datagrams - self._read[0])
        self._read = (datagrams, size)
        queue = queued = 0
        for sock in self.udp_sockets():
            held = receive_queue_bytes(sock)
            if held:
                queue += held
                # The larger size errs towards fewer datagrams for a sample or
                # two; a real flood lasts, and the next reads tell its mix.
                typical = max(self._mean_payload, head_datagram_size(sock))
                queued += queued_datagrams(held, typical)
        return Signals(lag=max(0.0, now - self._due), udp_datagrams=queued,
                       transactions=self.transactions(), udp_bytes=queue)

    def _tick(self) -> None:
        now = self.reactor.seconds()
        signals = self.sample(now)
        transition = self.controller.update(signals, now)
        if transition is not None:
            self.log.warning("overload_level", old=transition.old.value, new=transition.new.value,
                             lag_ms=round(signals.lag * 1000, 1),
                             udp_datagrams=signals.udp_datagrams, udp_bytes=signals.udp_bytes,
                             transactions=signals.transactions, loss=round(self.controller.loss, 2),
                             refused=self.controller.refused, dropped=self.controller.dropped)
        if self.report_interval > 0:
            peak = self._peak
            self._peak = Signals(max(peak.lag, signals.lag),
                                 max(peak.udp_datagrams, signals.udp_datagrams),
                                 max(peak.transactions, signals.transactions),
                                 max(peak.udp_bytes, signals.udp_bytes))
            if now >= self._report_due:
                p = self._peak
                self.log.info("overload_signals", lag_ms=round(p.lag * 1000, 1),
                              udp_datagrams=p.udp_datagrams, udp_bytes=p.udp_bytes,
                              transactions=p.transactions,
                              overload_level=self.controller.level.value,
                              loss=round(self.controller.loss, 2),
                              refused=self.controller.refused, dropped=self.controller.dropped)
                self._peak = Signals()
                self._report_due = now + self.report_interval
        self._schedule(self.reactor.seconds())


def build_overload(settings: OverloadSettings, core: SipCore, transports: TransportLayer,
                   reactor: Any) -> OverloadMonitor:
    """The controller, the core's gate and the monitor, wired together."""
    controller = OverloadController(Thresholds(
        max_lag=settings.max_lag, max_udp_datagrams=settings.max_udp_datagrams,
        max_transactions=settings.max_transactions, drop_factor=settings.drop_factor,
        recover_ratio=settings.recover_ratio, recover_after=settings.recover_after,
        lag_samples=settings.lag_samples, loss_step=settings.loss_step,
        sample_interval=settings.sample_interval),
        enabled=settings.enabled)
    core.overload = OverloadGate(
        controller, core.send, transports.send_bytes, retry_after=settings.retry_after,
        limits=core.limits, has_transaction=core.transactions.has_server_transaction,
        has_transaction_at=core.transactions.has_server_transaction_at,
        clock=reactor.seconds)
    return OverloadMonitor(controller, reactor, udp_sockets=transports.udp_sockets,
                           transactions=core.transactions.pending_server_count,
                           interval=settings.sample_interval,
                           report_interval=settings.report_interval,
                           udp_read=transports.udp_read)
