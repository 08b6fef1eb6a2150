"""Pillow's 8-bit resampling arithmetic, compiled with numba: one pass along one axis.

Pillow (``src/libImaging/Resample.c``) resizes in two separable passes. For each output pixel of
a pass it takes a weighted sum of the input pixels around it: the weights are a filter's values
in double precision (``precompute_coeffs``), normalised to sum to one and rounded to integers
with 22 fraction bits (``normalize_coeffs_8bpc``); the sum starts at one half, is shifted right
22 bits and clipped to 0..255. :func:`pass_weights` repeats that double arithmetic operation for
operation and :func:`resample_pass` the integer sums, so the pixels are Pillow's, bit for bit.

What differs is the loop order: :func:`resample_pass` makes whole rows of output at once (for
each output row, every input row it reads times one weight, over the row), which numba turns
into vector instructions, where Pillow goes pixel by pixel. A pass along the other axis runs on
the transposed plane (:mod:`optica.data.resize`).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from PIL import Image

PRECISION_BITS = 32 - 8 - 2  # Resample.c: 8 bits of result, 2 for overflow and the sign

# Pillow's convolution filters by their Image.Resampling value, and each one's support.
_R = Image.Resampling
BOX, BILINEAR, HAMMING, BICUBIC, LANCZOS = (
    int(f) for f in (_R.BOX, _R.BILINEAR, _R.HAMMING, _R.BICUBIC, _R.LANCZOS)
)
FILTER_SUPPORT = {BOX: 0.5, BILINEAR: 1.0, HAMMING: 1.0, BICUBIC: 2.0, LANCZOS: 3.0}
_HAMMING_A = float(np.float32(0.54))  # Resample.c writes 0.54f and 0.46f
_HAMMING_B = float(np.float32(0.46))


def _compiled(function):
    """``function`` compiled by numba on first call, without the GIL; the machine code is cached
    on disk where numba finds a writable place (beside this module, ``NUMBA_CACHE_DIR``, the
    user's cache directory). Where there is none (a read-only install and home), numba refuses to
    cache and each process compiles for itself (~2 s) instead of failing to import."""
    try:
        return numba.njit(cache=True, nogil=True)(function)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(nogil=True)(function)


@_compiled
def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x = x * math.pi
    return math.sin(x) / x


@_compiled
def _filter(kind: int, x: float) -> float:
    """Resample.c's ``box_filter`` ... ``lanczos_filter``, branch for branch."""
    if kind == BOX:
        return 1.0 if -0.5 < x <= 0.5 else 0.0
    if kind == LANCZOS:
        return _sinc(x) * _sinc(x / 3) if -3.0 <= x < 3.0 else 0.0
    x = abs(x)
    if kind == BILINEAR:
        return 1.0 - x if x < 1.0 else 0.0
    if kind == HAMMING:
        if x == 0.0:
            return 1.0
        if x >= 1.0:
            return 0.0
        x = x * math.pi
        return math.sin(x) / x * (_HAMMING_A + _HAMMING_B * math.cos(x))
    a = -0.5  # bicubic
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


@_compiled
def pass_weights(size: int, out_size: int, first: int, count: int, kind: int, support: float):
    """The integer weights of output pixels ``first .. first + count`` of a pass resizing
    ``size`` pixels to ``out_size`` with filter ``kind``: (starts, taps, weights), where output
    ``i`` reads input pixels ``starts[i] .. starts[i] + taps[i]`` with ``weights[i, :taps[i]]``.
    """
    scale = size / out_size
    filter_scale = max(scale, 1.0)
    support = support * filter_scale
    width = math.ceil(support) * 2 + 1
    starts = np.zeros(count, np.int64)
    taps = np.zeros(count, np.int64)
    weights = np.zeros((count, width), np.int32)
    values = np.zeros(width)
    inverse = 1.0 / filter_scale
    for i in range(count):
        centre = (first + i + 0.5) * scale
        low = max(int(centre - support + 0.5), 0)
        high = min(int(centre + support + 0.5), size) - low
        total = 0.0
        for t in range(high):
            values[t] = _filter(kind, (t + low - centre + 0.5) * inverse)
            total += values[t]
        for t in range(high):
            value = values[t] / total if total != 0.0 else values[t]
            scaled = value * (1 << PRECISION_BITS)
            weights[i, t] = int(scaled - 0.5 if value < 0 else scaled + 0.5)  # C's cast: to zero
        starts[i], taps[i] = low, high
    return starts, taps, weights


@_compiled
def resample_pass(source, starts, taps, weights, out) -> None:
    """One pass along axis 0 of the uint8 plane ``source``:
    ``out[i, x] = clip((2**21 + sum_t weights[i, t] * source[starts[i] + t, x]) >> 22)``.
    ``out`` may be a transposed view, which stores the pass's result transposed."""
    length = source.shape[1]
    total = np.empty(length, np.int32)
    for i in range(starts.shape[0]):
        total[:] = 1 << (PRECISION_BITS - 1)
        for t in range(taps[i]):
            weight = weights[i, t]
            row = source[starts[i] + t]
            for x in range(length):
                total[x] += np.int32(row[x]) * weight
        for x in range(length):
            value = total[x] >> PRECISION_BITS
            out[i, x] = 0 if value < 0 else (255 if value > 255 else value)
