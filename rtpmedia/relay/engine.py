"""Media the relay touches: streams processed 20 ms at a time instead of forwarded as they come.

Plain forwarding never decodes a packet (and goes to the kernel when it
can). A stream whose audio the relay must work on (transcoding, media
repair, a call's recording, and the media the relay hosts itself: answer,
echo, playback, record, voicemail) gets a *processor* on its `MediaEnd`:

- the forwarder hands every RTP packet that party sends to
  `processor.rtp(end, packet, now)` instead of forwarding it (the packet is
  a view of a reused buffer: copy what you keep), and never gives such a
  stream to the kernel;
- every 20 ms the engine calls `processor.tick(now, emit)` of every
  processor once; `emit(end, datagram)` sends an RTP (or RTCP) datagram to
  `end`'s party from `end`'s own port, so what the party hears comes from
  where it sends.

A *tap* (`attach_tap`) sees a copy of a party's packets beside whatever
forwards them (plain forwarding, or the end's processor): the recording of
a call is one, so a recorded call can also be transcoded or repaired.

One tick serves every processed stream, so work that vectorises across
streams (G.711 tables over an (n, 160) array) can be done there at once
rather than packet by packet. The engine runs its timer only while some
processor is attached.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import structlog
from twisted.internet.task import LoopingCall

from rtpmedia.relay.calls import MediaEnd

log = structlog.get_logger("relay")
TICK = 0.020

Emit = Callable[[MediaEnd, bytes], None]


class Processor(Protocol):
    def rtp(self, end: MediaEnd, packet: memoryview, now: float) -> None:
        """An RTP packet from `end`'s party (a view of a reused buffer)."""
        ...

    def tick(self, now: float, emit: Emit) -> None:
        """20 ms passed: send what is due with `emit`."""
        ...

    def close(self) -> None:
        """The processor is detached (its ends unbound, the call deleted): flush files, free state."""
        ...


class MediaEngine:
    """The processors of the relay's processed streams, and their common 20 ms tick."""

    def __init__(self, reactor: Any, emit: Emit) -> None:
        self.emit = emit
        self._processors: dict[int, tuple[Processor, list[MediaEnd]]] = {}
        #: Run after every processor's tick, with the same time: work gathered
        #: from all of them and done in one vectorised call (hosted.ToneScanner).
        self.stages: list[Callable[[float], None]] = []
        self._loop = LoopingCall(self.tick)
        self._loop.clock = reactor

    def attach_tap(self, processor: Processor, ends: list[MediaEnd]) -> None:
        """`processor` sees a copy of what `ends`' parties send, beside whatever forwards it
        (plain forwarding, or the end's own processor: a recording of a transcoded call)."""
        for end in ends:
            if processor not in end.taps:
                end.taps = (*end.taps, processor)
        self._processors[id(processor)] = (processor, list(ends))
        if not self._loop.running:
            self._loop.start(TICK, now=False)

    def attach(self, processor: Processor, ends: list[MediaEnd]) -> None:
        """`processor` receives what `ends`' parties send; ends it held before are released."""
        for end in ends:
            if end.processor is not None and end.processor is not processor:
                self.detach(end.processor)
            end.processor = processor
        self._processors[id(processor)] = (processor, list(ends))
        if not self._loop.running:
            self._loop.start(TICK, now=False)

    def detach(self, processor: Processor) -> None:
        entry = self._processors.pop(id(processor), None)
        if entry is None:
            return
        for end in entry[1]:
            if end.processor is processor:
                end.processor = None
            if processor in end.taps:
                end.taps = tuple(t for t in end.taps if t is not processor)
        try:
            processor.close()
        finally:
            if not self._processors and self._loop.running:
                self._loop.stop()

    def forget(self, end: MediaEnd) -> None:
        """`end` is unbound: its processor and taps go with it."""
        if end.processor is not None:
            self.detach(end.processor)
        for tap in end.taps:
            self.detach(tap)

    def processors(self) -> list[Processor]:
        return [p for p, _ in self._processors.values()]

    def tick(self, now: float | None = None) -> None:
        t = time.time() if now is None else now
        for processor, _ in list(self._processors.values()):
            try:
                processor.tick(t, self.emit)
            except Exception:  # noqa: BLE001 - one broken stream must not stop every other
                log.exception("media processor failed; detached", processor=repr(processor))
                try:
                    self.detach(processor)
                except Exception:  # noqa: BLE001
                    log.exception("media processor failed to close")
        for stage in self.stages:
            try:
                stage(t)
            except Exception:  # noqa: BLE001 - logged; the next tick tries again
                log.exception("media stage failed")

    def close(self) -> None:
        for processor, _ in list(self._processors.values()):
            self.detach(processor)
