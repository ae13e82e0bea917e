"""The integer ops of an integer TF-SepNet (QuantOptions.integer) for the fake-quant twin: the
input QUANTIZE, int8 MEAN (the blocks' means and the classifier's global mean) and AdaResNorm in
int8 TFLite ops. Each forward computes the exact integers the runtimes compute
(quant/integer_kernels.py) with a float surrogate for the gradient (straight-through:
y = y_float + (y_exact - y_float).detach()), so fine-tuning still trains the convs and the
norm's gamma, rho and beta.

AdaResNorm, NCHW x (B, C, F, T), statistics per (B, F) over C and T, n = C*T, k = n / (n - 1):
    mu = MEAN(x); sq = SQUARED_DIFFERENCE(x, mu); var = MEAN(sq); r = RSQRT(var)
    S = CONV_1x1(r; c, g); O = CONV_1x1(mu; g, beta); d = SUB(x, mu); y = ADD(MUL(d, S), O)
with c = gamma (1 - rho) k^-1/2, g = gamma rho per channel. S and O are 1x1 convs from the one
statistic to C channels: the weight int8 per channel (each channel's own scale, so +-127 holds it
exactly), the bias int32 on the accumulator's grid, one rounding at the output: one op each
instead of a MUL and an ADD (on a microcontroller every op costs interpreter memory). Exact:
y = g x + c r (x - mu) + beta, and 1/sqrt(k var + eps) = k^-1/2 / sqrt(var + eps/k); the integer
RSQRT has no eps (it gives its largest output at var = 0). Written with d = x - mu so that no
full-size product is offset by a large constant; at most two full-size tensors live at once
(x and sq, x and d, d and d*S, d*S and y). Every intermediate is an int8 tensor whose (scale,
zero point) was calibrated on the float model's value of it (NORM_POINTS). The choices and their
measurements: docs/quantization.md, "Integer model".

A "wide" norm (NormSpec.wide; by default the first, at full resolution, where int8 statistics
cost most; every norm with --int16-norms all):
its statistics and full-size intermediates in int16, RSQRT still int8 (LiteRT's int16 RSQRT is
far from 1/sqrt), refined by Newton steps in int16 on the per-row statistic:
    x16 = QUANTIZE(x); mu = MEAN(x16); d = SUB(x16, mu); var = MEAN(MUL(d, d))
    r = QUANTIZE16(RSQRT(QUANTIZE8(var)));  per step: u = MUL(MUL(var, r), r); r = MUL(r, SUB(3, u))
    S = ADD(MUL(r, c), g); O = ADD(MUL(mu, g), beta); y = QUANTIZE8(ADD(MUL(d, S), O))
A Newton step gives r (3 - var r^2), twice the refined value: the r tensor after k steps holds
a_k r (a_0 = 1, a_{k+1} = 2 a_k^3; the 3 of the next step is 3 a_k^2, c is divided by a_K).
Every int16 scale is a power of two (zero point 0, as TFLite requires): each int16 MUL's
multiplier is then exact, so LiteRT (float32) and TFLM (double) derive the same one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tfsep_edge.quant import integer_kernels as K
from tfsep_edge.quant.bias_grid import int32_bias

# The intermediate quantization points of an integer AdaResNorm, in the order they are computed;
# the output is the island's own output point.
NORM_POINTS = ("mean", "sq", "var", "rsqrt", "scale", "offset", "centered", "product")
NONNEGATIVE = ("sq", "var", "rsqrt")  # their zero point must be the range's bottom (RSQRT refuses v < 0)
NUDGE_ULPS = 64  # how far (float32 steps) an output scale may move so both runtimes agree
NEWTON_STEPS = 1  # on the wide norm's int8 RSQRT (docs/quantization.md has the measurement)
INT16_MAX = 32767


def norm_constants(rho: torch.Tensor, gamma: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(c, g) per channel: c = gamma (1 - rho) k^-1/2, g = gamma rho, k = n / (n - 1)."""
    k = n / (n - 1)
    return gamma * (1 - rho) / k**0.5, gamma * rho


def norm_values(x: torch.Tensor, rho, gamma, beta, eps: float) -> dict[str, torch.Tensor]:
    """The float value of every point of the integer AdaResNorm on NCHW x (and "out", equal to
    AdaResNorm(x) up to float rounding): what calibration observes, and the gradient's surrogate."""
    rho, gamma, beta = (p.reshape(1, -1, 1, 1) for p in (rho, gamma, beta))
    n = x.shape[1] * x.shape[3]
    c, g = norm_constants(rho, gamma, n)
    v: dict[str, torch.Tensor] = {"mean": x.mean((1, 3), keepdim=True)}
    v["sq"] = (x - v["mean"]) ** 2
    v["var"] = v["sq"].mean((1, 3), keepdim=True)
    v["rsqrt"] = torch.rsqrt(v["var"] + eps * (n - 1) / n)
    v["scale"] = v["rsqrt"] * c + g
    v["offset"] = v["mean"] * g + beta
    v["centered"] = x - v["mean"]
    v["product"] = v["centered"] * v["scale"]
    v["out"] = v["product"] + v["offset"]
    return v


# --- scales both runtimes read the same way --------------------------------------------------------


def _float32_neighbours(scale: float):
    """scale as float32, then its float32 neighbours alternately above and below, outwards."""
    s = np.float32(scale)
    yield float(s)
    up = down = s
    for _ in range(NUDGE_ULPS):
        up, down = np.nextafter(up, np.float32(np.inf)), np.nextafter(down, np.float32(0))
        yield float(up)
        yield float(down)


PRODUCTS = np.arange(-(255 * 255), 255 * 255 + 1)  # every (a - za) (b - zb) an int8 MUL can meet
RSQRT_INPUTS = np.arange(0, 256)  # every q - zp an int8 RSQRT accepts


@functools.lru_cache(maxsize=4096)
def agreeing_mul_scale(a_scale: float, b_scale: float, out_scale: float, out_zp: int) -> float:
    """The float32 output scale nearest `out_scale` for which LiteRT (multiplier in float32) and
    TFLM (in double) give the same MUL output for every possible product, so one twin equals both
    runtimes. (The multipliers themselves rarely agree: float32 keeps 24 bits of the 31.)"""
    for s in _float32_neighbours(out_scale):
        outs = [
            K.clamp_int8(
                K.multiply_by_quantized_multiplier(
                    PRODUCTS, *K.quantize_multiplier(K.mul_multiplier(a_scale, b_scale, s, runtime))
                )
                + out_zp
            )
            for runtime in (K.LITERT, K.TFLM)
        ]
        if np.array_equal(*outs):
            return s
    raise ValueError(f"no MUL output scale within {NUDGE_ULPS} float32 steps of {out_scale} agrees in both runtimes")


@functools.lru_cache(maxsize=4096)
def agreeing_rsqrt_scale(in_scale: float, out_scale: float, out_zp: int) -> float:
    """As agreeing_mul_scale, for RSQRT (multiplier 1 / (sqrt(s_in) s_out)) over its 256 inputs."""
    for s in _float32_neighbours(out_scale):
        outs = [K.rsqrt(RSQRT_INPUTS, in_scale, 0, s, out_zp, runtime) for runtime in (K.LITERT, K.TFLM)]
        if np.array_equal(*outs):
            return s
    raise ValueError(f"no RSQRT output scale within {NUDGE_ULPS} float32 steps of {out_scale} agrees in both runtimes")


def squared_difference_floor(a_scale: float, b_scale: float) -> float:
    """The smallest output scale SQUARED_DIFFERENCE accepts (LiteRT needs its output multiplier
    (2 max s)^2 / (2^14 s_out) below 1), with a margin."""
    twice_max = 2.0 * max(float(np.float32(a_scale)), float(np.float32(b_scale)))
    return 1.01 * twice_max * twice_max / 2.0**14


@dataclass(frozen=True)
class ChannelConv:
    """A 1x1 conv from one statistic (one input channel) to C channels: int8 weight per channel
    at its own symmetric scale, float bias stored as int32 on s_in * s_w (bias_grid.int32_bias,
    as every int8 conv's)."""

    weight: np.ndarray  # int8 (C,)
    w_scales: np.ndarray  # float32 (C,)
    bias: np.ndarray  # float64 (C,)
    in_scale: float

    def bias_int32(self) -> np.ndarray:
        return int32_bias(self.bias, self.in_scale, self.w_scales)[0]


def channel_conv(weight: np.ndarray, bias: np.ndarray, in_scale: float) -> ChannelConv:
    """weight (C,) as int8 at per-channel scales |w| / 127 (a zero weight, or one whose bias
    would overflow int32 on s_in * s_w, gets a larger scale)."""
    floor = np.abs(bias) / (float(np.float32(in_scale)) * 2.0**30)
    scales = np.maximum(np.abs(weight) / 127.0, np.maximum(floor, 1e-12)).astype(np.float32)
    q = np.clip(np.round(weight / scales.astype(np.float64)), -127, 127).astype(np.int8)
    return ChannelConv(q, scales, np.asarray(bias, np.float64), float(np.float32(in_scale)))


def apply_channel_conv(q, in_point: tuple[float, int], conv: ChannelConv, out_point, channel_axis: int):
    """The conv's int8 output for the int8 statistic `q` (size 1 along `channel_axis`), as
    CONV_2D computes it: sum (q - zp) * w + bias, per-channel requantization."""
    shape = [1] * np.ndim(q)
    shape[channel_axis] = -1
    acc = (K.as_int(q) - int(in_point[1])) * conv.weight.astype(np.int64).reshape(shape)
    acc = acc + conv.bias_int32().astype(np.int64).reshape(shape)
    moved = np.moveaxis(acc, channel_axis, -1)  # K.requantize takes channels last
    out = K.requantize(moved, in_point[0], conv.w_scales, *out_point)
    return np.moveaxis(out, -1, channel_axis)


# --- the wide (int16) norm -------------------------------------------------------------------------


def pot_scale(hi: float) -> float:
    """The smallest power of two s with 32767 s >= hi: an int16 point holding [-hi, hi] (at
    least 2^-30, so that an all-zero constant still gives every multiplier a valid shift)."""
    return float(2.0 ** max(np.ceil(np.log2(max(float(hi), 1e-30) / INT16_MAX)), -30))


def point_hi(point: tuple[float, int]) -> float:
    """The largest |value| an int8 point holds."""
    s, z = point
    return max(abs(s * (-128 - z)), abs(s * (127 - z)))


@dataclass(frozen=True)
class Const16:
    """An int16 constant at a power-of-two scale (per channel: shape (C,))."""

    q: np.ndarray
    scale: float


def const16(values) -> Const16:
    values = np.asarray(values, np.float64)
    scale = pot_scale(float(np.abs(values).max()))
    return Const16(np.clip(np.round(values / scale), -INT16_MAX, INT16_MAX).astype(np.int16), scale)


@dataclass(frozen=True)
class NewtonStep:
    """One Newton step's int16 scales: w = var r, u = w r, v = 3 a^2 - u, r' = r v."""

    w: float
    u: float
    three: Const16
    v: float
    r: float


@dataclass(frozen=True)
class WideSpec:
    """The int16 scales of the wide norm's points (zero point 0) and its int16 constants; the int8
    RSQRT's input and output keep the calibrated "var" and "rsqrt" points."""

    x: float
    mean: float
    centered: float
    sq: float
    var: float
    r: float  # the int8 RSQRT's output in int16
    newton: tuple[NewtonStep, ...]
    c: Const16  # c / a_K per channel
    scale_mul: float  # c r
    g: Const16
    scale: float  # S = c r + g
    offset_mul: float  # g mu
    beta: Const16
    offset: float  # O = g mu + beta
    product: float
    out: float


def wide_spec(inp, p: dict, out, c: np.ndarray, g: np.ndarray, beta: np.ndarray) -> WideSpec:
    """Each int16 point holds what its calibrated int8 point holds (the same float values),
    rounded up to a power of two; the Newton intermediates' ranges follow from their algebra
    (u = var r^2 is 1 for an exact r; its point saturates at 2.5, so 3 - u stays positive)."""
    x = pot_scale(point_hi(inp))
    var_hi, r_hi, g_hi = point_hi(p["var"]), point_hi(p["rsqrt"]), float(np.abs(g).max())
    steps, a = [], 1.0
    for _ in range(NEWTON_STEPS):
        three = const16(np.array([3.0 * a * a]))
        w, u, v = pot_scale(2 * a * var_hi**0.5), pot_scale(2.5 * a * a), pot_scale(3 * a * a)
        steps.append(NewtonStep(w, u, three, v, pot_scale(3 * a**3 * r_hi)))
        a = 2 * a**3
    return WideSpec(
        x=x,
        mean=x,
        centered=pot_scale(point_hi(p["centered"])),
        sq=pot_scale(point_hi(p["sq"])),
        var=pot_scale(var_hi),
        r=pot_scale(r_hi),
        newton=tuple(steps),
        c=const16(c / a),
        scale_mul=pot_scale(point_hi(p["scale"]) + g_hi),
        g=const16(g),
        scale=pot_scale(point_hi(p["scale"])),
        offset_mul=pot_scale(g_hi * point_hi(inp)),
        beta=const16(beta),
        offset=pot_scale(point_hi(p["offset"])),
        product=pot_scale(point_hi(p["product"])),
        out=pot_scale(point_hi(out)),
    )


def integer_norm_wide(xq: np.ndarray, spec: NormSpec, channel_axis: int, stat_axes: tuple[int, int]) -> np.ndarray:
    """The wide norm's int8 output for int8 input `xq` (module docstring), op by op as the
    .tflite computes it; layout-free as integer_norm."""
    w, p = spec.wide, spec.points
    shape = [1] * np.ndim(xq)
    shape[channel_axis] = -1

    def mul(a, sa, b, sb, so):
        return K.mul(a, sa, 0, b, sb, 0, so, 0, bits=16)

    def affine(t, st, k: Const16, s_mul: float, bias: Const16, s_out: float):  # t k + bias, per channel
        prod = mul(t, st, k.q.reshape(shape), k.scale, s_mul)
        return K.add(prod, s_mul, 0, bias.q.reshape(shape), bias.scale, 0, s_out, 0, bits=16)

    x16 = K.quantize_from_int8(xq, *spec.inp, w.x, 0, bits=16)
    mu = K.mean(x16, w.x, 0, w.mean, 0, axes=stat_axes, bits=16)
    d = K.sub(x16, w.x, 0, mu, w.mean, 0, w.centered, 0, bits=16)
    var = K.mean(mul(d, w.centered, d, w.centered, w.sq), w.sq, 0, w.var, 0, axes=stat_axes, bits=16)
    var8 = K.quantize_from_int8(var, w.var, 0, *p["var"])
    r = K.quantize_from_int8(K.rsqrt(var8, *p["var"], *p["rsqrt"]), *p["rsqrt"], w.r, 0, bits=16)
    r_scale = w.r
    for st in w.newton:
        u = mul(mul(var, w.var, r, r_scale, st.w), st.w, r, r_scale, st.u)
        v = K.sub(st.three.q.reshape([1] * np.ndim(xq)), st.three.scale, 0, u, st.u, 0, st.v, 0, bits=16)
        r, r_scale = mul(r, r_scale, v, st.v, st.r), st.r
    s = affine(r, r_scale, w.c, w.scale_mul, w.g, w.scale)
    o = affine(mu, w.mean, w.g, w.offset_mul, w.beta, w.offset)
    y = K.add(mul(d, w.centered, s, w.scale, w.product), w.product, 0, o, w.offset, 0, w.out, 0, bits=16)
    return K.quantize_from_int8(y, w.out, 0, *spec.out)


# --- exact integers with a straight-through gradient -----------------------------------------------


def on_grid(x: torch.Tensor, scale: float, zero_point: int) -> np.ndarray:
    """The integers of a tensor the twin holds on a grid (a fake-quant output): round(x / s) + zp."""
    return np.rint(x.detach().double().numpy() / scale).astype(np.int64) + int(zero_point)


def straight_through(exact_q: np.ndarray, scale: float, zero_point: int, surrogate: torch.Tensor) -> torch.Tensor:
    """The exact integers' values in the forward pass, the float surrogate's gradient backward."""
    exact = torch.from_numpy(K.dequantize(exact_q, scale, zero_point)).to(surrogate.dtype)
    return surrogate + (exact - surrogate).detach()


class IntegerQuantize(nn.Module):
    """The model input's QUANTIZE (float32 -> int8, ties away from zero), in the twin as a value."""

    def __init__(self, scale: float, zero_point: int):
        super().__init__()
        self.scale, self.zero_point = float(np.float32(scale)), int(zero_point)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = K.quantize(x.detach().numpy(), self.scale, self.zero_point)
        return straight_through(q, self.scale, self.zero_point, x)


class IntegerMean(nn.Module):
    """int8 MEAN over `dims` (NCHW) from the input point to its own output point, exactly."""

    def __init__(self, dims: tuple[int, ...], inp: tuple[float, int], out: tuple[float, int], keepdim: bool = True):
        super().__init__()
        self.dims, self.keepdim = tuple(dims), keepdim
        self.inp, self.out = (float(inp[0]), int(inp[1])), (float(out[0]), int(out[1]))
        self.scale, self.zero_point = self.out  # as a fake-quant point: output_step and describe read these

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = on_grid(x, *self.inp)
        exact = K.mean(q, *self.inp, *self.out, axes=self.dims, keep_dims=self.keepdim)
        return straight_through(exact, *self.out, x.mean(self.dims, keepdim=self.keepdim))


@dataclass(frozen=True)
class NormSpec:
    """Everything an integer AdaResNorm computes with: the (scale, zero point) of its input, of
    every point (NORM_POINTS, output scales of MUL/RSQRT nudged so both runtimes agree) and of its
    output, and its int8 constants (per channel, one symmetric scale each)."""

    inp: tuple[float, int]
    points: dict[str, tuple[float, int]]
    out: tuple[float, int]
    scale_conv: ChannelConv  # r -> S: weight c, bias g
    offset_conv: ChannelConv  # mu -> O: weight g, bias beta
    wide: WideSpec | None = None  # int16 statistics (module docstring), else all int8


class IntegerNorm(nn.Module):
    """AdaResNorm as int8 TFLite ops (module docstring), its gamma, rho, beta trainable."""

    def __init__(
        self, norm: nn.Module, inp: tuple[float, int], points: dict, out: tuple[float, int], n: int, wide: bool = False
    ):
        super().__init__()
        self.wide = bool(wide)  # int16 statistics (module docstring)
        self.n = int(n)  # values per statistic (C * T) on the model's input length: the exports' constants
        self.kind = type(norm).__name__  # AdaResNorm, or ResNorm (its constants): what reports call it
        self.rho = nn.Parameter(norm.rho.detach().clone().reshape(-1))
        self.gamma = nn.Parameter(norm.gamma.detach().clone().reshape(-1))
        self.beta = nn.Parameter(norm.beta.detach().clone().reshape(-1))
        self.eps = float(norm.eps)
        self.inp = (float(inp[0]), int(inp[1]))
        self.calibrated = {k: (float(points[k][0]), int(points[k][1])) for k in NORM_POINTS}
        self.out_point = (float(out[0]), int(out[1]))
        self.scale, self.zero_point = self.out_point

    def spec(self, n: int) -> NormSpec:
        """The integer norm for n = C * T values per statistic, from the current gamma, rho, beta."""
        c, g = (v.numpy() for v in norm_constants(self.rho.detach().double(), self.gamma.detach().double(), n))
        p = dict(self.calibrated)
        floor = squared_difference_floor(self.inp[0], p["mean"][0])
        p["sq"] = (max(p["sq"][0], floor), p["sq"][1])
        p["rsqrt"] = (agreeing_rsqrt_scale(p["var"][0], *p["rsqrt"]), p["rsqrt"][1])
        p["product"] = (agreeing_mul_scale(p["centered"][0], p["scale"][0], *p["product"]), p["product"][1])
        p = {k: (float(np.float32(s)), z) for k, (s, z) in p.items()}
        beta = self.beta.detach().double().numpy()
        wide = wide_spec(self.inp, p, self.out_point, c, g, beta) if self.wide else None
        return NormSpec(
            self.inp, p, self.out_point, channel_conv(c, g, p["rsqrt"][0]), channel_conv(g, beta, p["mean"][0]), wide
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = self.spec(x.shape[1] * x.shape[3])
        exact = (integer_norm_wide if spec.wide else integer_norm)(on_grid(x, *spec.inp), spec, 1, (1, 3))
        surrogate = norm_values(x, self.rho, self.gamma, self.beta, self.eps)["out"]
        return straight_through(exact, *spec.out, surrogate)


def integer_norm(xq: np.ndarray, spec: NormSpec, channel_axis: int, stat_axes: tuple[int, int]) -> np.ndarray:
    """The integer AdaResNorm's int8 output for int8 input `xq`, as the runtimes compute it
    (op order and operand order of the TFLite graph). Layout-free: the constants go along
    `channel_axis`, the statistics over `stat_axes` (NCHW: 1 and (1, 3); NHWC: 3 and (2, 3))."""
    p = spec.points
    x = (xq, *spec.inp)
    mu = (K.mean(xq, *spec.inp, *p["mean"], axes=stat_axes), *p["mean"])
    sq = (K.squared_difference(*x, *mu, *p["sq"]), *p["sq"])
    var = (K.mean(*sq, *p["var"], axes=stat_axes), *p["var"])
    r = K.rsqrt(*var, *p["rsqrt"])
    s = (apply_channel_conv(r, p["rsqrt"], spec.scale_conv, p["scale"], channel_axis), *p["scale"])
    offset = (apply_channel_conv(mu[0], p["mean"], spec.offset_conv, p["offset"], channel_axis), *p["offset"])
    d = (K.sub(*x, *mu, *p["centered"]), *p["centered"])
    prod = (K.mul(*d, *s, *p["product"]), *p["product"])
    return K.add(*prod, *offset, *spec.out)
