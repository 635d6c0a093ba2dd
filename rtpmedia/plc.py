"""Packet loss concealment for 8 kHz speech in 20 ms frames (sans-IO, numpy).

Every concealer here has the same two calls, made once per 20 ms frame of a
stream, in playout order:

* ``good(frame) -> frame``: a frame arrived; returns what to play (a
  concealer may blend the first frame after a loss, or delay its output).
* ``conceal(next_frame=None) -> frame``: the frame is missing; returns a
  substitute. ``next_frame`` is the frame after the missing one when the
  jitter buffer already holds it; those that can use it interpolate.

A frame is `FRAME` (160) int16 samples; another shape raises ValueError.

Concealers:

* `Silence` and `Repeat` (packet repetition): the yardsticks.
* `G711AppendixI`: ITU-T G.711 Appendix I (1999), the reference concealer:
  pitch-period substitution from a 48.75 ms history in 10 ms sub-frames,
  1/4-pitch overlap-add (and 3.75 ms of added delay), one more period per
  10 ms up to three, 20% attenuation per 10 ms after the first 10 ms,
  silence after 60 ms, a longer overlap-add on recovery.
* `Concealer`: ours; see its docstring for what it does beyond Appendix I
  and docs/benchmarks.md for what each step measurably buys.

`conceal_many` conceals many streams' lost frames in one call (the relay's
20 ms tick), with the work batched across them and each stream's output the
same as alone.
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from rtpmedia.lpc import (
    PAD_AFTER,
    autocorrelation_many,
    drive_many,
    impulse_responses,
    levinson_many,
    lpc_of,
    pad_edges,
    pitch_many,
    read_many,
    residual_many,
)

RATE = 8000
FRAME = 160  # 20 ms

Frame = npt.NDArray[np.int16]

__all__ = [
    "FRAME",
    "RATE",
    "Concealer",
    "Frame",
    "G711AppendixI",
    "PacketConcealer",
    "Repeat",
    "Silence",
    "Tuning",
    "conceal_many",
    "good_many",
]


def _frame_in(frame: npt.ArrayLike) -> npt.NDArray[np.float64]:
    a = np.asarray(frame)
    if a.shape != (FRAME,):
        raise ValueError(f"a frame is {FRAME} samples, got shape {a.shape}")
    return a.astype(np.float64)


def _to_int16(x: npt.NDArray[np.float64]) -> Frame:
    # nan_to_num costs more than the rest together and NaN never comes from
    # real audio; infinities are clipped like any loud sample. The ufuncs
    # are the same clip without ndarray.clip's Python wrapper.
    if np.isnan(x).any():
        x = np.nan_to_num(x, nan=0.0, posinf=32767.0, neginf=-32768.0)
    return np.minimum(np.maximum(np.rint(x), -32768.0), 32767.0).astype(np.int16)


class PacketConcealer(ABC):
    """The interface: one instance per stream, fed every frame in playout order."""

    #: Samples by which `good` delays its output (Appendix I adds 30).
    delay: int = 0

    @abstractmethod
    def good(self, frame: npt.ArrayLike, *, owned: bool = False) -> Frame:
        """A frame was received: remember it; return the frame to play.

        `owned`: the caller hands over an int16 frame that nobody modifies
        afterwards, so a concealer may keep it (and return it) uncopied.
        """

    @abstractmethod
    def conceal(self, next_frame: npt.ArrayLike | None = None) -> Frame:
        """A frame is missing: return a substitute of `FRAME` samples."""


class Silence(PacketConcealer):
    """Zeros in place of every missing frame."""

    def good(self, frame: npt.ArrayLike, *, owned: bool = False) -> Frame:
        return _to_int16(_frame_in(frame))

    def conceal(self, next_frame: npt.ArrayLike | None = None) -> Frame:
        return np.zeros(FRAME, dtype=np.int16)


class Repeat(PacketConcealer):
    """Packet repetition: the last received frame again (silence before any)."""

    def __init__(self) -> None:
        self._last = np.zeros(FRAME, dtype=np.int16)

    def good(self, frame: npt.ArrayLike, *, owned: bool = False) -> Frame:
        self._last = _to_int16(_frame_in(frame))
        return self._last.copy()

    def conceal(self, next_frame: npt.ArrayLike | None = None) -> Frame:
        return self._last.copy()


# --- ITU-T G.711 Appendix I -------------------------------------------------

_A1_PITCH_MIN = 40  # 200 Hz
_A1_PITCH_MAX = 120  # 66.7 Hz
_A1_PITCHDIFF = _A1_PITCH_MAX - _A1_PITCH_MIN
_A1_POVERLAPMAX = _A1_PITCH_MAX >> 2  # 30 samples, also the added delay
_A1_HISTORYLEN = _A1_PITCH_MAX * 3 + _A1_POVERLAPMAX  # 390 samples, 48.75 ms
_A1_NDEC = 2  # 2:1 decimation of the coarse pitch search
_A1_CORRLEN = 160
_A1_CORRBUFLEN = _A1_CORRLEN + _A1_PITCH_MAX
_A1_CORRMINPOWER = 250.0
_A1_EOVERLAPINCR = 32
_A1_FRAMESZ = 80  # Appendix I works in 10 ms sub-frames
_A1_ATTENFAC = 0.2
_A1_ATTENINCR = _A1_ATTENFAC / _A1_FRAMESZ


def _a1_ramp(start: float, step: float, n: int) -> npt.NDArray[np.float64]:
    """start, start + step, ... accumulated one addition at a time, as the reference's
    loops do (a closed form rounds differently and flips some truncated samples)."""
    out = np.empty(n)
    v = start
    for i in range(n):
        out[i] = v
        v += step
    return out


def _a1_ola(
    left: npt.NDArray[np.float64], right: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Appendix I's triangular overlap-add: `left` fades out while `right` fades in."""
    n = len(left)
    incr = 1.0 / n
    lw = _a1_ramp(1.0 - incr, -incr, n)
    rw = _a1_ramp(incr, incr, n)
    return (lw * left + rw * right).clip(-32768.0, 32767.0)


class G711AppendixI(PacketConcealer):
    """ITU-T G.711 Appendix I, sample for sample, in 20 ms frames (two of its 10 ms ones).

    Keeps the float pitch buffer and int16 history of the reference C code
    (``LowcFE``), truncates where it casts to ``short`` and accumulates its
    fades step by step: identical output to that code built with ``Float``
    as double (a float build differs by up to 2 LSB in 0.5% of samples).
    Its output is delayed by `delay` (30 samples) relative to its input.
    """

    delay = _A1_POVERLAPMAX

    def __init__(self) -> None:
        self._history = np.zeros(_A1_HISTORYLEN, dtype=np.float64)  # int16 values
        self._pitchbuf = np.zeros(_A1_HISTORYLEN, dtype=np.float64)
        self._lastq = np.zeros(_A1_POVERLAPMAX, dtype=np.float64)
        self._erasecnt = 0
        self._pitch = 0
        self._poverlap = 0
        self._poffset = 0
        self._pitchblen = 0
        self._start = 0  # index of pitchbufstart in _pitchbuf

    # The public calls split a 20 ms frame into the reference's two sub-frames.
    def good(self, frame: npt.ArrayLike, *, owned: bool = False) -> Frame:
        s = _frame_in(frame)
        out = np.concatenate(
            [self._addtohistory(s[:_A1_FRAMESZ]), self._addtohistory(s[_A1_FRAMESZ:])]
        )
        return out.astype(np.int16)

    def conceal(self, next_frame: npt.ArrayLike | None = None) -> Frame:
        return np.concatenate([self._dofe(), self._dofe()]).astype(np.int16)

    @staticmethod
    def _short(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.trunc(x.clip(-32768.0, 32767.0))

    def _savespeech(self, s: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Append a sub-frame to the history; return the sub-frame delayed by POVERLAPMAX."""
        h = self._history
        h[:-_A1_FRAMESZ] = h[_A1_FRAMESZ:].copy()
        h[-_A1_FRAMESZ:] = s
        end = _A1_HISTORYLEN - _A1_POVERLAPMAX
        return h[end - _A1_FRAMESZ : end].copy()

    def _getfespeech(self, n: int) -> npt.NDArray[np.float64]:
        idx = (self._poffset + np.arange(n)) % self._pitchblen
        self._poffset = (self._poffset + n) % self._pitchblen
        return self._short(self._pitchbuf[self._start + idx])

    def _scalespeech(self, out: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        g = _a1_ramp(1.0 - (self._erasecnt - 1) * _A1_ATTENFAC, -_A1_ATTENINCR, _A1_FRAMESZ)
        return np.trunc(out * g)

    def _findpitch(self) -> int:
        """Normalised cross-correlation pitch search, 2:1 decimated, then refined."""
        buf = self._pitchbuf
        end = _A1_HISTORYLEN
        target = buf[end - _A1_CORRLEN :]
        r = buf[end - _A1_CORRBUFLEN :]

        def score(j: int, step: int) -> float:
            seg = r[j : j + _A1_CORRLEN : step]
            energy = max(float(seg @ seg), _A1_CORRMINPOWER)
            return float(seg @ target[::step]) / math.sqrt(energy)

        best, bestcorr = 0, score(0, _A1_NDEC)
        for j in range(_A1_NDEC, _A1_PITCHDIFF + 1, _A1_NDEC):
            c = score(j, _A1_NDEC)
            if c >= bestcorr:  # the reference keeps the last of equal maxima
                best, bestcorr = j, c
        lo = max(best - (_A1_NDEC - 1), 0)
        hi = min(best + (_A1_NDEC - 1), _A1_PITCHDIFF)
        best, bestcorr = lo, score(lo, 1)
        for j in range(lo + 1, hi + 1):
            c = score(j, 1)
            if c > bestcorr:
                best, bestcorr = j, c
        return _A1_PITCH_MAX - best

    def _dofe(self) -> npt.NDArray[np.float64]:
        end = _A1_HISTORYLEN
        if self._erasecnt == 0:
            self._pitchbuf[:] = self._history
            self._pitch = self._findpitch()
            self._poverlap = n = self._pitch >> 2
            self._lastq[:n] = self._pitchbuf[end - n :]
            self._poffset = 0
            self._pitchblen = self._pitch
            self._start = end - self._pitchblen
            self._pitchbuf[end - n :] = _a1_ola(
                self._lastq[:n], self._pitchbuf[self._start - n : self._start]
            )
            self._history[end - n :] = self._short(self._pitchbuf[end - n :])
            out = self._getfespeech(_A1_FRAMESZ)
        elif self._erasecnt in (1, 2):
            n = self._poverlap
            saveoffset = self._poffset
            tail = self._getfespeech(n)  # the old pitch buffer's continuation
            self._poffset = saveoffset
            while self._poffset > self._pitch:
                self._poffset -= self._pitch
            self._pitchblen += self._pitch  # one more period
            self._start = end - self._pitchblen
            self._pitchbuf[end - n :] = _a1_ola(
                self._lastq[:n], self._pitchbuf[self._start - n : self._start]
            )
            out = self._getfespeech(_A1_FRAMESZ)
            out[:n] = self._short(_a1_ola(tail, out[:n]))
            out = self._scalespeech(out)
        elif self._erasecnt > 5:
            out = np.zeros(_A1_FRAMESZ)
        else:
            out = self._scalespeech(self._getfespeech(_A1_FRAMESZ))
        self._erasecnt += 1
        return self._savespeech(out)

    def _addtohistory(self, s: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if self._erasecnt:
            # Longer erasures get longer overlaps into the real signal.
            olen = min(self._poverlap + (self._erasecnt - 1) * _A1_EOVERLAPINCR, _A1_FRAMESZ)
            f = self._getfespeech(olen)
            # The synthetic side keeps the gain the erasure had reached.
            gain = max(1.0 - (self._erasecnt - 1) * _A1_ATTENFAC, 0.0)
            incr = 1.0 / olen
            lw = _a1_ramp((1.0 - incr) * gain, -incr * gain, olen)
            rw = _a1_ramp(incr, incr, olen)
            s = s.copy()
            s[:olen] = self._short(lw * f + rw * s[:olen])
            self._erasecnt = 0
        return self._savespeech(s)


# --- ours --------------------------------------------------------------------

PITCH_MIN = 32  # 250 Hz: higher voices than Appendix I's 200 Hz limit
PITCH_MAX = 140  # 57 Hz
LPC_ORDER = 10
HISTORY = 480  # 60 ms
#: Good frames whose level is measured together (see `Concealer._unmeasured`).
_MEASURE_BATCH = 50


@dataclass(frozen=True, slots=True)
class Tuning:
    """Switches for the steps of `Concealer`, so that the benchmark can measure each one."""

    lookahead: bool = True  # interpolate towards next_frame when it is given
    lpc: bool = True  # extend the LPC residual, not the waveform
    fractional_pitch: bool = True
    comfort_noise: bool = True  # fade towards the background level, not to zero
    fade_start: float = 10e-3  # seconds at full level
    fade_tau: float = 80e-3  # then an exponential decay with this time constant
    merge_width: int = 24  # samples of cross-fade into audio that returns unannounced


_DEFAULT_TUNING = Tuning()


class _Extension:
    """Continues a signal past its end: its LPC excitation repeated at the pitch period.

    The synthesis filter starts from the signal's own last samples, so the
    extension joins it without a step and without added delay. Made and read
    in batches (`_extend_many`, `_take_many`); the rows it holds may be views
    of a batch's arrays, which nothing writes to afterwards.
    """

    __slots__ = (
        "a", "h", "lag", "length", "lpc", "memory", "offset", "padded", "pos", "voicing"
    )

    def __init__(
        self,
        lpc: bool,
        memory: npt.NDArray[np.float64],
        lag: float,
        voicing: float,
        a: npt.NDArray[np.float64],
        h: npt.NDArray[np.float64] | None,
        padded: npt.NDArray[np.float64],
        length: int,
    ) -> None:
        self.lpc = lpc
        self.memory = memory
        self.lag = lag
        self.voicing = voicing
        self.a = a
        self.h = h  # 1/A(z)'s impulse response (FRAME samples), None without LPC
        # The end of the excitation (the LPC residual): reads reach back one
        # pitch period at most. Padded for `read_many`; `offset` is where
        # sample 0 of the whole excitation (`length` samples) would be in it.
        self.padded = padded
        self.length = length
        self.offset = len(padded) - PAD_AFTER - length
        self.pos = 0  # samples produced so far

    def take(self, n: int) -> npt.NDArray[np.float64]:
        return _take_many([self], n)[0]


#: Samples of an extension's excitation kept: reads go back at most one
#: pitch period (PITCH_MAX), and the cubic interpolation one sample further.
_EXCITATION_KEPT = PITCH_MAX + 4


def _extend_many(groups: Sequence[tuple[npt.NDArray[np.float64], Tuning]]) -> list[list[_Extension]]:
    """An extension of each row of each group's `x` (k, n), C-contiguous.

    Groups differ in length (histories, next frames) or tuning; their
    Levinson-Durbin recursions run together.
    """
    picked = []
    rs = []
    silents = []
    for x, tuning in groups:
        n = x.shape[1]
        # Short input (the next frame, reversed) gets a shorter window so that long lags still fit.
        span = min(160, max(64, n - PITCH_MAX))
        lag, voicing = pitch_many(x, PITCH_MIN, PITCH_MAX, span)
        if not tuning.fractional_pitch:
            lag = np.round(lag)
        picked.append((lag.tolist(), voicing.tolist()))
        if tuning.lpc:
            r, silent = autocorrelation_many(x[:, -min(n, 240) :], LPC_ORDER)
            rs.append(r)
            silents.append(silent)
    if rs:
        one = len(rs) == 1
        coefs = levinson_many(rs[0] if one else np.concatenate(rs), LPC_ORDER)
        a_all = lpc_of(coefs, silents[0] if one else np.concatenate(silents))
        h_all = impulse_responses(a_all)
    out = []
    at = 0
    for (x, tuning), (lags, voicings) in zip(groups, picked, strict=True):
        k, n = x.shape
        memory = x[:, -LPC_ORDER:].copy()
        hs: list[npt.NDArray[np.float64] | None]
        if tuning.lpc:
            a = a_all[at : at + k]
            hs = list(h_all[at : at + k])
            at += k
            length = n - LPC_ORDER
            res = pad_edges(residual_many(x, a, _EXCITATION_KEPT))
        else:
            a = np.ones((k, 1))
            hs = [None] * k
            length = n
            res = pad_edges(x[:, -_EXCITATION_KEPT:])
        out.append([
            _Extension(tuning.lpc, m, lg, v, c, h, r, length)
            for m, lg, v, c, h, r in zip(memory, lags, voicings, a, hs, res, strict=True)
        ])
    return out


def _take_many(exts: Sequence[_Extension], n: int) -> npt.NDArray[np.float64]:
    """The next `n` (<= FRAME) samples of every extension, one row each; advances them."""
    if n > FRAME:
        raise ValueError(f"an extension is read at most {FRAME} samples at a time")
    t = np.arange(n, dtype=np.float64)
    if len(exts) == 1:  # the same arithmetic, assembled with fewer numpy calls
        e = exts[0]
        t += float(e.pos)
        pos = ((e.length - e.lag) + t % e.lag)[None]
        exc = read_many(e.padded, e.offset, pos)
    else:
        lags = np.array([e.lag for e in exts])
        length = np.array([e.length for e in exts])
        sizes = np.array([len(e.padded) for e in exts])
        start = np.cumsum(sizes) - sizes + np.array([e.offset for e in exts])
        t = np.array([float(e.pos) for e in exts])[:, None] + t
        pos = (length - lags)[:, None] + t % lags[:, None]
        exc = read_many(np.concatenate([e.padded for e in exts]), start[:, None], pos)
    for e in exts:
        e.pos += n
    filtered = [r for r, e in enumerate(exts) if e.lpc]
    if not filtered:
        return exc
    if len(filtered) < len(exts):
        exc[filtered] = _synthesise_many([exts[r] for r in filtered], exc[filtered])
        return exc
    return _synthesise_many(exts, exc)


def _synthesise_many(exts: Sequence[_Extension], exc: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """1/A(z) of each extension over its row of `exc` (n <= FRAME), continuing from its
    past outputs; updates their memories.

    One direct convolution per row with the filter's impulse response:
    through the FFT a batch costs less, but one stream (the common case on
    a quiet tick, and the CLI's) pays two transforms' fixed cost, more
    than the whole product.
    """
    k, n = exc.shape
    if k == 1:
        e = exts[0]
        drive = drive_many(exc, e.a[None], e.memory[None])
    else:
        drive = drive_many(exc, np.array([e.a for e in exts]), np.array([e.memory for e in exts]))
    y = np.empty((k, n))
    for e, row, out in zip(exts, drive, y, strict=True):
        assert e.h is not None
        out[:] = np.convolve(row, e.h[:n])[:n]
        e.memory = out[-LPC_ORDER:] if n >= LPC_ORDER else np.concatenate([e.memory, out])[-LPC_ORDER:]
    return y


class Concealer(PacketConcealer):
    """Our concealer: extends the LPC excitation, and interpolates when it can.

    * A lost frame continues the LPC residual of the last 60 ms at the
      (fractional) pitch period, through the LPC synthesis filter whose
      memory is the last real samples: the join is continuous without the
      3.75 ms delay that Appendix I's overlap-add costs.
    * When the next frame is already at hand (the jitter buffer holds it),
      it is extended backwards the same way and the two extensions are
      cross-faded over the whole frame.
    * After 10 ms the level decays (time constant 80 ms) towards the
      stream's background noise level: comfort noise, not digital silence.
    * Audio that returns without warning is cross-faded in over 3 ms.

    Many streams' lost frames are concealed together by `conceal_many`
    (which `conceal` calls with one); the work is batched, each stream's
    state stays here.

    docs/benchmarks.md has what each step buys and what was tried and left out.
    """

    def __init__(self, seed: int = 0, tuning: Tuning | None = None) -> None:
        self.tuning = tuning or _DEFAULT_TUNING  # one shared object: cheap to group by
        self._rng = np.random.default_rng(seed)
        # The last HISTORY samples as the frames that made them (int16 as
        # received, float64 where concealed or merged), oldest first: a good
        # frame only swaps a reference; the float history is built when a
        # loss needs it, which is rare, instead of shifting 480 floats a frame.
        self._recent: list[npt.NDArray[np.int16] | npt.NDArray[np.float64]] = [
            np.zeros(FRAME) for _ in range(HISTORY // FRAME)
        ]
        self._lost = 0  # consecutive frames concealed
        self._ext: _Extension | None = None
        self._expect: npt.NDArray[np.float64] | None = None  # the next frame we interpolated to
        self._floor = 0.0  # background level (RMS) of received frames
        # Good int16 frames whose level `_floor` has not taken in yet: it is
        # needed only when a loss comes, so their levels are measured then
        # (or every `_MEASURE_BATCH` frames), many in one numpy call.
        self._unmeasured: list[Frame] = []
        # `_fade`'s answers for this stream's tuning, by frames lost so far.
        self._fades: dict[int, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = {}

    def good(self, frame: npt.ArrayLike, *, owned: bool = False) -> Frame:
        a = np.asarray(frame)
        if self._ext is None and a.dtype == np.int16 and a.shape == (FRAME,):
            # The common case, one per frame per stream: no float work. The
            # history needs an array nobody changes: the caller's own when it
            # hands it over (`owned`), else a copy (the caller may reuse its
            # buffer), and another copy is played.
            own = a if owned else a.copy()
            self._remember(own)
            self._unmeasured.append(own)
            if len(self._unmeasured) >= _MEASURE_BATCH:
                self._measure()
            return own if owned else own.copy()
        x = _frame_in(frame)
        if self._ext is None:
            self._remember(x)
            self._track_floor(x)
            return _to_int16(x)
        if self._expect is None or not np.array_equal(self._expect, x):
            x = self._merge(x)
        self._returned(x)
        return _to_int16(x)

    def _returned(self, x: npt.NDArray[np.float64]) -> None:
        """Audio is back after a loss: `x` is what is played of its first frame."""
        self._lost = 0
        self._ext = None
        self._expect = None
        self._remember(x)
        self._track_floor(x)

    def conceal(self, next_frame: npt.ArrayLike | None = None) -> Frame:
        # conceal_many([(self, next_frame)])[0], entering where it goes for
        # one request (a call per loss of the CLI's stream counts).
        nxt = _frame_in(next_frame) if next_frame is not None and self.tuning.lookahead else None
        self._measure()
        return self._conceal_alone(nxt)

    def _remember(self, x: npt.NDArray[np.int16] | npt.NDArray[np.float64]) -> None:
        """Keep `x` (not copied: the caller hands over an array nobody changes)."""
        del self._recent[0]
        self._recent.append(x)

    def _history_into(self, out: npt.NDArray[np.float64]) -> None:
        """Write the last HISTORY samples played into `out`, as float64."""
        np.concatenate(self._recent, out=out)

    def _track_floor(self, x: npt.NDArray[np.float64]) -> None:
        self._measure()
        self._set_floor(math.sqrt(float(x @ x) / FRAME))

    def _measure(self) -> None:
        """Take the levels of the frames not measured yet into `_floor`, in order."""
        if self._unmeasured:
            Concealer._measure_all([self])

    def _fold_levels(self, energies: list[float]) -> None:
        """Take the energies of the unmeasured frames, in order, into `_floor`."""
        self._unmeasured.clear()
        floor = self._floor
        for energy in energies:
            rms = math.sqrt(energy / FRAME)
            floor = rms if rms < floor else min(rms, floor * 1.03 + 0.1)  # as _set_floor
        self._floor = floor

    def _set_floor(self, rms: float) -> None:
        # Minimum statistics: follow a drop at once, creep up 3% a frame.
        self._floor = rms if rms < self._floor else min(rms, self._floor * 1.03 + 0.1)

    def _fade(self, lost: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """The extension's gain over the frame after `lost` lost ones, and the noise's."""
        fade = self._fades.get(lost)
        if fade is None:
            fade = _fade(self.tuning, lost)
            if lost < 16:  # beyond, the extension has long faded: not worth keeping
                self._fades[lost] = fade
        return fade

    def _noise_into(self, out: npt.NDArray[np.float64]) -> float:
        """Fill `out` with the comfort noise's white noise; return its scale (0: none)."""
        if not self.tuning.comfort_noise or self._floor <= 0:
            out[:] = 0.0
            return 0.0
        self._rng.standard_normal(out=out)
        return self._floor

    def _merge(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """`_merge_many` for this stream alone: the same arithmetic, fewer numpy calls."""
        assert self._ext is not None
        noise = np.empty(FRAME)
        scale = self._noise_into(noise)
        width = self.tuning.merge_width
        if width <= 0:
            return x
        g, level = self._fade(self._lost)
        y = _take_many([self._ext], width)[0] * g[:width] + level[:width] * (noise[:width] * scale)
        w, w_out = _crossfade_weights(width, 0, width)
        x[:width] = w_out * y + w * x[:width]
        return x

    @staticmethod
    def _merge_many(
        streams: Sequence[Concealer], x: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        """Each stream's extension cross-faded into its row of `x` (k, FRAME), in place.

        The cross-fade is over the first `merge_width` samples; past them the
        row is the audio as it came. So only that span of each extension is
        synthesised (24 samples, not 160: a merge cost 107 µs, most of it
        synthesis nobody heard), for all streams in one `_take_many`. The
        noise draws a whole frame, so that the stream's random sequence (and
        every later concealment) is what it would be had the whole frame been
        made.
        """
        k = len(streams)
        noise = np.empty((k, FRAME))
        scale = np.array([[c._noise_into(row)] for c, row in zip(streams, noise, strict=True)])
        by_width: dict[int, list[int]] = {}
        for r, c in enumerate(streams):
            by_width.setdefault(c.tuning.merge_width, []).append(r)
        for width, rows in by_width.items():
            if width <= 0:
                continue
            exts = []
            for r in rows:
                ext = streams[r]._ext
                assert ext is not None
                exts.append(ext)
            taken = _take_many(exts, width)
            fades = [streams[r]._fade(streams[r]._lost) for r in rows]
            gains = np.array([g[:width] for g, _ in fades])
            levels = np.array([lv[:width] for _, lv in fades])
            y = taken * gains + levels * (noise[rows, :width] * scale[rows])
            w, w_out = _crossfade_weights(width, 0, width)
            x[rows, :width] = w_out * y + w * x[rows, :width]
        return x

    @staticmethod
    def _measure_all(streams: Sequence[Concealer]) -> None:
        """`_measure` for several streams, their frames' energies in one numpy call."""
        pending = [c for c in streams if c._unmeasured]
        if not pending:
            return
        wide = np.array([f for c in pending for f in c._unmeasured], dtype=np.int64)
        # int64 squares sum exactly, as float64 does for int16 samples (every
        # partial sum is an integer below 2**53): the same levels.
        energies = np.einsum("ij,ij->i", wide, wide).tolist()
        at = 0
        for c in pending:
            n = len(c._unmeasured)
            c._fold_levels(energies[at : at + n])
            at += n
    @staticmethod
    def conceal_batch(requests: Sequence[tuple[Concealer, npt.ArrayLike | None]]) -> list[Frame]:
        """`conceal_many` for our concealers, all distinct: the batched steps."""
        streams = [c for c, _ in requests]
        nexts = [
            _frame_in(nxt) if nxt is not None and c.tuning.lookahead else None for c, nxt in requests
        ]
        k = len(streams)
        if k == 0:
            return []
        # Forward extensions: a new one where a loss starts, or where the frame
        # played last was interpolated towards a next frame that then did not
        # come (extend what was played, not the old extension).
        Concealer._measure_all(streams)
        if k == 1:
            return [streams[0]._conceal_alone(nexts[0])]
        fresh: dict[int, list[int]] = {}
        for r, c in enumerate(streams):
            if c._ext is None or c._expect is not None:
                fresh.setdefault(id(c.tuning), []).append(r)
        # Backward extensions of the next frames, reversed.
        ahead: dict[int, list[int]] = {}
        for r, nxt in enumerate(nexts):
            if nxt is not None:
                ahead.setdefault(id(streams[r].tuning), []).append(r)
        fresh = _by_tuning(streams, fresh)
        ahead = _by_tuning(streams, ahead)
        groups = []
        for rows in fresh.values():
            hist = np.empty((len(rows), HISTORY))
            for i, r in enumerate(rows):
                streams[r]._history_into(hist[i])
            groups.append((hist, streams[rows[0]].tuning))
        for rows in ahead.values():
            ahead_frames = [f for f in (nexts[r] for r in rows) if f is not None]
            rev = (ahead_frames[0][None] if len(rows) == 1 else np.array(ahead_frames))[:, ::-1].copy()
            groups.append((rev, streams[rows[0]].tuning))
        made = _extend_many(groups)
        for rows, exts_made in zip(fresh.values(), made, strict=False):
            for r, ext in zip(rows, exts_made, strict=True):
                streams[r]._ext = ext
        backward: list[_Extension] = []
        back_rows: list[int] = []
        for rows, exts_made in zip(ahead.values(), made[len(fresh) :], strict=True):
            backward += exts_made
            back_rows += rows
        exts: list[_Extension] = []
        for c in streams:
            assert c._ext is not None
            exts.append(c._ext)
        taken = _take_many(exts + backward, FRAME)
        fades = [c._fade(c._lost) for c in streams]
        noise = np.empty((k, FRAME))
        scale = np.array([[c._noise_into(row)] for c, row in zip(streams, noise, strict=True)])
        gains = np.array([g for g, _ in fades])
        levels = np.array([lv for _, lv in fades])
        y = taken[:k] * gains + levels * (noise * scale)
        if back_rows:
            bwd = taken[k:, ::-1]
            w, w_out = _crossfade_weights(FRAME, 0, FRAME)
            y[back_rows] = w_out * y[back_rows] + w * bwd
        out = _to_int16(y)
        for r, c in enumerate(streams):
            c._expect = nexts[r]
            c._lost += 1
            c._remember(y[r])
        return list(out)

    @staticmethod
    def good_batch(frames: Sequence[tuple[Concealer, npt.ArrayLike]], *, owned: bool = False) -> list[Frame]:
        """`good_many` for our concealers, all distinct: the merges batched."""
        out: list[Frame | None] = [None] * len(frames)
        merging: list[int] = []
        for i, (c, frame) in enumerate(frames):
            if c._ext is None:
                out[i] = c.good(frame, owned=owned)
            else:
                merging.append(i)
        if not merging:
            return out  # type: ignore[return-value]  # every row was filled
        streams: list[Concealer] = []
        rows: list[npt.NDArray[np.float64]] = []
        merge: list[int] = []  # rows of `rows` that are merged (not the frame interpolated to)
        for i in merging:
            c, frame = frames[i]
            x = _frame_in(frame)
            if c._expect is None or not np.array_equal(c._expect, x):
                merge.append(len(rows))
            streams.append(c)
            rows.append(x)
        x = np.array(rows)
        if merge:
            x[merge] = Concealer._merge_many([streams[r] for r in merge], x[merge])
        played = _to_int16(x)
        for r, (i, c) in enumerate(zip(merging, streams, strict=True)):
            c._returned(x[r])
            out[i] = played[r]
        return out  # type: ignore[return-value]

    def _conceal_alone(self, nxt: npt.NDArray[np.float64] | None) -> Frame:
        """`conceal_batch` for this stream alone (the CLI, a quiet tick): the same steps and
        arithmetic on its row alone, without the grouping."""
        groups = []
        fresh = self._ext is None or self._expect is not None
        if fresh:
            hist = np.empty((1, HISTORY))
            self._history_into(hist[0])
            groups.append((hist, self.tuning))
        if nxt is not None:
            groups.append((nxt[None, ::-1].copy(), self.tuning))
        made = _extend_many(groups) if groups else []
        ext = made[0][0] if fresh else self._ext
        assert ext is not None
        self._ext = ext
        taken = _take_many([ext] if nxt is None else [ext, made[-1][0]], FRAME)
        g, level = self._fade(self._lost)
        noise = np.empty(FRAME)
        y = taken[0] * g + level * (noise * self._noise_into(noise))
        if nxt is not None:
            w, w_out = _crossfade_weights(FRAME, 0, FRAME)
            y = w_out * y + w * taken[1, ::-1]
        self._expect = nxt
        self._lost += 1
        self._remember(y)
        return _to_int16(y)


@functools.lru_cache(maxsize=32)
def _fade(tuning: Tuning, lost: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The extension's gain over the frame after `lost` lost ones, and the comfort noise's level.

    They depend on the tuning only, and a loss is short: computed once per
    process for all streams, not per loss nor per stream.
    """
    start = tuning.fade_start * RATE
    t = lost * FRAME + np.arange(FRAME)
    g = np.exp(-(t - start).clip(min=0.0) / (tuning.fade_tau * RATE))
    level = np.sqrt((1 - g * g).clip(min=0.0))
    g.setflags(write=False)
    level.setflags(write=False)
    return g, level


def _by_tuning(streams: Sequence[Concealer], rows_by_id: dict[int, list[int]]) -> dict[int, list[int]]:
    """Rows grouped by tuning object, merged where the objects are equal.

    By object first: hashing a dataclass per stream costs more than the
    rest of the loop, and streams usually share one (the default).
    """
    if len(rows_by_id) <= 1:
        return rows_by_id
    merged: dict[Tuning, list[int]] = {}
    for rows in rows_by_id.values():
        merged.setdefault(streams[rows[0]].tuning, []).extend(rows)
    return {id(streams[rows[0]].tuning): rows for rows in merged.values()}


def conceal_many(requests: Sequence[tuple[PacketConcealer, npt.ArrayLike | None]]) -> list[Frame]:
    """`[c.conceal(next_frame) for c, next_frame in requests]`, with the work batched.

    The relay's media tick conceals all its streams' lost frames in one
    call: the pitch searches, LPC analyses and syntheses of every stream run
    as one set of numpy calls over arrays with a row per stream. A stream's
    output is the same, bit for bit, whichever other streams share the call.
    Each concealer at most once per call (ValueError otherwise, before any
    state changes, as for a next frame of the wrong shape). Concealers other
    than `Concealer` (Appendix I, the yardsticks) conceal one by one.
    """
    if len(requests) == 1:  # a quiet tick: straight to the one-request step
        c, nxt = requests[0]
        return [c.conceal(nxt)]
    if len({id(c) for c, _ in requests}) != len(requests):
        raise ValueError("conceal_many: a concealer appears more than once")
    ours = [(c, nxt) for c, nxt in requests if isinstance(c, Concealer)]
    if len(ours) == len(requests):
        return Concealer.conceal_batch(ours)
    batched = iter(Concealer.conceal_batch(ours))
    return [
        next(batched) if isinstance(c, Concealer) else c.conceal(nxt) for c, nxt in requests
    ]


def good_many(frames: Sequence[tuple[PacketConcealer, npt.ArrayLike]], *, owned: bool = False) -> list[Frame]:
    """`[c.good(frame, owned=owned) for c, frame in frames]`, with the work batched.

    The first frame received after a loss is cross-faded in from the
    concealment's continuation; the relay's tick merges every stream's at
    once (one synthesis over all of them: a merge alone costs about 100 µs,
    nearly all numpy's fixed cost per call). A stream's output is the same,
    bit for bit, whichever other streams share the call. Each concealer at
    most once per call (ValueError otherwise, before any state changes).
    """
    if len(frames) == 1:
        c, frame = frames[0]
        return [c.good(frame, owned=owned)]
    if len({id(c) for c, _ in frames}) != len(frames):
        raise ValueError("good_many: a concealer appears more than once")
    ours = [(c, f) for c, f in frames if isinstance(c, Concealer)]
    if len(ours) == len(frames):
        return Concealer.good_batch(ours, owned=owned)
    batched = iter(Concealer.good_batch(ours, owned=owned))
    return [next(batched) if isinstance(c, Concealer) else c.good(f, owned=owned) for c, f in frames]


def _crossfade(
    a: npt.NDArray[np.float64], b: npt.NDArray[np.float64], start: int, width: int
) -> npt.NDArray[np.float64]:
    """`a` until `start`, then a raised-cosine cross-fade over `width` samples, then `b`."""
    w, w_out = _crossfade_weights(len(a), start, width)
    return w_out * a + w * b


@functools.lru_cache(maxsize=16)
def _crossfade_weights(
    n: int, start: int, width: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The fade-in weights of `_crossfade` and their complement (1 - w), computed once."""
    w = np.ones(n)
    w[:start] = 0.0
    w[start : start + width] = 0.5 - 0.5 * np.cos(np.pi * (np.arange(width) + 0.5) / width)
    w_out = 1 - w
    w.setflags(write=False)
    w_out.setflags(write=False)
    return w, w_out
