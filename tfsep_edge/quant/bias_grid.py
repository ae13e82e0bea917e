"""Where an int8 conv's bias lives: int32 on the accumulator's grid s_in * s_w (per output
channel). The exported graphs store it so, int8 kernels add it so, and the fake-quant twin rounds
its bias the same way, so every format computes the same sums. numpy only (the exporters use it)."""

from __future__ import annotations

import numpy as np


def int32_bias(bias: np.ndarray, in_scale: float, w_scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int32 bias, its float32 per-channel scale s_in * s_w): bias ~= int32 * scale."""
    scale = (float(in_scale) * np.asarray(w_scales, np.float64)).astype(np.float32)
    q = np.clip(np.round(np.asarray(bias, np.float64) / scale.astype(np.float64)), -(2**31), 2**31 - 1)
    return q.astype(np.int32), scale
