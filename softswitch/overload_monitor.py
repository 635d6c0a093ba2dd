"""Samples the server's load and feeds the overload controller (the Twisted side).

Every `sample_interval` seconds, from a reactor timer:
- event-loop lag: how late the timer itself ran (a busy reactor runs
  timers late; the lag is the time a message waits behind others);
- the UDP receive queues: bytes the kernel holds for our listening sockets,
  read with getsockopt(SO_MEMINFO) (Linux; one cheap syscall a socket,
  counted in the kernel's `truesize` accounting, about 1.3 KiB a small
  datagram), i.e. the work the process has not even seen yet;
- server transactions still owed a final response.

The controller (`softswitch/overload.py`) decides; this module only
measures, logs level changes and, when `report_interval` is set, the peak
of each signal over each interval (to tune the limits: bench/overload.py).
"""

from __future__ import annotations

import socket
import struct
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
                 report_interval: float = 0.0) -> None:
        self.controller = controller
        self.reactor = reactor
        self.udp_sockets = udp_sockets
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
        return Signals(lag=max(0.0, now - self._due),
                       udp_queue=sum(receive_queue_bytes(s) for s in self.udp_sockets()),
                       transactions=self.transactions())

    def _tick(self) -> None:
        now = self.reactor.seconds()
        signals = self.sample(now)
        transition = self.controller.update(signals, now)
        if transition is not None:
            self.log.warning("overload_level", old=transition.old.value, new=transition.new.value,
                             lag_ms=round(signals.lag * 1000, 1), udp_queue=signals.udp_queue,
                             transactions=signals.transactions, loss=round(self.controller.loss, 2),
                             refused=self.controller.refused, dropped=self.controller.dropped)
        if self.report_interval > 0:
            peak = self._peak
            self._peak = Signals(max(peak.lag, signals.lag), max(peak.udp_queue, signals.udp_queue),
                                 max(peak.transactions, signals.transactions))
            if now >= self._report_due:
                p = self._peak
                self.log.info("overload_signals", lag_ms=round(p.lag * 1000, 1),
                              udp_queue=p.udp_queue, transactions=p.transactions,
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
        max_lag=settings.max_lag, max_udp_queue=settings.max_udp_queue,
        max_transactions=settings.max_transactions, drop_factor=settings.drop_factor,
        recover_ratio=settings.recover_ratio, recover_after=settings.recover_after,
        lag_samples=settings.lag_samples, loss_step=settings.loss_step),
        enabled=settings.enabled)
    core.overload = OverloadGate(
        controller, core.send, transports.send_bytes, retry_after=settings.retry_after,
        limits=core.limits, has_transaction=core.transactions.has_server_transaction,
        has_transaction_at=core.transactions.has_server_transaction_at)
    return OverloadMonitor(controller, reactor, udp_sockets=transports.udp_sockets,
                           transactions=core.transactions.pending_server_count,
                           interval=settings.sample_interval,
                           report_interval=settings.report_interval)
