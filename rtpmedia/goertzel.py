"""In-band DTMF detection (ITU-T Q.23/Q.24 tones) with the Goertzel algorithm, in numpy.

The signal is cut into blocks of 102 samples (12.75 ms at 8 kHz); each block
is measured at the eight DTMF frequencies and their second harmonics. The
Goertzel recurrence computes one DFT term at an arbitrary frequency; its
result equals the squared magnitude of `sum(x[n] * exp(-j w n))`, so
`tone_powers` evaluates the sixteen of them for many blocks at once as one
matrix product (`goertzel` runs the recurrence itself, vectorised over
blocks and frequencies, and is the reference the tests compare against).

A block holds a digit when its strongest row and column tones pass the usual
checks: each above a minimum level, twist within limits both ways, each
clearly above the other tones of its group, second harmonics weak (speech is
rich in them, DTMF generators are not), and the two tones carrying most of
the block's energy. `DtmfDetector` reports a digit once, when two
consecutive blocks agree on it, and takes it as released when two
consecutive blocks agree on something else: tones of 40 ms and more are
always reported, tones shorter than about 20 ms never.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 8000
BLOCK_SIZE = 102
ROW_FREQUENCIES = (697.0, 770.0, 852.0, 941.0)
COLUMN_FREQUENCIES = (1209.0, 1336.0, 1477.0, 1633.0)
KEYPAD = ("123A", "456B", "789C", "*0#D")          # KEYPAD[row][column]
DIGITS = "".join(KEYPAD)                            # digit of code row * 4 + column
NO_DIGIT = -1

# Fundamentals then second harmonics, rows before columns.
FREQUENCIES = (*ROW_FREQUENCIES, *COLUMN_FREQUENCIES,
               *(2 * f for f in ROW_FREQUENCIES), *(2 * f for f in COLUMN_FREQUENCIES))


def _db(value: float) -> float:
    return float(10 ** (value / 10))


# Thresholds, on powers normalised so that a sine of amplitude A reads A**2.
MIN_TONE_POWER = 500.0 ** 2       # about -33 dBm0 per tone (0 dBm0 ~ 22,700 peak)
NORMAL_TWIST = _db(8.0)           # row tone stronger than column tone by at most 8 dB
REVERSE_TWIST = _db(6.0)          # column tone stronger than row tone by at most 6 dB
RELATIVE_PEAK = _db(6.0)          # over every other tone of the same group
SECOND_HARMONIC = _db(-10.0)      # at most this fraction of the fundamental...
LEAKAGE_MARGIN = _db(3.0)         # ...plus what the other tone leaks there, with margin
MIN_TONE_SHARE = 0.6              # of the block's energy carried by the two tones


def goertzel(blocks: npt.ArrayLike, frequencies: Sequence[float],
             sample_rate: int = SAMPLE_RATE) -> npt.NDArray[np.float64]:
    """Goertzel power of every block (last axis = samples) at every frequency.

    Runs the recurrence s[n] = x[n] + 2 cos(w) s[n-1] - s[n-2] over the
    samples, all blocks and frequencies at once; returns shape
    `blocks.shape[:-1] + (len(frequencies),)`, unnormalised (|DFT term|**2).
    """
    x = np.asarray(blocks, dtype=np.float64)
    w = 2 * np.pi * np.asarray(frequencies, dtype=np.float64) / sample_rate
    coeff = 2 * np.cos(w)
    shape = (*x.shape[:-1], len(w))
    s1 = np.zeros(shape)
    s2 = np.zeros(shape)
    for n in range(x.shape[-1]):
        s0 = x[..., n, None] + coeff * s1 - s2
        s2 = s1
        s1 = s0
    # |s[N-1] - exp(-jw) s[N-2]|**2, the DFT term up to a phase factor.
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def _basis(frequencies: Sequence[float], size: int) -> npt.NDArray[np.float64]:
    n = np.arange(size)[:, None]
    w = 2 * np.pi * np.asarray(frequencies)[None, :] / SAMPLE_RATE
    return np.concatenate([np.cos(w * n), np.sin(w * n)], axis=1)


_BASIS = _basis(FREQUENCIES, BLOCK_SIZE)
_NORM = 4.0 / BLOCK_SIZE ** 2


def tone_powers(blocks: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Normalised power at the 16 `FREQUENCIES` of each block of `BLOCK_SIZE` samples.

    Same values as `goertzel(blocks, FREQUENCIES)` times 4 / N**2 (a sine of
    amplitude A at one of the frequencies reads about A**2), computed for all
    blocks in one matrix product.
    """
    x = np.asarray(blocks, dtype=np.float64)
    projections = x @ _BASIS
    half = len(FREQUENCIES)
    return (projections[..., :half] ** 2 + projections[..., half:] ** 2) * _NORM


def _harmonic_leakage() -> npt.NDArray[np.float64]:
    """Worst power that a unit tone of one group leaks into the second-harmonic bins of the
    other group's tone (shape 4 rows x 4 columns x 2: into 2*row, into 2*column).

    With 102-sample blocks 2 x 697 Hz lies 58 Hz from 1336 Hz, so the column
    tone of a 2 is what the 1394 Hz bin mostly measures; the check of the
    second harmonic therefore allows for it. Tones up to 2% off nominal count.
    """
    n = np.arange(BLOCK_SIZE)
    deviations = np.linspace(-0.02, 0.02, 9)[:, None, None]
    phases = np.linspace(0, np.pi, 8, endpoint=False)[None, :, None]
    leak = np.zeros((4, 4, 2))
    for i, row in enumerate(ROW_FREQUENCIES):
        for j, col in enumerate(COLUMN_FREQUENCIES):
            for k, (source, bin_index) in enumerate(((col, 8 + i), (row, 12 + j))):
                w = 2 * np.pi * source * (1 + deviations) / SAMPLE_RATE
                powers = tone_powers(np.sin(w * n + phases))
                leak[i, j, k] = powers[..., bin_index].max()
    return leak


_LEAKAGE = _harmonic_leakage() * LEAKAGE_MARGIN


def classify_blocks(blocks: npt.ArrayLike) -> npt.NDArray[np.int8]:
    """The digit code (index into `DIGITS`) each block holds, or NO_DIGIT (-1)."""
    x = np.asarray(blocks, dtype=np.float64)
    powers = tone_powers(x)
    rows, cols = powers[..., 0:4], powers[..., 4:8]
    row = np.argmax(rows, axis=-1)
    col = np.argmax(cols, axis=-1)
    r = np.take_along_axis(rows, row[..., None], axis=-1)[..., 0]
    c = np.take_along_axis(cols, col[..., None], axis=-1)[..., 0]
    r2 = np.take_along_axis(powers[..., 8:12], row[..., None], axis=-1)[..., 0]
    c2 = np.take_along_axis(powers[..., 12:16], col[..., None], axis=-1)[..., 0]
    # Every other tone of the group at least RELATIVE_PEAK below the strongest.
    rows_ok = np.sum(rows * RELATIVE_PEAK > r[..., None], axis=-1) == 1
    cols_ok = np.sum(cols * RELATIVE_PEAK > c[..., None], axis=-1) == 1
    # A sine of amplitude A has mean square A**2 / 2; two tones of powers r, c: (r + c) / 2.
    energy = np.mean(x * x, axis=-1)
    hit = ((r >= MIN_TONE_POWER) & (c >= MIN_TONE_POWER)
           & (c <= r * REVERSE_TWIST) & (r <= c * NORMAL_TWIST)
           & rows_ok & cols_ok
           & (r2 <= r * SECOND_HARMONIC + c * _LEAKAGE[row, col, 0])
           & (c2 <= c * SECOND_HARMONIC + r * _LEAKAGE[row, col, 1])
           & ((r + c) / 2 >= MIN_TONE_SHARE * energy))
    return np.where(hit, row * 4 + col, NO_DIGIT).astype(np.int8)


class DtmfDetector:
    """Per-stream state: feed 8 kHz int16 audio in any chunk size, get each key press once."""

    __slots__ = ("_pending", "_last", "_held")

    def __init__(self) -> None:
        self._pending = np.zeros(0, dtype=np.int16)
        self._last = NO_DIGIT        # what the previous block held
        self._held = NO_DIGIT        # the digit being pressed, once reported

    def feed(self, samples: npt.NDArray[np.int16]) -> str:
        """The digits that start in `samples` (usually none), in order."""
        blocks = self.take_blocks(samples)
        return self.advance(classify_blocks(blocks)) if len(blocks) else ""

    def take_blocks(self, samples: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        """Append `samples`; return the whole blocks now available (blocks x BLOCK_SIZE)."""
        data = np.concatenate([self._pending, np.asarray(samples, dtype=np.int16).reshape(-1)])
        whole = len(data) - len(data) % BLOCK_SIZE
        self._pending = data[whole:]
        return data[:whole].reshape(-1, BLOCK_SIZE)

    def advance(self, codes: npt.NDArray[np.int8]) -> str:
        """Run the per-block classification of this stream's next blocks through the debounce."""
        out = []
        for code in codes.tolist():
            # Two consecutive blocks must agree before the state changes.
            if code == self._last and code != self._held:
                self._held = code
                if code != NO_DIGIT:
                    out.append(DIGITS[code])
            self._last = code
        return "".join(out)

    def reset(self) -> None:
        self._pending = np.zeros(0, dtype=np.int16)
        self._last = self._held = NO_DIGIT


def feed_many(detectors: Sequence[DtmfDetector],
              frames: Sequence[npt.NDArray[np.int16]]) -> list[str]:
    """`detector.feed(frame)` for every pair, with one classification call for all of them.

    A relay's 20 ms tick: each stream's detector and its new audio, one numpy
    pass over every block of every stream.
    """
    taken = [d.take_blocks(f) for d, f in zip(detectors, frames, strict=True)]
    if not any(len(b) for b in taken):
        return [""] * len(taken)
    codes = classify_blocks(np.concatenate(taken))
    out = []
    start = 0
    for detector, blocks in zip(detectors, taken, strict=True):
        out.append(detector.advance(codes[start:start + len(blocks)]) if len(blocks) else "")
        start += len(blocks)
    return out


def detect(samples: npt.NDArray[np.int16]) -> str:
    """The digits in a whole recording (8 kHz int16), each key press once."""
    return DtmfDetector().feed(samples)
