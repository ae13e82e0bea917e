"""The summary lines every format shares (driver.py prints them after the validation line): the
INT8 check in output steps, the budget, and a short timing that says which precision is faster here."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def median_ms(run: Callable[[np.ndarray], object], x: np.ndarray, runs: int = 40) -> float:
    """A short timing (batch 1, one thread): enough to say which precision is faster here."""
    for _ in range(10):
        run(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def fp32_timing(run: Callable[[np.ndarray], object], x: np.ndarray) -> dict:
    return {"fp32_ms": min(median_ms(run, x) for _ in range(2))}


def precision_timing(run_int8: Callable, run_fp32: Callable, x: np.ndarray) -> dict:
    """The INT8 file against the FP32 graph of the same float weights, best of three medians each."""
    int8_ms = min(median_ms(run_int8, x) for _ in range(3))
    fp32_ms = min(median_ms(run_fp32, x) for _ in range(3))
    return {"int8_ms": int8_ms, "fp32_ms": fp32_ms, "faster": "int8" if int8_ms < fp32_ms else "fp32"}


def step_lines(v: dict) -> list[str]:
    """For an INT8 export, the validation's difference in output steps and the PyTorch INT8 figures."""
    if "output_step" not in v:
        return []
    p = v["vs_pytorch_int8"]
    lines = [
        f"  = {v['max_diff_output_steps']:.2f} output steps of {v['output_step']:.3g}; vs PyTorch INT8 "
        f"(information only: its x86 kernels are not exact int8 arithmetic on every CPU): agreement "
        f"{p['top1_agreement']:.1%}, max |d logit| {p['max_abs_logit_diff']:.3g}"
    ]
    if "float_rounding" in v:
        f = v["float_rounding"]
        lines.append(
            f"  not equal to the integer kernels: the runtime requantizes in float and the integer norms amplify "
            f"its rounding (median input {f['median_input_steps']:.1f} output steps); the .tflite export equals them"
        )
    return lines


def closing_lines(summary: dict, runtime: str) -> list[str]:
    """The budget line and, if timed, which precision is faster in `runtime` here."""
    b, lat = summary["budget"], summary.get("latency")
    lines = []
    lines.append(
        f"budget: {b['params']:,} params, {b['macs']:,} MACs (NeSsi, float model); stored weights "
        f"{b['stored_param_bytes']:,} bytes"
    )
    if lat and "int8_ms" in lat:
        lines.append(
            f"{runtime} here (batch 1, 1 thread, short timing): INT8 {lat['int8_ms']:.3f} ms, FP32 "
            f"{lat['fp32_ms']:.3f} ms -> {lat['faster'].upper()} is faster on this machine"
        )
    elif lat:
        lines.append(f"{runtime} here (batch 1, 1 thread, short timing): {lat['fp32_ms']:.3f} ms")
    return lines
