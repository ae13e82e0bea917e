"""TFLite's rounding, defined once for the twin (quant/integer_kernels.py) and for whatever feeds
an int8 input tensor (the runtimes, TFLite Micro on the host, tfsep_classify.cc in C++).

An int8-input file must see the integers its float-input twin's QUANTIZE would make, or the two
files of one model disagree: TFLite rounds x / scale half away from zero, numpy's round half to even.
"""

from __future__ import annotations

import numpy as np


def round_half_away_from_zero(x: np.ndarray) -> np.ndarray:
    """TfLiteRound (std::round): ties away from zero, in x's own precision (np.round rounds ties
    to even). x - trunc(x) is exact, so no 0.49999... edge case."""
    x = np.asarray(x)
    t = np.trunc(x)
    frac = x - t
    return t + np.where(np.abs(frac) >= 0.5, np.sign(x), 0).astype(x.dtype)


def quantize_affine(x: np.ndarray, point: tuple[float, int], dtype=np.int8) -> np.ndarray:
    """Float log-mels to an integer input tensor at (scale, zero point), as TFLite's QUANTIZE:
    x / scale in float32, rounded half away from zero, + zero point, clamped to `dtype`."""
    scale, zero_point = point
    info = np.iinfo(dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        q = round_half_away_from_zero(np.asarray(x, np.float32) / np.float32(scale))
    return np.clip(q.astype(np.float64) + int(zero_point), info.min, info.max).astype(dtype)
