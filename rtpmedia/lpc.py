"""Linear prediction and pitch for many signals at once: the concealer's signal processing (numpy).

A (k, n) array holds k streams' signals, one a row, so that the relay's
tick conceals all its streams' lost frames with one set of numpy calls
instead of one set per stream (numpy costs about a microsecond a call, and
a frame's arrays are tiny). A row's result must not depend on the other
rows or on k: every step is element-wise, a reduction whose order is fixed
row by row (numpy's plain matmul loop on views of overlapping windows,
which adds in index order; einsum over each row's contiguous runs, reduced
the same way whatever k is; running sums along a row), an FFT, which
transforms each row on its own, or a call per row (np.convolve).
tests/unit/rtpmedia/test_plc.py holds it to that, bit for bit.

`rtpmedia.plc.Concealer` uses it; nothing here keeps state.
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt

RATE = 8000
FRAME = 160  # 20 ms


@functools.lru_cache(maxsize=8)
def hanning(n: int) -> npt.NDArray[np.float64]:
    w = np.hanning(n)
    w.setflags(write=False)
    return w


@functools.lru_cache(maxsize=4)
def lpc_windows(order: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The lag window and the bandwidth expansion of the LPC analysis, computed once."""
    # A 60 Hz Gaussian lag window keeps the filter tame; bandwidth expansion
    # (gamma 0.98) against ringing formants in the extension.
    lag = np.exp(-0.5 * (2 * np.pi * 60.0 / RATE * np.arange(order + 1)) ** 2)
    expand = np.asarray(0.98 ** np.arange(order + 1), dtype=np.float64)
    lag.setflags(write=False)
    expand.setflags(write=False)
    return lag, expand


#: Up to this many rows, the per-row decisions of a batch are taken with
#: scalar steps on each row (the same arithmetic), which costs less than the
#: vector form's fixed number of numpy calls.
_FEW_ROWS = 4


def windows(x: npt.NDArray[np.float64], start: int, count: int, span: int) -> npt.NDArray[np.float64]:
    """View (k, count, span) of C-contiguous `x` (k, n): [r, i] = x[r, start - i : start - i + span].

    Made directly (sliding_window_view's checks cost as much as the products
    at k = 1). Overlapping rows are not BLAS-able: a matmul on such a view
    runs numpy's own loop, adding each product in index order, and einsum
    reduces each window as a contiguous run.
    """
    k, n = x.shape
    item = x.itemsize
    return np.ndarray((k, count, span), np.float64, x, start * item, (n * item, -item, item))


def pitch_many(
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
    win = windows(x, n - span - lo, count, span)  # win[r, i]: `lags[i]` before the target
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
        lag, voicing = np.array([pick_lag(row, lags) for row in corr]).T
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


def pick_lag(corr: npt.NDArray[np.float64], lags: npt.NDArray[np.int64]) -> tuple[float, float]:
    """`pitch_many`'s choice for one row of correlations, with scalar steps (cheaper for few rows)."""
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


def levinson_rows(r: npt.NDArray[np.float64], order: int) -> npt.NDArray[np.float64]:
    """Levinson-Durbin for a few rows of autocorrelations, on Python floats.

    The same operations in the same order as `levinson_many` (IEEE
    arithmetic rounds a Python float and a float64 element alike), without
    its hundred numpy calls: the cheaper way for one or two rows.
    """
    out = np.zeros((len(r), order + 1))
    for row, rl in enumerate(r.tolist()):
        coef = [1.0] + [0.0] * order
        err = rl[0]
        if err <= 0:  # silence: `lpc_of` answers 1 for it
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


def levinson_many(r: npt.NDArray[np.float64], order: int) -> npt.NDArray[np.float64]:
    """Levinson-Durbin over rows of autocorrelations: a loop over the orders, vector ops over rows.

    A row whose prediction error reaches zero is done again by
    `levinson_rows`, which stops there as the scalar recursion does (rare:
    full-scale square waves and the like).
    """
    k = len(r)
    if k <= _FEW_ROWS:
        return levinson_rows(r, order)
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
        coef[broke] = levinson_rows(r[broke], order)
    return coef


def autocorrelation_many(
    x: npt.NDArray[np.float64], order: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Each row's windowed autocorrelation r[0..order], lag-windowed for `levinson_many`,
    and which rows are silent (their LPC is 1)."""
    k, n = x.shape
    # r[lag] = sum over t of w[t] * w[t + lag]: one einsum over a view of
    # the windowed rows followed by zeros (which add nothing).
    w = np.zeros((k, n + order))
    np.multiply(x, hanning(n), out=w[:, :n])
    item = w.itemsize
    shifted = np.ndarray((k, order + 1, n), np.float64, w, 0, ((n + order) * item, item, item))
    r = np.einsum("rlt,rt->rl", shifted, w[:, :n])
    silent = r[:, 0] <= 1e-9
    # The lag window and -40 dB white noise keep the filter tame.
    r *= lag_window_and_noise(order)
    return r, silent


@functools.lru_cache(maxsize=4)
def lag_window_and_noise(order: int) -> npt.NDArray[np.float64]:
    """The lag window with r[0] raised by -40 dB of white noise (its lag-0 weight is 1)."""
    lag, _ = lpc_windows(order)
    w = lag.copy()
    w[0] = 1.0001
    w.setflags(write=False)
    return w


def lpc_of(coef: npt.NDArray[np.float64], silent: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    """Levinson-Durbin's coefficients, bandwidth-expanded; 1 for silent rows."""
    _, expand = lpc_windows(coef.shape[1] - 1)
    a = coef * expand
    if silent.any():
        a[silent] = 0.0
        a[silent, 0] = 1.0
    return a


def residual_many(
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


def impulse_responses(a: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Per row, the first FRAME samples of 1/A(z)'s impulse response.

    Through the FFT rather than a per-sample loop: A(z) is minimum phase and
    bandwidth-expanded, so the response has decayed long before the
    1024-point transform wraps it around.
    """
    size = 1 << max(10, (4 * FRAME - 1).bit_length())
    return np.fft.irfft(1.0 / np.fft.rfft(a, size, axis=1), size, axis=1)[:, :FRAME]


def drive_many(
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


def read_many(
    flat: npt.NDArray[np.float64], start: npt.NDArray[np.int64] | int, pos: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Values at fractional positions `pos` (k, n) of k buffers laid end to end in `flat`
    (row r's sample 0 at start[r, 0], or at `start` for one buffer); cubic Hermite
    interpolation.

    Each buffer is stored padded (`_PAD_BEFORE` copies of its first sample
    before it, `PAD_AFTER` of its last after it), so that the four
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
PAD_AFTER = 3  # position len(buffer) itself, should rounding reach it, reads the last sample


def pad_edges(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Rows of `x` with their edge samples repeated, as `read_many` reads them."""
    first, last = x[:, :1], x[:, -1:]
    return np.concatenate([first] * _PAD_BEFORE + [x] + [last] * PAD_AFTER, axis=1)
