"""Where an int8 conv's bias lives: int32 on the accumulator's grid s_in * s_w (per output
channel). The exported graphs store it so, int8 kernels add it so, and the fake-quant twin and
the PyTorch INT8 model round their bias the same way, so every format computes the same sums.
numpy only (the exporters use it)."""

from __future__ import annotations

import numpy as np


def bias_grid(in_scale: float, w_scales: np.ndarray) -> np.ndarray:
    """The float32 per-channel scale s_in * s_w of a conv's int32 bias."""
    return (float(in_scale) * np.asarray(w_scales, np.float64)).astype(np.float32)


def grid_ints(bias: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The int32 bias on `grid`: round(bias / grid), clipped to int32."""
    ints = np.round(np.asarray(bias, np.float64) / np.asarray(grid, np.float64))
    return np.clip(ints, -(2**31), 2**31 - 1).astype(np.int32)


def int32_bias(bias: np.ndarray, in_scale: float, w_scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int32 bias, its float32 per-channel scale s_in * s_w): bias ~= int32 * scale."""
    grid = bias_grid(in_scale, w_scales)
    return grid_ints(bias, grid), grid


def on_grid(bias: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The float32 value int32 * scale that a graph's DequantizeLinear of the bias gives."""
    return grid_ints(bias, grid).astype(np.float32) * np.asarray(grid, np.float32)
