"""Recording a whole relayed call: one WAV channel per party, while the call is forwarded.

The control (`recording_commands.py`) decides *that* a call is recorded
(the `record-call` flag of `offer`/`answer`, or `start recording` without a
from-tag, as rtpengine does) and names the file; this module does it. A `CallRecording` is a
media-engine *tap* on the two parties' audio ends: it sees a copy of every
packet a party sends, which is forwarded as it would be without the
recording (plainly, or converted by a transcoding bridge), and puts it into
that party's `Receiver` (jitter buffer, decode, concealment). Every 20 ms
tick writes one stereo frame: left the caller (the call's first party),
right the other; a party with nothing to play gives silence, so the two
channels stay on the relay's one clock.

Files live under the relay's media dir: `recordings/YYYY-MM-DD/<call-id>.wav`
(UTC date of the recording's start), 8 kHz 16-bit stereo, written as it
goes under a `.part` name and put in place durably at the end
(`recorder.Recorder`: header fixed up, fsync, rename). Beside it
`<call-id>.json` says who and when. A relay restarted during a recorded
call keeps the part finished before it stopped and goes on into
`<call-id>.2.wav` (then .3, ...); the JSON lists every part.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from rtpmedia.codecs import PCMA, PCMU
from rtpmedia.codecs.base import Codec
from rtpmedia.durable import try_fsync_dir
from rtpmedia.receiver import FRAME, Receiver
from rtpmedia.recorder import Recorder
from rtpmedia.relay.calls import MediaEnd
from rtpmedia.relay.engine import Emit
from rtpmedia.srtp import SrtpReader

log = structlog.get_logger("relay")

#: The payload types a recording decodes (RFC 3551 static): other codecs are
#: forwarded but recorded as silence; RFC 4733 events are never audio.
RECORDED_CODECS: Mapping[int, Codec] = {0: PCMU, 8: PCMA}


@dataclass(frozen=True, slots=True)
class RecordingInfo:
    """What the metadata JSON says about a recording, beside the audio."""

    call_id: str
    sip_call_id: str
    left: str  # the caller's tag: the WAV's left channel
    right: str  # the other party's tag: the right channel


class CallRecording:
    """Writes both parties' audio as a stereo WAV (a `Processor` used as a tap: it forwards nothing)."""

    def __init__(self, path: Path, info: RecordingInfo, left: MediaEnd, right: MediaEnd,
                 now: float) -> None:
        self.info = info
        self.ends = (left, right)
        self.first = path  # the first part's name: the metadata is named after it
        recover_parts(path, info)  # a relay killed mid-recording left a .part behind
        self.path, self.part = _free_part(path)
        self.receivers = (Receiver(RECORDED_CODECS), Receiver(RECORDED_CODECS))
        self._srtp: list[SrtpReader | None] = [None, None]
        # Failures of readers replaced by a re-INVITE's new keys, so the count only grows.
        self._srtp_failed_before = [0, 0]
        # Frames are written at the tick's pace, so a short hold is enough.
        self.recorder = Recorder(self.path, 2, hold=0.5)
        self.started = now
        self._ticks = 0
        self.closed = False

    def rtp(self, end: MediaEnd, packet: memoryview, now: float) -> None:
        # A tap: the packet is forwarded by whoever forwards it (plain, or a
        # transcoding bridge); the recording never delays or changes the call.
        side = 0 if end is self.ends[0] else 1 if end is self.ends[1] else None
        if side is None:
            return
        if end.crypto:  # SDES-SRTP: a decrypted copy for the recording only
            reader = self._srtp[side]
            if reader is None or reader.crypto != end.crypto:  # new keys (a re-INVITE)
                if reader is not None:
                    self._srtp_failed_before[side] += reader.failed
                reader = self._srtp[side] = SrtpReader(end.crypto)
            plain = reader.unprotect(bytes(packet))
            if plain is not None:
                self.receivers[side].put_packet(plain, now)
            return
        self.receivers[side].put_packet(packet, now)

    def srtp_failed(self, end: MediaEnd) -> int | None:
        """SRTP copies of `end`'s party that no key authenticated, left out of the recording
        (None: the recording has decrypted nothing of that party, e.g. a plain RTP leg).

        The call itself is not touched: the packets were forwarded as they came."""
        side = 0 if end is self.ends[0] else 1 if end is self.ends[1] else None
        if side is None:
            return None
        reader = self._srtp[side]
        if reader is None and not self._srtp_failed_before[side]:
            return None
        return self._srtp_failed_before[side] + (reader.failed if reader is not None else 0)

    def tick(self, now: float, emit: Emit) -> None:
        if self.closed:
            return
        timestamp = self._ticks * FRAME
        self._ticks += 1
        for side, receiver in enumerate(self.receivers):
            frame = receiver.frame(now)
            self.recorder.add(side, timestamp, now,
                              np.zeros(FRAME, np.int16) if frame is None else frame)

    def close(self) -> None:
        """Finish the WAV (durably) and write the metadata beside it."""
        if self.closed:
            return
        self.closed = True
        duration = self.recorder.close()
        try_fsync_dir(self.path.parent)
        try:
            write_metadata(self.first, self.path, self.info, self.started, duration)
        except OSError as exc:
            log.error("recording metadata not written", call_id=self.info.call_id, error=str(exc))
        # Per side (caller, other party): packets cut into 20 ms frames (a=ptime
        # 10, 30...), and packets that could not be (recorded as silence).
        log.info("recording finished", call_id=self.info.call_id, file=str(self.path),
                 seconds=round(duration, 2),
                 reframed=[r.counts.reframed for r in self.receivers],
                 other_duration=[r.counts.other_duration for r in self.receivers])


def metadata_path(first: Path) -> Path:
    return first.with_suffix(".json")


def write_metadata(first: Path, path: Path, info: RecordingInfo, started: float,
                   duration: float, *, recovered: bool = False) -> None:
    """`<call-id>.json`: the call, its parties, and each part's file, start and duration.

    `first` is the first part's file, `path` the part just finished.
    """
    meta_file = metadata_path(first)
    parts: list[dict[str, Any]] = []
    if path != first:
        try:
            old = json.loads(meta_file.read_text())
            parts = [p for p in old.get("parts", []) if isinstance(p, dict)]
        except (OSError, ValueError):
            parts = []
    # Per part too: a transfer pairs the caller with another party (a new part).
    entry: dict[str, Any] = {"file": path.name, "start": round(started, 3),
                             "duration": round(duration, 3),
                             "left": info.left, "right": info.right}
    if recovered:
        entry["recovered"] = True
    parts = [p for p in parts if p.get("file") != path.name] + [entry]
    meta = {
        "call-id": info.call_id,
        "sip-call-id": info.sip_call_id or None,
        "parties": {"left": info.left, "right": info.right},
        "file": first.name,
        "start": parts[0]["start"],
        "start_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(parts[0]["start"])),
        "duration": round(sum(float(p["duration"]) for p in parts), 3),
        "parts": parts,
    }
    tmp = meta_file.with_name(f".{meta_file.name}.part")
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, meta_file)
    try_fsync_dir(meta_file.parent)


def recover_parts(first: Path, info: RecordingInfo) -> list[Path]:
    """Put in place the parts a killed relay left half-written (`.<name>.part`).

    Their audio is all there (written every second or so) but the WAV header
    still says length 0: it is fixed from the file's size, then the part is
    renamed into place and added to the metadata (its start estimated from
    the file's last write, and marked `recovered`).
    """
    recovered: list[Path] = []
    part = 1
    while True:
        final = _part_path(first, part)
        stale = final.with_name(f".{final.name}.part")
        if stale.exists() and not final.exists():
            try:
                duration = _fix_wav_header(stale)
                ended = stale.stat().st_mtime
                os.replace(stale, final)
                try_fsync_dir(final.parent)
                write_metadata(first, final, info, ended - duration, duration, recovered=True)
            except (OSError, ValueError) as exc:
                log.error("recording part not recovered", file=str(stale), error=str(exc))
                return recovered
            log.warning("recording part recovered after a crash", file=str(final),
                        seconds=round(duration, 2))
            recovered.append(final)
        elif not final.exists():
            return recovered
        part += 1


def _fix_wav_header(path: Path) -> float:
    """Set the RIFF and data sizes of a 16-bit stereo WAV written by `wave` from its length."""
    with open(path, "r+b") as f:
        header = f.read(44)
        if len(header) < 44 or header[:4] != b"RIFF" or header[36:40] != b"data":
            raise ValueError("not a WAV written by the recorder")
        size = os.fstat(f.fileno()).st_size
        data = (size - 44) - (size - 44) % 4  # whole stereo 16-bit frames
        f.truncate(44 + data)
        f.seek(4)
        f.write((36 + data).to_bytes(4, "little"))
        f.seek(40)
        f.write(data.to_bytes(4, "little"))
        f.flush()
        os.fsync(f.fileno())
    return data / 4 / 8000


class Recordings:
    """The relay's recorded calls (glue): starts and stops `CallRecording`s on the engine."""

    def __init__(self, media_dir: Path, attach: Any, detach: Any) -> None:
        """`attach(processor, ends)` and `detach(processor)` are the relay's (Relay.tap)."""
        self.media_dir = media_dir
        self._attach = attach
        self._detach = detach
        self.active: dict[str, CallRecording] = {}

    def start(self, call_id: str, file: str, info: RecordingInfo, left: MediaEnd,
              right: MediaEnd, now: float) -> None:
        current = self.active.get(call_id)
        if current is not None and not current.closed and current.ends == (left, right):
            return  # a re-INVITE of a call already recorded: it goes on as it was
        if current is not None:
            self._detach(current)
        try:
            rec = CallRecording(self.media_dir / file, info, left, right,
                                now)
        except OSError as exc:
            log.error("recording not started", call_id=call_id, file=file, error=str(exc))
            return
        self.active[call_id] = rec
        self._attach(rec, [left, right])
        log.info("recording", call_id=call_id, file=str(rec.path))

    def stop(self, call_id: str) -> None:
        rec = self.active.pop(call_id, None)
        if rec is not None:
            self._detach(rec)

    def forget_closed(self) -> None:
        """Drop the entries of recordings the engine closed (their call was deleted)."""
        for call_id in [c for c, r in self.active.items() if r.closed]:
            del self.active[call_id]


def _part_path(path: Path, part: int) -> Path:
    return path if part == 1 else path.with_name(f"{path.stem}.{part}{path.suffix}")


def _free_part(path: Path) -> tuple[Path, int]:
    """`path`, or its next part if an earlier part exists (a relay restarted mid-call)."""
    part = 1
    while _part_path(path, part).exists():
        part += 1
    return _part_path(path, part), part
