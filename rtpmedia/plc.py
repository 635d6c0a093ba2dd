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
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

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
    def good(self, frame: npt.ArrayLike) -> Frame:
        """A frame was received: remember it; return the frame to play."""

    @abstractmethod
    def conceal(self, next_frame: npt.ArrayLike | None = None) -> Frame:
        """A frame is missing: return a substitute of `FRAME` samples."""


class Silence(PacketConcealer):
    """Zeros in place of every missing frame."""

    def good(self, frame: npt.ArrayLike) -> Frame:
        return _to_int16(_frame_in(frame))

    def conceal(self, next_frame: npt.ArrayLike | None = None) -> Frame:
        return np.zeros(FRAME, dtype=np.int16)


class Repeat(PacketConcealer):
    """Packet repetition: the last received frame again (silence before any)."""

    def __init__(self) -> None:
        self._last = np.zeros(FRAME, dtype=np.int16)

    def good(self, frame: npt.ArrayLike) -> Frame:
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
    def good(self, frame: npt.ArrayLike) -> Frame:
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


@functools.lru_cache(maxsize=8)
def _hanning(n: int) -> npt.NDArray[np.float64]:
    w = np.hanning(n)
    w.setflags(write=False)
    return w


@functools.lru_cache(maxsize=4)
def _lpc_windows(order: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The lag window and the bandwidth expansion of `_lpc`, computed once."""
    # A 60 Hz Gaussian lag window keeps the filter tame; bandwidth expansion
    # (gamma 0.98) against ringing formants in the extension.
    lag = np.exp(-0.5 * (2 * np.pi * 60.0 / RATE * np.arange(order + 1)) ** 2)
    expand = np.asarray(0.98 ** np.arange(order + 1), dtype=np.float64)
    lag.setflags(write=False)
    expand.setflags(write=False)
    return lag, expand


def _lpc(x: npt.NDArray[np.float64], order: int) -> npt.NDArray[np.float64]:
    """LPC coefficients a[0..order] (a[0] = 1) by autocorrelation and Levinson-Durbin."""
    w = x * _hanning(len(x))
    r = np.array([w[: len(w) - k] @ w[k:] for k in range(order + 1)])
    if r[0] <= 1e-9:
        a = np.zeros(order + 1)
        a[0] = 1.0
        return a
    # The lag window and -40 dB white noise keep the filter tame.
    lag, expand = _lpc_windows(order)
    r = r * lag
    r[0] *= 1.0001
    # Levinson-Durbin on Python floats: ten steps of a few products each,
    # where numpy pays a microsecond a call. The dot products add in order,
    # as BLAS does for vectors this short (the same coefficients to the bit).
    rl: list[float] = r.tolist()
    coef = [1.0] + [0.0] * order
    err = rl[0]
    for i in range(1, order + 1):
        acc = 0.0
        for j in range(1, i):
            acc += coef[j] * rl[i - j]
        k = -(rl[i] + acc) / err
        coef[1:i] = [coef[j] + k * coef[i - j] for j in range(1, i)]
        coef[i] = k
        err *= 1.0 - k * k
        if err <= 0:
            break
    return np.array(coef) * expand


def _residual(x: npt.NDArray[np.float64], a: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """A(z) applied to x; the first len(a)-1 outputs use x's own earlier samples."""
    return np.convolve(x, a)[len(a) - 1 : len(x)]


def _impulse_response(a: npt.NDArray[np.float64], n: int) -> npt.NDArray[np.float64]:
    """The first `n` samples of the impulse response of 1/A(z).

    Through the FFT rather than a per-sample loop: A(z) is minimum phase and
    bandwidth-expanded, so the response has decayed long before the
    transform's length wraps it around.
    """
    size = 1 << max(10, (4 * n - 1).bit_length())
    return np.fft.irfft(1.0 / np.fft.rfft(a, size), size)[:n]


def _synthesise(
    exc: npt.NDArray[np.float64],
    a: npt.NDArray[np.float64],
    h: npt.NDArray[np.float64],
    memory: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """1/A(z) (impulse response `h`) over `exc`, continuing from past outputs `memory`.

    The filter's memory acts as an extra input over its first len(a)-1
    samples, so the whole is one convolution.
    """
    p = len(a) - 1
    n = len(exc)
    drive = exc.copy()
    # The memory's share of the first p outputs: ten short dot products, on
    # Python floats in the order BLAS adds vectors this short.
    av: list[float] = a.tolist()
    past: list[float] = memory[-p:][::-1].tolist()  # y[-1], y[-2], ...
    q = min(p, n)
    share = [0.0] * q
    for m in range(q):
        acc = 0.0
        for j in range(p - m):
            acc += av[m + 1 + j] * past[j]
        share[m] = acc
    drive[:q] -= share
    return np.convolve(drive, h[:n])[:n]


def _pitch(x: npt.NDArray[np.float64], lo: int, hi: int, span: int) -> tuple[float, float]:
    """Pitch lag (fractional) and voicing (normalised correlation) at the end of `x`."""
    hi = min(hi, len(x) - span)
    if hi <= lo:
        return float(lo), 0.0
    target = x[-span:]
    lags = np.arange(lo, hi + 1)
    # The sliding windows as a view made directly (sliding_window_view's
    # checks cost as much as the products); win[i] is the segment `lags[i]`
    # samples before the target.
    seg = np.ascontiguousarray(x[len(x) - span - hi : len(x) - lo], dtype=np.float64)
    step = seg.itemsize
    win = np.ndarray((len(seg) - span + 1, span), np.float64, seg, 0, (step, step))[::-1]
    cross = win @ target
    energy = np.einsum("ij,ij->i", win, win)
    et = float(target @ target)
    corr = cross / np.sqrt(np.maximum(energy * et, 1e-9))
    i = int(np.argmax(corr))
    # Prefer a submultiple that is nearly as good (octave errors buzz badly).
    for div in (3, 2):
        j = int(round(lags[i] / div)) - lo
        if 0 <= j < len(lags):
            jj = max(0, j - 1) + int(np.argmax(corr[max(0, j - 1) : j + 2]))
            if corr[jj] > 0.85 * corr[i]:
                i = jj
                break
    frac = 0.0
    if 0 < i < len(corr) - 1:
        c0, c1, c2 = corr[i - 1], corr[i], corr[i + 1]
        den = c0 - 2 * c1 + c2
        if den < 0:
            frac = min(max(float(0.5 * (c0 - c2) / den), -0.5), 0.5)
    return float(lags[i]) + frac, float(max(corr[i], 0.0))


def _read(buf: npt.NDArray[np.float64], pos: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Values of `buf` at fractional positions (cubic Hermite interpolation)."""
    i = np.floor(pos).astype(np.int64)
    t = pos - i
    n = len(buf)
    # np.minimum/maximum: ndarray.clip's Python wrapper costs more than the gather.
    pm1, p0, p1, p2 = (buf[np.minimum(np.maximum(i + k, 0), n - 1)] for k in (-1, 0, 1, 2))
    c1 = 0.5 * (p1 - pm1)
    c2 = pm1 - 2.5 * p0 + 2 * p1 - 0.5 * p2
    c3 = 0.5 * (p2 - pm1) + 1.5 * (p0 - p1)
    return ((c3 * t + c2) * t + c1) * t + p0


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


class _Extension:
    """Continues a signal past its end: its LPC excitation repeated at the pitch period.

    The synthesis filter starts from the signal's own last samples, so the
    extension joins it without a step and without added delay.
    """

    def __init__(self, x: npt.NDArray[np.float64], tuning: Tuning) -> None:
        self.lpc = tuning.lpc
        self.memory = x[-LPC_ORDER:].copy()
        # Short input (the next frame, reversed) gets a shorter window so that long lags still fit.
        span = min(160, max(64, len(x) - PITCH_MAX))
        self.lag, self.voicing = _pitch(x, PITCH_MIN, PITCH_MAX, span)
        if not tuning.fractional_pitch:
            self.lag = float(round(self.lag))
        self.a = _lpc(x[-min(len(x), 240) :], LPC_ORDER) if tuning.lpc else np.array([1.0])
        self.res = _residual(x, self.a) if tuning.lpc else x.copy()
        self.h = _impulse_response(self.a, 2 * FRAME)
        self.pos = 0  # samples produced so far

    def take(self, n: int) -> npt.NDArray[np.float64]:
        t = self.pos + np.arange(n, dtype=np.float64)
        self.pos += n
        exc = _read(self.res, len(self.res) - self.lag + t % self.lag)
        if not self.lpc:
            return exc
        y = _synthesise(exc, self.a, self.h, self.memory)
        self.memory = np.concatenate([self.memory, y])[-LPC_ORDER:]
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

    docs/benchmarks.md has what each step buys and what was tried and left out.
    """

    def __init__(self, seed: int = 0, tuning: Tuning | None = None) -> None:
        self.tuning = tuning or Tuning()
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
        # Per count of frames lost so far: the extension's gain over the next
        # frame and the comfort noise's matching level (they depend on the
        # tuning only, and a loss is short: computed once, not per loss).
        self._fades: dict[int, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = {}

    def good(self, frame: npt.ArrayLike) -> Frame:
        a = np.asarray(frame)
        if self._ext is None and a.dtype == np.int16 and a.shape == (FRAME,):
            # The common case, one per frame per stream: no float work. Our
            # own copy goes into the history (the caller may reuse its
            # buffer) and another copy is played.
            own = a.copy()
            self._remember(own)
            self._unmeasured.append(own)
            if len(self._unmeasured) >= _MEASURE_BATCH:
                self._measure()
            return own.copy()
        x = _frame_in(frame)
        if self._ext is None:
            self._remember(x)
            self._track_floor(x)
            return _to_int16(x)
        if self._expect is None or not np.array_equal(self._expect, x):
            x = self._merge(x)
        self._lost = 0
        self._ext = None
        self._expect = None
        self._remember(x)
        self._track_floor(x)
        return _to_int16(x)

    def conceal(self, next_frame: npt.ArrayLike | None = None) -> Frame:
        self._measure()
        if self._ext is None or self._expect is not None:
            # After an interpolated frame, what was played leads into the frame
            # that then did not come: extend that, not the old extension.
            self._ext = _Extension(self._history(), self.tuning)
        g, level = self._fade(self._lost)
        y = self._ext.take(FRAME) * g + self._comfort(level)
        self._expect = None
        if next_frame is not None and self.tuning.lookahead:
            nxt = _frame_in(next_frame)
            bwd = _Extension(nxt[::-1].copy(), self.tuning).take(FRAME)[::-1]
            y = _crossfade(y, bwd, 0, FRAME)
            self._expect = nxt
        self._lost += 1
        self._remember(y)
        return _to_int16(y)

    def _remember(self, x: npt.NDArray[np.int16] | npt.NDArray[np.float64]) -> None:
        """Keep `x` (not copied: the caller hands over an array nobody changes)."""
        del self._recent[0]
        self._recent.append(x)

    def _history(self) -> npt.NDArray[np.float64]:
        """The last HISTORY samples played, as float64."""
        return np.concatenate(self._recent, dtype=np.float64)

    def _track_floor(self, x: npt.NDArray[np.float64]) -> None:
        self._measure()
        self._set_floor(math.sqrt(float(x @ x) / FRAME))

    def _measure(self) -> None:
        """Take the levels of the frames not measured yet into `_floor`, in order."""
        if not self._unmeasured:
            return
        wide = np.array(self._unmeasured, dtype=np.int64)
        self._unmeasured.clear()
        # int64 squares sum exactly, as float64 does for int16 samples (every
        # partial sum is an integer below 2**53): the same levels.
        floor = self._floor
        for energy in np.einsum("ij,ij->i", wide, wide).tolist():
            rms = math.sqrt(energy / FRAME)
            floor = rms if rms < floor else min(rms, floor * 1.03 + 0.1)  # as _set_floor
        self._floor = floor

    def _set_floor(self, rms: float) -> None:
        # Minimum statistics: follow a drop at once, creep up 3% a frame.
        self._floor = rms if rms < self._floor else min(rms, self._floor * 1.03 + 0.1)

    def _gain(self, t: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        start = self.tuning.fade_start * RATE
        return np.exp(-(t - start).clip(min=0.0) / (self.tuning.fade_tau * RATE))

    def _fade(self, lost: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """The extension's gain over the frame after `lost` lost ones, and the noise's."""
        fade = self._fades.get(lost)
        if fade is None:
            g = self._gain(lost * FRAME + np.arange(FRAME))
            fade = (g, np.sqrt((1 - g * g).clip(min=0.0)))
            if lost < 16:  # beyond, the extension has long faded: not worth keeping
                self._fades[lost] = fade
        return fade

    def _comfort(self, level: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Noise at the background level, rising (`level`) as the extension fades."""
        if not self.tuning.comfort_noise or self._floor <= 0:
            return np.zeros(len(level))
        noise = self._rng.standard_normal(len(level)) * self._floor
        return level * noise

    def _merge(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        assert self._ext is not None
        g, level = self._fade(self._lost)
        y = self._ext.take(FRAME) * g + self._comfort(level)
        return _crossfade(y, x, 0, self.tuning.merge_width)


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
