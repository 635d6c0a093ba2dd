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


@functools.lru_cache(maxsize=8)
def _hanning(n: int) -> npt.NDArray[np.float64]:
    w = np.hanning(n)
    w.setflags(write=False)
    return w


@functools.lru_cache(maxsize=4)
def _lpc_windows(order: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The lag window and the bandwidth expansion of the LPC analysis, computed once."""
    # A 60 Hz Gaussian lag window keeps the filter tame; bandwidth expansion
    # (gamma 0.98) against ringing formants in the extension.
    lag = np.exp(-0.5 * (2 * np.pi * 60.0 / RATE * np.arange(order + 1)) ** 2)
    expand = np.asarray(0.98 ** np.arange(order + 1), dtype=np.float64)
    lag.setflags(write=False)
    expand.setflags(write=False)
    return lag, expand


# The signal processing below works on a batch: a (k, n) array holds k
# streams' signals, one a row, so that the relay's tick conceals all its
# streams' lost frames with one set of numpy calls instead of one set per
# stream (numpy costs about a microsecond a call, and a frame's arrays are
# tiny). A row's result must not depend on the other rows or on k: every
# step is element-wise, a reduction whose order is fixed row by row (numpy's
# plain matmul loop on views of overlapping windows, which adds in index
# order; einsum over each row's contiguous runs, reduced the same way
# whatever k is; running sums along a row), an FFT, which transforms each
# row on its own, or a call per row (np.convolve). tests/unit/rtpmedia/
# test_plc.py holds it to that, bit for bit.


#: Up to this many rows, the per-row decisions of a batch are taken with
#: scalar steps on each row (the same arithmetic), which costs less than the
#: vector form's fixed number of numpy calls.
_FEW_ROWS = 4


def _windows(x: npt.NDArray[np.float64], start: int, count: int, span: int) -> npt.NDArray[np.float64]:
    """View (k, count, span) of C-contiguous `x` (k, n): [r, i] = x[r, start - i : start - i + span].

    Made directly (sliding_window_view's checks cost as much as the products
    at k = 1). Overlapping rows are not BLAS-able: a matmul on such a view
    runs numpy's own loop, adding each product in index order, and einsum
    reduces each window as a contiguous run.
    """
    k, n = x.shape
    item = x.itemsize
    return np.ndarray((k, count, span), np.float64, x, start * item, (n * item, -item, item))


def _pitch_many(
    x: npt.NDArray[np.float64], lo: int, hi: int, span: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Pitch lag (fractional) and voicing (normalised correlation) at the end of each row of `x`."""
    k, n = x.shape
    hi = min(hi, n - span)
    if hi <= lo:
        return np.full(k, float(lo)), np.zeros(k)
    count = hi - lo + 1
    lags = np.arange(lo, hi + 1)
    target = x[:, n - span :]
    win = _windows(x, n - span - lo, count, span)  # win[r, i]: `lags[i]` before the target
    cross = np.einsum("rij,rj->ri", win, target)
    # The windows' energies from running sums of squares (a fraction of the
    # products' cost; equal sums where the signal is digitally silent).
    run = np.zeros((k, n + 1))
    np.add.accumulate(x * x, axis=1, out=run[:, 1:])
    ends = n - lo  # window lags[i] spans x[ends - i - span : ends - i]
    energy = (run[:, ends - count + 1 : ends + 1] - run[:, ends - count + 1 - span : ends + 1 - span])[
        :, ::-1
    ]
    et = run[:, n] - run[:, n - span]
    corr = cross / np.sqrt(np.maximum(energy * et[:, None], 1e-9))
    if k <= _FEW_ROWS:
        lag, voicing = np.array([_pick_lag(row, lags) for row in corr]).T
        return lag, voicing
    rows = np.arange(k)
    best = corr.argmax(axis=1)
    top = corr[rows, best]
    # Prefer a submultiple that is nearly as good (octave errors buzz badly):
    # the best of the three lags around lag/3, else around lag/2.
    chosen = best
    pending = np.ones(k, dtype=bool)
    offsets = np.arange(3)
    for div in (3, 2):
        j = np.rint(lags[best] / div).astype(np.int64) - lo
        first = np.maximum(j - 1, 0)
        cand = first[:, None] + offsets  # corr[max(0, j - 1) : j + 2]
        inside = (cand <= j[:, None] + 1) & (cand < count)
        vals = np.where(inside, corr[rows[:, None], np.minimum(cand, count - 1)], -np.inf)
        jj = first + vals.argmax(axis=1)
        ok = pending & (j >= 0) & (j < count)
        ok &= corr[rows, np.minimum(jj, count - 1)] > 0.85 * top
        chosen = np.where(ok, jj, chosen)
        pending &= ~ok
    i = chosen
    c1 = corr[rows, i]
    c0 = corr[rows, np.maximum(i - 1, 0)]
    c2 = corr[rows, np.minimum(i + 1, count - 1)]
    den = c0 - 2 * c1 + c2
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.minimum(np.maximum(0.5 * (c0 - c2) / den, -0.5), 0.5)
    frac = np.where((i > 0) & (i < count - 1) & (den < 0), frac, 0.0)
    return lags[i] + frac, np.maximum(c1, 0.0)


def _pick_lag(corr: npt.NDArray[np.float64], lags: npt.NDArray[np.int64]) -> tuple[float, float]:
    """`_pitch_many`'s choice for one row of correlations, with scalar steps (cheaper for few rows)."""
    i = int(np.argmax(corr))
    # Prefer a submultiple that is nearly as good (octave errors buzz badly).
    for div in (3, 2):
        j = int(round(lags[i] / div)) - int(lags[0])
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


def _levinson_rows(r: npt.NDArray[np.float64], order: int) -> npt.NDArray[np.float64]:
    """Levinson-Durbin for a few rows of autocorrelations, on Python floats.

    The same operations in the same order as `_levinson_many` (IEEE
    arithmetic rounds a Python float and a float64 element alike), without
    its hundred numpy calls: the cheaper way for one or two rows.
    """
    out = np.zeros((len(r), order + 1))
    for row, rl in enumerate(r.tolist()):
        coef = [1.0] + [0.0] * order
        err = rl[0]
        if err <= 0:  # silence: `_lpc_of` answers 1 for it
            out[row, 0] = 1.0
            continue
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
        out[row] = coef
    return out


def _levinson_many(r: npt.NDArray[np.float64], order: int) -> npt.NDArray[np.float64]:
    """Levinson-Durbin over rows of autocorrelations: a loop over the orders, vector ops over rows.

    A row whose prediction error reaches zero is done again by
    `_levinson_rows`, which stops there as the scalar recursion does (rare:
    full-scale square waves and the like).
    """
    k = len(r)
    if k <= _FEW_ROWS:
        return _levinson_rows(r, order)
    coef = np.zeros((k, order + 1))
    coef[:, 0] = 1.0
    err = r[:, 0].copy()
    broke = np.zeros(k, dtype=bool)
    with np.errstate(all="ignore"):
        for i in range(1, order + 1):
            refl = r[:, i] + 0.0  # 0.0 + the sum, as the scalar loop starts
            if i > 1:
                # sum over j of coef[j] * r[i - j], added in order of j from 0:
                # r's reversed slice is not BLAS-able, so each row's product
                # runs numpy's plain dot loop, as the Python float loop adds.
                refl += (coef[:, None, 1:i] @ r[:, i - 1 : 0 : -1, None])[:, 0, 0]
            refl = -refl / err
            step = refl[:, None] * coef[:, i - 1 : 0 : -1]
            coef[:, 1:i] += step
            coef[:, i] = refl
            err = err * (1.0 - refl * refl)
            broke |= err <= 0
    if broke.any():
        coef[broke] = _levinson_rows(r[broke], order)
    return coef


def _autocorrelation_many(
    x: npt.NDArray[np.float64], order: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Each row's windowed autocorrelation r[0..order], lag-windowed for `_levinson_many`,
    and which rows are silent (their LPC is 1)."""
    k, n = x.shape
    # r[lag] = sum over t of w[t] * w[t + lag]: one einsum over a view of
    # the windowed rows followed by zeros (which add nothing).
    w = np.zeros((k, n + order))
    np.multiply(x, _hanning(n), out=w[:, :n])
    item = w.itemsize
    shifted = np.ndarray((k, order + 1, n), np.float64, w, 0, ((n + order) * item, item, item))
    r = np.einsum("rlt,rt->rl", shifted, w[:, :n])
    silent = r[:, 0] <= 1e-9
    # The lag window and -40 dB white noise keep the filter tame.
    r *= _lag_window_and_noise(order)
    return r, silent


@functools.lru_cache(maxsize=4)
def _lag_window_and_noise(order: int) -> npt.NDArray[np.float64]:
    """The lag window with r[0] raised by -40 dB of white noise (its lag-0 weight is 1)."""
    lag, _ = _lpc_windows(order)
    w = lag.copy()
    w[0] = 1.0001
    w.setflags(write=False)
    return w


def _lpc_of(coef: npt.NDArray[np.float64], silent: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    """Levinson-Durbin's coefficients, bandwidth-expanded; 1 for silent rows."""
    _, expand = _lpc_windows(coef.shape[1] - 1)
    a = coef * expand
    if silent.any():
        a[silent] = 0.0
        a[silent, 0] = 1.0
    return a


def _residual_many(
    x: npt.NDArray[np.float64], a: npt.NDArray[np.float64], last: int
) -> npt.NDArray[np.float64]:
    """The last `last` samples (at most n - order) of A(z) applied to each row of C-contiguous `x`."""
    k, n = x.shape
    p = a.shape[1] - 1
    last = min(last, n - p)
    # res[t] = sum over j of a[p - j] * x[t + j]: taps added from the oldest
    # sample, as np.convolve's dot products do, through a view of
    # overlapping windows (numpy's plain matmul loop, in index order).
    item = x.itemsize
    win = np.ndarray((k, last, p + 1), np.float64, x, (n - p - last) * item, (n * item, item, item))
    return (win @ a[:, ::-1, None])[:, :, 0]


def _impulse_responses(a: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Per row, the first FRAME samples of 1/A(z)'s impulse response.

    Through the FFT rather than a per-sample loop: A(z) is minimum phase and
    bandwidth-expanded, so the response has decayed long before the
    1024-point transform wraps it around.
    """
    size = 1 << max(10, (4 * FRAME - 1).bit_length())
    return np.fft.irfft(1.0 / np.fft.rfft(a, size, axis=1), size, axis=1)[:, :FRAME]


def _drive_many(
    exc: npt.NDArray[np.float64], a: npt.NDArray[np.float64], memory: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """The input that makes 1/A(z), started from rest, continue from past outputs `memory`.

    The filter's memory acts as an extra input over its first order
    samples, so the whole synthesis is one convolution of this with the
    impulse response.
    """
    k, n = exc.shape
    p = a.shape[1] - 1
    q = min(p, n)
    # The memory's share of the first q outputs: share[m] = sum over j of
    # a[m + 1 + j] * y[-1 - j], as a Hankel view of a zero-padded a.
    padded = np.zeros((k, 2 * p))
    padded[:, :p] = a[:, 1:]
    item = padded.itemsize
    hankel = np.ndarray((k, p, p), np.float64, padded, 0, (2 * p * item, item, item))
    past = memory[:, ::-1][:, :, None]  # y[-1], y[-2], ...
    share = (hankel @ past)[:, :q, 0]
    drive = exc.copy()
    drive[:, :q] -= share
    return drive


def _read_many(
    flat: npt.NDArray[np.float64], start: npt.NDArray[np.int64] | int, pos: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Values at fractional positions `pos` (k, n) of k buffers laid end to end in `flat`
    (row r's sample 0 at start[r, 0], or at `start` for one buffer); cubic Hermite
    interpolation.

    Each buffer is stored padded (`_PAD_BEFORE` copies of its first sample
    before it, `_PAD_AFTER` of its last after it), so that the four
    neighbours of any position within it are read without clipping indices.
    """
    i = np.floor(pos).astype(np.int64)
    t = pos - i
    i += start
    pm1, p0, p1, p2 = flat[i - 1], flat[i], flat[i + 1], flat[i + 2]
    c1 = 0.5 * (p1 - pm1)
    c2 = pm1 - 2.5 * p0 + 2 * p1 - 0.5 * p2
    c3 = 0.5 * (p2 - pm1) + 1.5 * (p0 - p1)
    return ((c3 * t + c2) * t + c1) * t + p0


_PAD_BEFORE = 1
_PAD_AFTER = 3  # position len(buffer) itself, should rounding reach it, reads the last sample


def _padded(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Rows of `x` with their edge samples repeated, as `_read_many` reads them."""
    first, last = x[:, :1], x[:, -1:]
    return np.concatenate([first] * _PAD_BEFORE + [x] + [last] * _PAD_AFTER, axis=1)


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
        # pitch period at most. Padded for `_read_many`; `offset` is where
        # sample 0 of the whole excitation (`length` samples) would be in it.
        self.padded = padded
        self.length = length
        self.offset = len(padded) - _PAD_AFTER - length
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
        lag, voicing = _pitch_many(x, PITCH_MIN, PITCH_MAX, span)
        if not tuning.fractional_pitch:
            lag = np.round(lag)
        picked.append((lag.tolist(), voicing.tolist()))
        if tuning.lpc:
            r, silent = _autocorrelation_many(x[:, -min(n, 240) :], LPC_ORDER)
            rs.append(r)
            silents.append(silent)
    if rs:
        one = len(rs) == 1
        coefs = _levinson_many(rs[0] if one else np.concatenate(rs), LPC_ORDER)
        a_all = _lpc_of(coefs, silents[0] if one else np.concatenate(silents))
        h_all = _impulse_responses(a_all)
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
            res = _padded(_residual_many(x, a, _EXCITATION_KEPT))
        else:
            a = np.ones((k, 1))
            hs = [None] * k
            length = n
            res = _padded(x[:, -_EXCITATION_KEPT:])
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
        exc = _read_many(e.padded, e.offset, pos)
    else:
        lags = np.array([e.lag for e in exts])
        length = np.array([e.length for e in exts])
        sizes = np.array([len(e.padded) for e in exts])
        start = np.cumsum(sizes) - sizes + np.array([e.offset for e in exts])
        t = np.array([float(e.pos) for e in exts])[:, None] + t
        pos = (length - lags)[:, None] + t % lags[:, None]
        exc = _read_many(np.concatenate([e.padded for e in exts]), start[:, None], pos)
    for e in exts:
        e.pos += n
    lpc = [r for r, e in enumerate(exts) if e.lpc]
    if not lpc:
        return exc
    if len(lpc) < len(exts):
        exc[lpc] = _synthesise_many([exts[r] for r in lpc], exc[lpc])
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
        drive = _drive_many(exc, e.a[None], e.memory[None])
    else:
        drive = _drive_many(exc, np.array([e.a for e in exts]), np.array([e.memory for e in exts]))
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
        self._lost = 0
        self._ext = None
        self._expect = None
        self._remember(x)
        self._track_floor(x)
        return _to_int16(x)

    def conceal(self, next_frame: npt.ArrayLike | None = None) -> Frame:
        # conceal_many([(self, next_frame)])[0], entering where it goes for
        # one request (a call per loss of the CLI's stream counts).
        nxt = _frame_in(next_frame) if next_frame is not None and self.tuning.lookahead else None
        self._measure()
        return _conceal_one(self, nxt)

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
            _measure_many([self])

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
        assert self._ext is not None
        g, level = self._fade(self._lost)
        noise = np.empty(FRAME)
        scale = self._noise_into(noise)
        y = self._ext.take(FRAME) * g + level * (noise * scale)
        return _crossfade(y, x, 0, self.tuning.merge_width)


def _measure_many(streams: Sequence[Concealer]) -> None:
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
        return _conceal_ours(ours)
    batched = iter(_conceal_ours(ours))
    return [
        next(batched) if isinstance(c, Concealer) else c.conceal(nxt) for c, nxt in requests
    ]


def _conceal_ours(requests: Sequence[tuple[Concealer, npt.ArrayLike | None]]) -> list[Frame]:
    """`conceal_many` for our concealers, all distinct."""
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
    _measure_many(streams)
    if k == 1:
        return [_conceal_one(streams[0], nexts[0])]
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


def _conceal_one(c: Concealer, nxt: npt.NDArray[np.float64] | None) -> Frame:
    """`_conceal_ours` for one stream (the CLI, a quiet tick): the same steps and
    arithmetic on its row alone, without the grouping."""
    groups = []
    fresh = c._ext is None or c._expect is not None
    if fresh:
        hist = np.empty((1, HISTORY))
        c._history_into(hist[0])
        groups.append((hist, c.tuning))
    if nxt is not None:
        groups.append((nxt[None, ::-1].copy(), c.tuning))
    made = _extend_many(groups) if groups else []
    ext = made[0][0] if fresh else c._ext
    assert ext is not None
    c._ext = ext
    taken = _take_many([ext] if nxt is None else [ext, made[-1][0]], FRAME)
    g, level = c._fade(c._lost)
    noise = np.empty(FRAME)
    y = taken[0] * g + level * (noise * c._noise_into(noise))
    if nxt is not None:
        w, w_out = _crossfade_weights(FRAME, 0, FRAME)
        y = w_out * y + w * taken[1, ::-1]
    c._expect = nxt
    c._lost += 1
    c._remember(y)
    return _to_int16(y)


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
