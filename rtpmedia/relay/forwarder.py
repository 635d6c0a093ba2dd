"""The userspace forwarder: one non-blocking UDP socket per relay port, read straight from the reactor.

Twisted's DatagramProtocol costs a Python call chain and a bytes object per
packet (measured in /work/shared/notes/media.md at several times a bare
`recvfrom`), and even a bare reader costs a reactor dispatch per ready
socket. So the media sockets are plain non-blocking sockets in an epoll set
of our own, and only that epoll's descriptor is on the reactor: one
reactor dispatch serves every socket that is ready. Each round of that
epoll reads one datagram from every ready socket with `recvfrom_into` into
one preallocated buffer and sends it with `sendto` from the sink's socket.
Packets from the latched source take the short path; anything else goes
through `latching`.

Once both ends of a stream are latched, the stream is handed to the kernel
fast path (`rtpmedia.relay.fastpath`); RTCP and RTCP-multiplexed streams
stay here, where their reports feed the stream's health.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import structlog
from twisted.internet.interfaces import IReadDescriptor
from zope.interface import implementer

from rtpmedia.relay.calls import MediaEnd
from rtpmedia.relay.fastpath import FastPath, Flow, FlowCounters
from rtpmedia.relay.health import StreamHealth
from rtpmedia.relay.latching import Verdict, rtcp_verdict, rtp_verdict

log = structlog.get_logger("relay.forwarder")

#: Who sees an RTCP packet: (its end, the bytes, their source, the relay's address, time).
RtcpTap = Callable[[MediaEnd, bytes, tuple[str, int], tuple[str, int], float], None]

#: Rounds of the forwarder's epoll per reactor wake-up; each round reads one
#: datagram from every ready socket, so one busy port cannot starve the rest.
BURST = 64
BUFFER = 65535
#: Linux: the kernel stamps each datagram with its arrival (CLOCK_REALTIME, a timespec).
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@qq")
#: Room for one SCM_TIMESTAMPNS control message.
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size)


def _is_rtcp(first: int, second: int) -> bool:
    """RFC 5761 4: on a multiplexed port, payload types 64-95 (packet types 192-223) are RTCP."""
    return 192 <= second <= 223


@implementer(IReadDescriptor)
class PortReader:
    """One bound socket (an end's RTP or RTCP port) on the reactor."""

    def __init__(self, forwarder: Forwarder, end: MediaEnd, sock: socket.socket,
                 rtcp: bool) -> None:
        self.forwarder = forwarder
        self.end = end
        self.sock = sock
        self.rtcp = rtcp
        #: Read with the kernel's arrival time of each datagram (`Forwarder.stamp`).
        self.stamped = False
        self._fileno = sock.fileno()

    def fileno(self) -> int:
        return self._fileno

    def logPrefix(self) -> str:  # noqa: N802 - Twisted's interface
        return f"relay-port-{self.end.port}"

    def connectionLost(self, reason: Any) -> None:  # noqa: N802 - Twisted's interface
        return None

    def doRead(self, limit: int = BURST) -> None:  # noqa: N802 - Twisted's interface
        """Read and forward up to `limit` datagrams (fewer if the socket runs dry)."""
        recv = self.sock.recvfrom_into
        forwarder = self.forwarder
        buf = forwarder.buffer
        view = forwarder.view
        sockets = forwarder.sockets
        end = self.end
        now = time.time()
        rtcp_port = self.rtcp
        stamped = self.stamped
        buffers = forwarder.buffers
        for _ in range(limit):
            try:
                if stamped:
                    n, ancillary, _, source = self.sock.recvmsg_into(buffers, _ANCILLARY)
                    if ancillary:
                        seconds, nanoseconds = _TIMESPEC.unpack_from(ancillary[0][2])
                        now = seconds + nanoseconds * 1e-9
                else:
                    n, source = recv(buf)
            except BlockingIOError:
                return
            except OSError:
                continue
            if n < 8 or buf[0] & 0xC0 != 0x80:  # RTP/RTCP version 2 (RFC 3550 5.1, 6.4)
                end.errors += 1
                continue
            if rtcp_port or (end.mux and _is_rtcp(buf[0], buf[1])):
                forwarder.rtcp(end, n, source, now)
                continue
            if source != end.latched:
                verdict = rtp_verdict(end, source, now)
                if verdict is Verdict.DROP:
                    end.errors += 1
                    continue
                if verdict is Verdict.LATCH:
                    forwarder.latch(end, source, kernelize=False)
                    # This packet goes on from here first; then the stream may
                    # go to the kernel, whose install forgets the conntrack
                    # entry this send makes.
                    end.packets += 1
                    end.bytes += n
                    end.last_packet = now
                    if n >= 12 and end.health is not None:
                        end.health.rtp(view[:n], now)
                    forwarder.send(end, n)
                    forwarder.kernelize(end)
                    continue
                else:  # a stranger's packet, forwarded; it does not keep the stream alive
                    end.packets += 1
                    end.bytes += n
                    forwarder.send(end, n)
                    continue
            if n < 12:
                end.errors += 1
                continue
            end.packets += 1
            end.bytes += n
            end.last_packet = now
            if end.kernelized is not None:
                # Read before the kernel took the stream (a packet or two at
                # the switch): sent on, then the conntrack entry that send made
                # is forgotten, or it would shadow the kernel's NAT.
                forwarder.send(end, n)
                forwarder.resync(end)
                continue
            health = end.health
            if health is not None:
                health.rtp(view[:n], now)
            if end.taps:
                for tap in end.taps:
                    tap.rtp(end, view[:n], now)
            if end.processor is not None:
                end.processor.rtp(end, view[:n], now)
                continue
            sink = end.sink
            if sink is None:
                continue
            dest = sink.latched if sink.latched is not None and not sink.asymmetric \
                else sink.expected
            out = sockets.get(sink.port)
            if dest is None or out is None:
                continue
            try:
                out.sendto(view[:n], dest)
            except OSError:
                end.errors += 1


@implementer(IReadDescriptor)
class EpollReader:
    """The forwarder's epoll set, as one descriptor on the reactor."""

    def __init__(self, epoll: select.epoll, readers: dict[int, PortReader]) -> None:
        self.epoll = epoll
        self.readers = readers

    def fileno(self) -> int:
        return self.epoll.fileno()

    def logPrefix(self) -> str:  # noqa: N802 - Twisted's interface
        return "relay-media"

    def connectionLost(self, reason: Any) -> None:  # noqa: N802 - Twisted's interface
        return None

    def doRead(self) -> None:  # noqa: N802 - Twisted's interface
        # One datagram per ready socket per round, then ask epoll again: an
        # RTP port usually holds one packet, and draining it would cost a
        # second read that fails (about 2 µs, a tenth of a forwarded
        # packet's cost); epoll (level-triggered) reports again a socket that
        # still holds some, in one call for all of them.
        readers = self.readers
        poll = self.epoll.poll
        for _ in range(BURST):
            ready = poll(0, 1024)
            if not ready:
                return
            for fd, _ in ready:
                reader = readers.get(fd)
                if reader is not None:
                    reader.doRead(1)


class Forwarder:
    """The sockets of every end, the packets between them, and the kernel flows."""

    def __init__(self, reactor: Any, listen: str, fastpath: FastPath,
                 on_latch: Callable[[MediaEnd], None], *,
                 capture: RtcpTap | None = None) -> None:
        self.reactor = reactor
        self.listen = listen
        self.fastpath = fastpath
        self.on_latch = on_latch
        # Sees each RTCP packet accepted, before it goes on (HEP capture; see rtcp_capture.py).
        self.capture = capture
        self.buffer = bytearray(BUFFER)
        self.view = memoryview(self.buffer)
        self.buffers = [self.buffer]  # recvmsg_into's argument
        self.sockets: dict[int, socket.socket] = {}  # RTP port -> its socket
        self._readers: dict[int, PortReader] = {}  # every bound port
        self._by_fd: dict[int, PortReader] = {}
        self._epoll = select.epoll()
        self._epoll_reader = EpollReader(self._epoll, self._by_fd)
        reactor.addReader(self._epoll_reader)
        self._flows: dict[str, tuple[MediaEnd, MediaEnd]] = {}
        self._last_counts: dict[str, FlowCounters] = {}
        self.fastpath_failed: str | None = None

    # -- sockets ---------------------------------------------------------------------

    def bind(self, end: MediaEnd) -> None:
        """Open and watch `end`'s RTP and RTCP ports. OSError if the system refuses."""
        if end.health is None or end.health.clock_rate != end.clock_rate:
            end.health = StreamHealth(end.clock_rate)
        family = socket.AF_INET6 if ":" in self.listen else socket.AF_INET
        opened: list[tuple[int, socket.socket, bool]] = []
        try:
            for port, rtcp in ((end.port, False), (end.port + 1, True)):
                if port in self._readers:
                    continue
                sock = socket.socket(family, socket.SOCK_DGRAM)
                opened.append((port, sock, rtcp))
                sock.setblocking(False)
                sock.bind((self.listen, port))
        except OSError:
            for _, sock, _ in opened:
                sock.close()
            raise
        for port, sock, rtcp in opened:
            reader = PortReader(self, end, sock, rtcp)
            self._readers[port] = reader
            if not rtcp:
                self.sockets[port] = sock
            self._by_fd[reader.fileno()] = reader
            self._epoll.register(reader.fileno(), select.EPOLLIN)

    def refresh(self, end: MediaEnd) -> None:
        """New SDP may name another codec: health figures follow its clock rate."""
        if end.health is not None and end.health.clock_rate != end.clock_rate:
            end.health = StreamHealth(end.clock_rate)

    def stamp(self, end: MediaEnd, on: bool = True) -> None:
        """Give `end`'s packets the time the kernel received them, not the time they are read.

        For a stream whose jitter buffer is here (media repair, hosted
        media): when the relay is busy, packets wait in the socket for the
        reactor, and timing them on reading would add the relay's own delay
        to the path's jitter: the buffer would raise its delay and stretch
        audio for jitter the network never had. It costs about 1.3 µs a
        packet (recvmsg and its control message), so plain forwarding does
        without.
        """
        reader = self._readers.get(end.port)
        if reader is None or reader.stamped == on:
            return
        try:
            reader.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, int(on))
        except OSError as exc:  # not Linux: the read time will do
            log.warning("no kernel timestamps", port=end.port, error=str(exc))
            return
        reader.stamped = on

    def unbind(self, end: MediaEnd) -> None:
        self.unkernel(end)
        for port in (end.port, end.port + 1):
            reader = self._readers.pop(port, None)
            self.sockets.pop(port, None)
            if reader is not None:
                self._forget(reader)

    def _forget(self, reader: PortReader) -> None:
        self._by_fd.pop(reader.fileno(), None)
        try:
            self._epoll.unregister(reader.fileno())
        except (OSError, ValueError):
            pass
        reader.sock.close()

    def bound(self) -> int:
        return len(self._readers)

    def close(self) -> None:
        for key in list(self._flows):
            self._remove_flow(key)
        for reader in list(self._readers.values()):
            self._forget(reader)
        self._readers.clear()
        self.sockets.clear()
        self.reactor.removeReader(self._epoll_reader)
        self._epoll.close()

    # -- packets off the short path ----------------------------------------------------

    def send(self, end: MediaEnd, n: int) -> None:
        if end.taps:
            for tap in end.taps:
                tap.rtp(end, self.view[:n], time.time())
        if end.processor is not None:
            end.processor.rtp(end, self.view[:n], time.time())
            return
        sink = end.sink
        if sink is None:
            return
        dest = sink.destination()
        out = self.sockets.get(sink.port)
        if dest is not None and out is not None:
            try:
                out.sendto(self.view[:n], dest)
            except OSError:
                end.errors += 1

    def emit(self, end: MediaEnd, datagram: bytes) -> None:
        """Send `datagram` to `end`'s party from `end`'s own port (a processor's output)."""
        dest = end.destination()
        out = self.sockets.get(end.port)
        if dest is None or out is None:
            return
        try:
            out.sendto(datagram, dest)
        except OSError:
            end.errors += 1

    def latch(self, end: MediaEnd, source: tuple[str, int], *, kernelize: bool = True) -> None:
        if end.latched is not None:
            log.info("relatched", call_id=end.call_id, tag=end.tag, index=end.index,
                     old=f"{end.latched[0]}:{end.latched[1]}", new=f"{source[0]}:{source[1]}")
            self.unkernel(end)
        end.latched = source
        end.last_packet = time.time()
        self.on_latch(end)
        if kernelize:
            self.kernelize(end)

    def rtcp(self, end: MediaEnd, n: int, source: tuple[str, int], now: float) -> None:
        """RTCP is always read here: its reports feed the health figures, then it goes on."""
        if end.mux:
            if source != end.latched:
                verdict = rtp_verdict(end, source, now)
                if verdict is Verdict.DROP:
                    end.errors += 1
                    return
                if verdict is Verdict.LATCH:
                    self.latch(end, source)
        else:
            verdict = rtcp_verdict(end, source)
            if verdict is Verdict.DROP:
                end.errors += 1
                return
            if verdict is Verdict.LATCH and end.latched_rtcp != source:
                end.latched_rtcp = source
                self.on_latch(end)
        end.rtcp_packets += 1
        end.rtcp_bytes += n
        data = bytes(self.view[:n])
        sink = end.sink
        if end.health is not None:
            if sink is not None:
                end.health.pair(sink.health)
            end.health.rtcp(data, now, end.tag)
        if self.capture is not None:
            self.capture(end, data, source, (self.listen, end.rtcp_port), now)
        if sink is None:
            return
        dest = sink.rtcp_destination()
        out_port = sink.port if sink.mux else sink.port + 1
        reader = self._readers.get(out_port)
        if dest is not None and reader is not None:
            try:
                reader.sock.sendto(data, dest)
            except OSError:
                end.errors += 1

    # -- the kernel fast path ------------------------------------------------------------

    def kernelize(self, end: MediaEnd) -> None:
        """Hand `end`'s stream to the kernel if both of its ends are latched (and not multiplexed)."""
        sink = end.sink
        if sink is None or sink.sink is not end or end.kernelized is not None:
            return
        if end.processor is not None or sink.processor is not None or end.taps or sink.taps:
            return  # the relay works on or records this stream's audio: it stays here
        if end.latched is None or sink.latched is None or end.mux or sink.mux \
                or end.asymmetric or sink.asymmetric:
            return
        a, b = (end, sink) if end.port < sink.port else (sink, end)
        key = f"{a.call_id}/{a.port}-{b.port}"
        assert a.latched is not None and b.latched is not None
        flow = Flow(key, (self.listen, a.port), a.latched, (self.listen, b.port), b.latched)
        try:
            self.fastpath.install(flow)
        except Exception as exc:  # noqa: BLE001 - a failing fast path must not stop the media
            if self.fastpath_failed is None:
                log.error("fast path install failed; forwarding in userspace", error=str(exc))
            self.fastpath_failed = str(exc)
            return
        if self.fastpath.name == "userspace":
            return
        a.kernelized = b.kernelized = key
        self._flows[key] = (a, b)
        self._last_counts[key] = FlowCounters()

    def resync(self, end: MediaEnd) -> None:
        if end.kernelized is not None:
            try:
                self.fastpath.resync(end.kernelized)
            except Exception as exc:  # noqa: BLE001 - the kernel flow stays; this packet went on
                log.warning("fast path resync failed", key=end.kernelized, error=str(exc))

    def unkernel(self, end: MediaEnd) -> None:
        if end.kernelized is not None:
            self._remove_flow(end.kernelized)

    def _remove_flow(self, key: str) -> None:
        pair = self._flows.pop(key, None)
        self._last_counts.pop(key, None)
        try:
            counts = self.fastpath.remove(key)
        except Exception as exc:  # noqa: BLE001
            log.error("fast path remove failed", key=key, error=str(exc))
            counts = FlowCounters()
        if pair is None:
            return
        a, b = pair
        a.kernel_packets += counts.a_to_b_packets
        a.kernel_bytes += counts.a_to_b_bytes
        b.kernel_packets += counts.b_to_a_packets
        b.kernel_bytes += counts.b_to_a_bytes
        a.kernelized = b.kernelized = None

    def kernel_counts(self, end: MediaEnd) -> tuple[int, int]:
        """What the kernel counted for `end`'s direction of its flow still installed."""
        key = end.kernelized
        if key is None or key not in self._flows:
            return 0, 0
        counts = self.fastpath.counters(key)
        if self._flows[key][0] is end:
            return counts.a_to_b_packets, counts.a_to_b_bytes
        return counts.b_to_a_packets, counts.b_to_a_bytes

    def poll_kernel(self, now: float) -> None:
        """Bring the last-packet times of kernel-forwarded streams up to date (for the silence timeout)."""
        for key, (a, b) in list(self._flows.items()):
            counts = self.fastpath.counters(key)
            last = self._last_counts.get(key, FlowCounters())
            if counts.a_to_b_packets != last.a_to_b_packets:
                a.last_packet = now
            if counts.b_to_a_packets != last.b_to_a_packets:
                b.last_packet = now
            self._last_counts[key] = counts
