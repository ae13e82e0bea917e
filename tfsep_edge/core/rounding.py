"""TFLite's rounding, defined once for the twin (quant/integer_kernels.py) and for whatever feeds
an int8 input tensor (the runtimes, TFLite Micro on the host, tfsep_classify.cc in C++).

An int8-input file should see the integers the float-input file's QUANTIZE makes in TFLite's
reference kernels and TFLite Micro (the twin's arithmetic): x / scale rounded half away from zero.
numpy's round, ONNX's QuantizeLinear and XNNPACK round half to even; on a tie they differ by one.
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
    """Float log-mels to an integer input tensor at (scale, zero point), as TFLite's reference
    QUANTIZE: x / scale in float32, rounded half away from zero, + zero point, clamped to `dtype`.
    Out-of-range values saturate (the twin's integer_kernels.quantize models x86's overflow of the
    kernel itself instead); NaN becomes the zero point."""
    scale, zero_point = point
    info = np.iinfo(dtype)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        q = round_half_away_from_zero(np.asarray(x, np.float32) / np.float32(scale)).astype(np.float64)
        q = np.clip(np.nan_to_num(q, nan=0.0) + int(zero_point), info.min, info.max)
        return q.astype(dtype)
