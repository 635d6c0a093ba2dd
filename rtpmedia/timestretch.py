"""Time stretching of decoded 8 kHz audio by whole pitch periods.

The jitter buffer (`rtpmedia.jitterbuffer`) decides *when* its delay should
shrink or grow; this module does it on the decoded samples, as NetEq's
Accelerate and PreemptiveExpand do: find the pitch period P of the segment by
normalised cross-correlation, then remove one period (accelerate) or insert one
(preemptive expand) with a cross-fade over a whole period. Because the two
periods that are blended are alike, the splice has no click. A segment that is
neither periodic enough (correlation below `MIN_CORRELATION`) nor quiet is left
unchanged: changing delay there would be audible, so the buffer simply tries
again on a later frame.

Functions are pure: int16 (or float) arrays in, a new array and the number of
samples removed or added out.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 8000
#: Pitch search range in samples at 8 kHz: 400 Hz down to 66.7 Hz.
MIN_LAG = 20
MAX_LAG = 120
#: NetEq stretches voiced speech only when the periods match this well.
MIN_CORRELATION = 0.9
#: Below this RMS (int16 scale, about -50 dBFS) a segment counts as silence,
#: where any splice of matching length is inaudible.
SILENCE_RMS = 100.0


@dataclass(frozen=True, slots=True)
class Stretch:
    """The result of one stretch: the new audio and how much it changed."""

    audio: npt.NDArray[np.int16]
    #: Samples removed (accelerate) or added (preemptive expand); 0 if the
    #: segment was not suitable and `audio` is the input unchanged.
    samples: int
    #: The pitch period used (samples), or 0.
    lag: int
    #: Normalised correlation between the two blended periods.
    correlation: float


def find_period(
    x: npt.NDArray[np.float64], min_lag: int = MIN_LAG, max_lag: int = MAX_LAG
) -> tuple[int, float]:
    """The lag in [min_lag, max_lag] with the best normalised correlation.

    Compares x[0:P] with x[P:2P] for every P (the two periods a stretch
    blends), so the answer is directly the quality of the splice. Returns
    (lag, correlation); (0, 0.0) when x is too short for min_lag.
    """
    n = len(x)
    max_lag = min(max_lag, n // 2)
    if max_lag < min_lag:
        return 0, 0.0
    # A fixed comparison window (the shortest admissible period pair) keeps
    # the correlations of different lags comparable; then the best lag is
    # refined over its own full period.
    w = min_lag
    # Vectorised: a window of length w at offset 0 against offset P, and the
    # energies of both, for every lag at once.
    seg = x[_windows(min_lag, max_lag)]
    ref = x[:w]
    num = seg @ ref
    den = np.sqrt(np.einsum("ij,ij->i", seg, seg) * np.dot(ref, ref)) + 1e-9
    corr = num / den
    # Candidates are the local maxima of the correlation; among those that
    # are nearly as good as the best, prefer the shortest: multiples of the
    # true period correlate as well and would remove too much.
    inner = (corr[1:-1] >= corr[:-2]) & (corr[1:-1] >= corr[2:])
    peaks = [int(i) + 1 for i in np.nonzero(inner)[0]]
    # One admissible lag only (x of 2 * min_lag samples, or 2 * min_lag + 1): it is the answer.
    if len(corr) == 1 or corr[0] > corr[1]:
        peaks.insert(0, 0)
    if len(corr) > 1 and corr[-1] > corr[-2]:
        peaks.append(len(corr) - 1)
    if not peaks:
        return 0, 0.0
    if len(peaks) <= _FEW_PEAKS:
        full: list[tuple[int, float]] = []
        for i in peaks:
            p = min_lag + i
            a, b = x[:p], x[p : 2 * p]
            # Python floats for the scalar arithmetic (numpy scalars cost ~0.1 µs
            # an operation): the same IEEE result.
            ab, aa, bb = float(a @ b), float(a @ a), float(b @ b)
            full.append((p, ab / (math.sqrt(aa * bb) + 1e-9)))
        top = max(c for _, c in full)
        return next((p, c) for p, c in full if c >= top - 0.03)
    # Many candidates (noise has dozens): each one's correlation over its own
    # full period, x[:P] against x[P:2P], for all at once, rows zero-padded to
    # the longest period. A dot product per peak cost ~3 µs of Python each
    # (260 µs an accelerate on noise); this costs about 10 of them.
    lags = np.array(peaks) + min_lag
    longest = int(lags[-1])  # the peaks ascend
    cols = np.arange(longest)
    inside = cols < lags[:, None]
    a = np.where(inside, x[:longest], 0.0)
    b = np.where(inside, x[np.minimum(cols + lags[:, None], n - 1)], 0.0)
    ab = np.einsum("ij,ij->i", a, b)
    aa = np.einsum("ij,ij->i", a, a)
    bb = np.einsum("ij,ij->i", b, b)
    corrs = ab / (np.sqrt(aa * bb) + 1e-9)
    top = float(corrs.max())
    best = int(np.argmax(corrs >= top - 0.03))  # the shortest lag nearly as good as the best
    return int(lags[best]), float(corrs[best])


#: Up to this many candidate periods, `find_period` refines them one by one
#: (three dot products each); beyond, in one set of array operations, whose
#: fixed cost is about that of ten candidates.
_FEW_PEAKS = 10


@functools.lru_cache(maxsize=16)
def _windows(min_lag: int, max_lag: int) -> npt.NDArray[np.intp]:
    """Indices of the window of `min_lag` samples at every lag (one row a lag), computed once."""
    lags = np.arange(min_lag, max_lag + 1)
    idx = lags[:, None] + np.arange(min_lag)[None, :]
    idx.setflags(write=False)
    return idx


def _rms(x: npt.NDArray[np.float64]) -> float:
    # A dot product, not np.mean's Python wrapper: one call instead of several.
    return math.sqrt(float(x @ x) / len(x)) if len(x) else 0.0


def _to_int16(y: npt.NDArray[np.float64]) -> npt.NDArray[np.int16]:
    return np.minimum(np.maximum(np.rint(y), -32768.0), 32767.0).astype(np.int16)


def _choose_lag(x: npt.NDArray[np.float64], max_samples: int) -> tuple[int, float]:
    max_lag = min(MAX_LAG, max_samples, len(x) // 2)
    if _rms(x) < SILENCE_RMS:
        # In silence the splice is inaudible; take the longest period that
        # fits to move the delay as far as one operation can.
        return (max_lag, 1.0) if max_lag >= MIN_LAG else (0, 0.0)
    lag, corr = find_period(x)
    if lag and corr >= MIN_CORRELATION and lag <= max_lag:
        return lag, corr
    return 0, corr


def accelerate(
    audio: npt.NDArray[np.integer] | npt.NDArray[np.floating], max_samples: int = MAX_LAG
) -> Stretch:
    """Remove one pitch period (at most `max_samples`) from `audio`.

    `audio` must hold at least two periods; if its period is longer than
    `max_samples`, nothing is removed.

    Output: x[0:P] cross-faded into x[P:2P] (fading x[0:P] out), then x[2P:].
    Its first sample is x[0] and its P-th continues into x[2P], so the
    result joins both the audio played before it and the audio after it.
    """
    x = np.asarray(audio, dtype=np.float64)
    lag, corr = _choose_lag(x, max_samples)
    if not lag:
        return Stretch(_to_int16(x), 0, 0, corr)
    w = (np.arange(lag) + 0.5) / lag
    blend = x[:lag] * (1.0 - w) + x[lag : 2 * lag] * w
    y = np.concatenate([blend, x[2 * lag :]])
    return Stretch(_to_int16(y), lag, lag, corr)


def preemptive_expand(
    audio: npt.NDArray[np.integer] | npt.NDArray[np.floating], max_samples: int = MAX_LAG
) -> Stretch:
    """Insert one pitch period (at most `max_samples`) into `audio`.

    Output: x[0:P], then a period that fades from x[P:2P] (which continues
    x[P-1]) into x[0:P] (which x[P] continues), then x[P:]: the first period
    is heard twice, blended, and both joins are smooth.
    """
    x = np.asarray(audio, dtype=np.float64)
    lag, corr = _choose_lag(x, max_samples)
    if not lag:
        return Stretch(_to_int16(x), 0, 0, corr)
    w = (np.arange(lag) + 0.5) / lag
    blend = x[lag : 2 * lag] * (1.0 - w) + x[:lag] * w
    y = np.concatenate([x[:lag], blend, x[lag:]])
    return Stretch(_to_int16(y), lag, lag, corr)
