"""The integer arithmetic of TFLite's int8 reference kernels, in numpy: bit for bit what LiteRT's
builtin reference kernels (OpResolverType.BUILTIN_REF) and TensorFlow Lite Micro compute for the
ops of an integer TF-SepNet (QUANTIZE, DEQUANTIZE, ADD, SUB, MUL, SQUARED_DIFFERENCE, MEAN, RSQRT,
CONV_2D / DEPTHWISE_CONV_2D requantization, MAX_POOL_2D, CONCATENATION), and the int16 versions
of QUANTIZE (to and from int8), ADD, SUB, MUL and MEAN that the first norm's statistics use
(`bits=16`: zero point 0, ADD/SUB lift by 2^15 instead of 2^20, int16 clamp).

Written from the kernels' sources (tflite-micro's kernels/internal/reference/ and micro/kernels/,
LiteRT's tflite/kernels/); tests/test_integer_kernels.py holds each function to both runtimes on
one-op models. docs/integer_kernels.md says what each op does and where the runtimes differ.

Conventions:
- integer values travel as int64 arrays holding int32 values; where C++ overflows int32 (a left
  shift in a multiplier > 1) the value wraps, as the runtimes' builds do on two's-complement CPUs;
- scales are read as float32, as the .tflite stores them, before any multiplier is derived;
- the builds of both pip packages use "double rounding" (TFLITE_SINGLE_ROUNDING unset): the
  default multiply_by_quantized_multiplier; the single-rounding variant is here for comparison;
- where LiteRT and TFLM derive a multiplier differently (MUL and RSQRT: LiteRT partly in float32,
  TFLM in double), the op takes `runtime` (LITERT or TFLM): for rare scales the two runtimes'
  outputs differ by one step on a few inputs (tests pin such cases). Everywhere else both
  compute the same, in double.
numpy only.
"""

from __future__ import annotations

import numpy as np

from tfsep_edge.core.rounding import round_half_away_from_zero

INT8_MIN, INT8_MAX = -128, 127
INT16_MIN, INT16_MAX = -(2**15), 2**15 - 1
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
LITERT, TFLM = "litert", "tflm"

ADD_LEFT_SHIFT = 20  # int8 ADD/SUB lift both inputs by 2^20 before rescaling them to a common scale
ADD_LEFT_SHIFT_INT16 = 15  # int16: 2^15 (65535 << 15 still fits the int32 sum)
SQUARED_DIFFERENCE_LEFT_SHIFT = 7  # smaller: the difference is squared in int32
RSQRT_SHIFT = 20  # RSQRT keeps 1/sqrt(v) as an integer scaled by 2^20


# --- integers as C++ computes them ---------------------------------------------------------------


def as_int(x) -> np.ndarray:
    """Any integer array as int64 (the carrier of every int32 computation here)."""
    return np.asarray(x, dtype=np.int64)


def wrap_int32(x) -> np.ndarray:
    """Two's-complement int32 overflow, as C++ int32 arithmetic gives on the runtimes' CPUs."""
    return (as_int(x) + 2**31) % 2**32 - 2**31


def clamp_int8(x, lo: int = INT8_MIN, hi: int = INT8_MAX) -> np.ndarray:
    return np.clip(x, lo, hi).astype(np.int8)


def clamp_bits(x, bits: int) -> np.ndarray:
    """Clamped to int8 or int16, the output type of an op with `bits`-bit tensors."""
    if bits == 8:
        return clamp_int8(x)
    if bits == 16:
        return np.clip(x, INT16_MIN, INT16_MAX).astype(np.int16)
    raise ValueError(f"{bits}-bit tensors: the kernels here are int8 and int16")


def float32_scale(scale) -> np.ndarray:
    """A scale as the .tflite stores it (float32), widened to float64 as the kernels read it."""
    return np.asarray(scale, np.float32).astype(np.float64)


# --- fixed-point helpers (gemmlowp / tflite common.h) ---------------------------------------------


def quantize_multiplier(real, single_rounding: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """QuantizeMultiplier: real ~= multiplier * 2^(shift - 31), multiplier in [2^30, 2^31) (int32).

    frexp, round the mantissa half away from zero to 31 bits; a mantissa that rounds up to 2^31
    becomes 2^30 with shift + 1; 0 gives (0, 0); shift < -31 (too small to represent) gives
    (0, 0). Single-rounding builds also cap shift at 30. Vectorised; real >= 0."""
    real = np.asarray(real, np.float64)
    if np.any(real < 0):
        raise ValueError("quantize_multiplier takes non-negative multipliers")
    mantissa, shift = np.frexp(real)
    q = as_int(round_half_away_from_zero(mantissa * 2.0**31))
    shift = as_int(shift)
    carry = q == 2**31
    q = np.where(carry, q // 2, q)
    shift = np.where(carry, shift + 1, shift)
    tiny = shift < -31
    q, shift = np.where(tiny, 0, q), np.where(tiny, 0, shift)
    if single_rounding:
        big = shift > 30
        q, shift = np.where(big, INT32_MAX, q), np.where(big, 30, shift)
    return q, shift


def quantize_multiplier_smaller_than_one(real) -> tuple[np.ndarray, np.ndarray]:
    """QuantizeMultiplierSmallerThanOneExp: as quantize_multiplier for 0 < real < 1. TFLite
    CHECK-fails (aborts the process) outside that range; here a ValueError."""
    real = np.asarray(real, np.float64)
    if np.any((real <= 0) | (real >= 1)):
        raise ValueError(f"multiplier {real} outside (0, 1): TFLite aborts in Prepare")
    return quantize_multiplier(real)


def _trunc_div_pow2(x: np.ndarray, bits: int) -> np.ndarray:
    """x / 2^bits rounded toward zero (C++ integer division)."""
    return np.where(x >= 0, x >> bits, -((-x) >> bits))


def saturating_rounding_doubling_high_mul(a, b) -> np.ndarray:
    """SaturatingRoundingDoublingHighMul: round(a * b / 2^31) for int32 a, b, with gemmlowp's
    nudge and truncating division (ties away from zero) and the one overflow, INT32_MIN^2,
    saturated to INT32_MAX."""
    a, b = as_int(a), as_int(b)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    high = _trunc_div_pow2(ab + nudge, 31)
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, high)


def rounding_divide_by_pot(x, exponent) -> np.ndarray:
    """RoundingDivideByPOT: x / 2^exponent, rounded to nearest, ties away from zero (0 <= exponent
    <= 31; exponent may be an array, e.g. per channel)."""
    x, exponent = as_int(x), as_int(exponent)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def saturating_rounding_multiply_by_pot(x, exponent: int) -> np.ndarray:
    """gemmlowp's SaturatingRoundingMultiplyByPOT<exponent>: a saturating left shift for
    exponent > 0, rounding_divide_by_pot for exponent < 0."""
    x = as_int(x)
    if exponent < 0:
        return rounding_divide_by_pot(x, -exponent)
    if exponent == 0:
        return x
    threshold = (1 << (31 - exponent)) - 1
    shifted = wrap_int32(x << exponent)
    return np.where(x > threshold, INT32_MAX, np.where(x < -threshold, INT32_MIN, shifted))


def multiply_by_quantized_multiplier(x, multiplier, shift) -> np.ndarray:
    """MultiplyByQuantizedMultiplier (int32 x; the double-rounding build both pip packages use):
    x * 2^max(shift, 0) (int32), SaturatingRoundingDoublingHighMul, then RoundingDivideByPOT by
    max(-shift, 0): two roundings."""
    x, multiplier, shift = as_int(x), as_int(multiplier), as_int(shift)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(wrap_int32(x << left), multiplier), right)


def multiply_by_quantized_multiplier_smaller_than_one_exp(x, multiplier, shift) -> np.ndarray:
    """MultiplyByQuantizedMultiplierSmallerThanOneExp (shift <= 0): the same arithmetic as
    multiply_by_quantized_multiplier there (no left shift)."""
    if np.any(as_int(shift) > 0):
        raise ValueError("shift > 0 for a multiplier smaller than one")
    return multiply_by_quantized_multiplier(x, multiplier, shift)


def multiply_by_quantized_multiplier_single_rounding(x, multiplier, shift) -> np.ndarray:
    """MultiplyByQuantizedMultiplier of TFLITE_SINGLE_ROUNDING builds: (x * m + 2^(30 - shift))
    >> (31 - shift), one rounding (ties toward +inf). Not what the pip packages run; kept to show
    the difference (tests/test_integer_kernels.py)."""
    x, multiplier, shift = as_int(x), as_int(multiplier), as_int(shift)
    total = 31 - shift
    return (x * multiplier + (np.int64(1) << (total - 1))) >> total


def multiply_by_quantized_multiplier_int64(x, multiplier, shift) -> np.ndarray:
    """The int64-accumulator overload (int16 activations with int64 bias), the same in both
    builds: the multiplier rounded to 16 bits, then one rounding shift. |x| < 2^47."""
    x, multiplier, shift = as_int(x), as_int(multiplier), as_int(shift)
    reduced = np.where(multiplier < 0x7FFF0000, (multiplier + (1 << 15)) >> 16, 0x7FFF)
    total = 15 - shift
    return wrap_int32((x * reduced + (np.int64(1) << (total - 1))) >> total)


# --- QUANTIZE / DEQUANTIZE -------------------------------------------------------------------------


def quantize(x, scale: float, zero_point: int) -> np.ndarray:
    """QUANTIZE float32 -> int8 (AffineQuantize): round(x / scale) in float32, ties away from
    zero, + zero_point, clamped. A quotient outside int32 (or NaN) becomes INT32_MIN, as the x86
    float->int conversion gives."""
    x = np.asarray(x, np.float32)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        r = round_half_away_from_zero(x / np.float32(scale)).astype(np.float64)
    in_range = np.isfinite(r) & (r >= INT32_MIN) & (r < 2.0**31)
    q = np.where(in_range, np.where(in_range, r, 0).astype(np.int64), INT32_MIN)
    return clamp_int8(wrap_int32(q + int(zero_point)))


def dequantize(q, scale: float, zero_point: int) -> np.ndarray:
    """DEQUANTIZE int8 -> float32: (double) scale * (q - zero_point), rounded once to float32."""
    return (float32_scale(scale) * (as_int(q) - int(zero_point))).astype(np.float32)


def quantize_from_int8(q, in_scale: float, in_zp: int, out_scale: float, out_zp: int, bits: int = 8) -> np.ndarray:
    """QUANTIZE between integer types (Requantize; int8 -> int8, and int8 <-> int16 with
    `bits` the output's): (q - in_zp) * in_scale / out_scale through
    multiply_by_quantized_multiplier (the multiplier in double), + out_zp, clamped."""
    m, s = quantize_multiplier(float32_scale(in_scale) / float32_scale(out_scale))
    return clamp_bits(multiply_by_quantized_multiplier(as_int(q) - int(in_zp), m, s) + int(out_zp), bits)


# --- ADD / SUB / SQUARED_DIFFERENCE: both inputs rescaled to twice the larger input scale ----------


def _common_scale_multipliers(s1, s2, so, left_shift: int) -> tuple[float, float, float]:
    """Real multipliers (input1, input2, output) of the ADD/SUB scheme, in double: each input to
    s_in / (2 max(s1, s2)), the sum back by 2 max / (2^left_shift * s_out). (tflite-micro's
    source once did SUB's in float32; the installed TFLM computes them in double, as measured.)"""
    s1, s2, so = (float(np.float32(s)) for s in (s1, s2, so))
    twice_max = 2.0 * max(s1, s2)
    return s1 / twice_max, s2 / twice_max, twice_max / float(np.float32(1 << left_shift) * np.float32(so))


def _rescale_inputs(a, a_zp, b, b_zp, m1, m2, left_shift):
    """(a - a_zp) and (b - b_zp), lifted by 2^left_shift and each multiplied by its multiplier."""
    a = multiply_by_quantized_multiplier_smaller_than_one_exp((as_int(a) - int(a_zp)) << left_shift, *m1)
    b = multiply_by_quantized_multiplier_smaller_than_one_exp((as_int(b) - int(b_zp)) << left_shift, *m2)
    return a, b


def _add_or_sub(a, a_scale, a_zp, b, b_scale, b_zp, out_scale, out_zp, sign: int, bits: int):
    shift = ADD_LEFT_SHIFT if bits == 8 else ADD_LEFT_SHIFT_INT16
    r1, r2, ro = _common_scale_multipliers(a_scale, b_scale, out_scale, shift)
    m1, m2 = quantize_multiplier_smaller_than_one(r1), quantize_multiplier_smaller_than_one(r2)
    mo = quantize_multiplier_smaller_than_one(ro)
    x, y = _rescale_inputs(a, a_zp, b, b_zp, m1, m2, shift)
    raw = wrap_int32(x + sign * y)
    return clamp_bits(multiply_by_quantized_multiplier_smaller_than_one_exp(raw, *mo) + int(out_zp), bits)


def add(a, a_scale, a_zp, b, b_scale, b_zp, out_scale, out_zp, bits: int = 8) -> np.ndarray:
    """ADD int8 (numpy broadcasting, as BroadcastAdd6DSlow): (a - a_zp) and (b - b_zp) lifted by
    2^20, each rescaled to half the larger input scale, summed in int32, rescaled to the output
    (three double-rounding multiplications). LiteRT and TFLM alike. int16 (`bits=16`): lifted by
    2^15, LiteRT's general path (AddOptions.pot_scale_int16 false), TFLM's only one."""
    return _add_or_sub(a, a_scale, a_zp, b, b_scale, b_zp, out_scale, out_zp, 1, bits)


def sub(a, a_scale, a_zp, b, b_scale, b_zp, out_scale, out_zp, bits: int = 8) -> np.ndarray:
    """SUB (broadcasting): ADD's arithmetic on the difference. LiteRT and TFLM alike.
    (LiteRT also accepts an output multiplier > 1, where TFLM aborts; not modelled: ValueError.)"""
    return _add_or_sub(a, a_scale, a_zp, b, b_scale, b_zp, out_scale, out_zp, -1, bits)


def squared_difference(a, a_scale, a_zp, b, b_scale, b_zp, out_scale, out_zp) -> np.ndarray:
    """SQUARED_DIFFERENCE int8 (broadcasting): inputs lifted by 2^7 and rescaled as in ADD, the
    int32 difference squared, then multiplied by (2 max)^2 / (2^14 s_out). LiteRT requires that
    multiplier < 1 (TFLM does not); below 1 the two compute the same."""
    s1, s2, so = (float(np.float32(s)) for s in (a_scale, b_scale, out_scale))
    twice_max = 2.0 * max(s1, s2)
    shift = SQUARED_DIFFERENCE_LEFT_SHIFT
    m1 = quantize_multiplier_smaller_than_one(s1 / twice_max)
    m2 = quantize_multiplier_smaller_than_one(s2 / twice_max)
    mo = quantize_multiplier_smaller_than_one(twice_max * twice_max / float(np.float32(1 << (2 * shift)) * so))
    x, y = _rescale_inputs(a, a_zp, b, b_zp, m1, m2, shift)
    diff = x - y
    return clamp_int8(multiply_by_quantized_multiplier(wrap_int32(diff * diff), *mo) + int(out_zp))


# --- MUL ------------------------------------------------------------------------------------------


def mul_multiplier(a_scale, b_scale, out_scale, runtime: str = LITERT) -> float:
    """s_a * s_b / s_out: LiteRT computes it in float32 (then widens), TFLM in double (measured:
    for about one scale triple in 40 a few of the 65,536 input pairs land one step apart)."""
    _check_runtime(runtime)
    sa, sb, so = (np.float32(s) for s in (a_scale, b_scale, out_scale))
    if runtime == LITERT:
        return float(sa * sb / so)
    return float(sa) * float(sb) / float(so)


def mul(a, a_scale, a_zp, b, b_scale, b_zp, out_scale, out_zp, runtime: str = LITERT, bits: int = 8) -> np.ndarray:
    """MUL (broadcasting): (a - a_zp) * (b - b_zp) in int32 times one multiplier; int16 alike
    (zero points 0; the product of two int16 fits int32)."""
    m, s = quantize_multiplier(mul_multiplier(a_scale, b_scale, out_scale, runtime))
    prod = (as_int(a) - int(a_zp)) * (as_int(b) - int(b_zp))
    return clamp_bits(multiply_by_quantized_multiplier(prod, m, s) + int(out_zp), bits)


# --- MEAN -----------------------------------------------------------------------------------------


def mean_multiplier(in_scale, out_scale, count: int) -> tuple[int, int]:
    """The multiplier of an int8 MEAN over `count` values: QuantizeMultiplier(s_in / s_out), then
    1/count folded in: shifted left by floor(log2 count) (at most 32, at most 31 + shift), divided
    by count with truncation; the shift lowered by as much."""
    m, s = quantize_multiplier(float32_scale(in_scale) / float32_scale(out_scale))
    m, s = int(m), int(s)
    n_shift = min(int(count).bit_length() - 1, 32, 31 + s)
    return (m << n_shift) // int(count), s - n_shift


def mean(q, in_scale, in_zp, out_scale, out_zp, axes, keep_dims: bool = True, bits: int = 8) -> np.ndarray:
    """MEAN int8 over `axes` (QuantizedMeanOrSum): the int32 sum, minus in_zp * count, times
    mean_multiplier, + out_zp. Both runtimes' reference kernels take this path for every int8
    MEAN, same qparams or not, axes [1, 2] of a 4-D tensor included (only LiteRT's optimized
    kernels have a special path there)."""
    q = as_int(q)
    axes = tuple(sorted({int(a) % q.ndim for a in np.atleast_1d(axes)}))
    count = int(np.prod([q.shape[a] for a in axes]))
    m, s = mean_multiplier(in_scale, out_scale, count)
    total = wrap_int32(q.sum(axis=axes, keepdims=keep_dims) - int(in_zp) * count)
    return clamp_bits(multiply_by_quantized_multiplier(total, m, s) + int(out_zp), bits)


# --- RSQRT ----------------------------------------------------------------------------------------


def _count_leading_zeros32(v: np.ndarray) -> np.ndarray:
    """CLZ of positive int32 values (frexp's exponent is the bit length; exact below 2^53)."""
    return 32 - np.frexp(v.astype(np.float64))[1].astype(np.int64)


def inv_sqrt_quantized_multiplier_exp(v) -> tuple[np.ndarray, np.ndarray]:
    """GetInvSqrtQuantizedMultiplierExp(v, kReverseShift): 1/sqrt(v) ~= multiplier * 2^(shift - 31)
    for integer v >= 0, by five Newton-Raphson steps in gemmlowp fixed point with 3 integer
    bits (F3) from the guess 1. v <= 1 (0 included) gives (INT32_MAX, 0)."""
    v = as_int(v)
    small = v <= 1
    x_in = np.where(small, 2, v)
    shift = np.full(x_in.shape, 11, np.int64)
    while np.any(x_in >= 1 << 29):  # bring v below 2^29, four at a time (one bit pair)
        big = x_in >= 1 << 29
        x_in, shift = np.where(big, x_in // 4, x_in), shift + big
    pairs = (_count_leading_zeros32(x_in) - 1) // 2 - 1  # normalise v into [2^27, 2^29)
    shift = shift - pairs
    x_in = x_in << (2 * pairs)
    f3_input = x_in >> 1  # v as F3 (raw 2^28 = 1.0)
    half_input = saturating_rounding_multiply_by_pot(f3_input, -1)
    half_three = (1 << 28) + (1 << 27)
    x = np.full(x_in.shape, 1 << 28, np.int64)  # F3 one
    srdhm = saturating_rounding_doubling_high_mul
    for _ in range(5):
        x3 = saturating_rounding_multiply_by_pot(srdhm(srdhm(x, x), x), 6)  # F9 -> F3
        x = saturating_rounding_multiply_by_pot(wrap_int32(srdhm(half_three, x) - srdhm(half_input, x3)), 3)
    x = srdhm(x, 1518500250)  # times sqrt(2)/2 as F0
    negative = shift < 0
    x = np.where(negative, wrap_int32(x << np.where(negative, -shift, 0)), x)
    shift = np.where(negative, 0, shift)
    return np.where(small, INT32_MAX, x), np.where(small, 0, -shift)


def rsqrt_multiplier(in_scale, out_scale, runtime: str = LITERT) -> tuple[int, int]:
    """QuantizeMultiplier(1 / (sqrt(s_in) * s_out)). LiteRT takes sqrt and product in float32
    (std::sqrt of a float) and the reciprocal in double; TFLM all in double (measured)."""
    _check_runtime(runtime)
    if runtime == LITERT:
        real = 1.0 / float(np.sqrt(np.float32(in_scale)) * np.float32(out_scale))
    else:
        real = 1.0 / (np.sqrt(float(np.float32(in_scale))) * float(np.float32(out_scale)))
    m, s = quantize_multiplier(real)
    return int(m), int(s)


def rsqrt(q, in_scale, in_zp, out_scale, out_zp, runtime: str = LITERT) -> np.ndarray:
    """RSQRT int8: v = q - in_zp; 1/sqrt(v) as an integer scaled by 2^20, then times
    rsqrt_multiplier (shift - 20), + out_zp, clamped. v == 0 gives 127 whatever out_zp (the
    kernels read 0 as "close to 0": the largest output); v < 0 fails the invoke in both runtimes,
    here a ValueError."""
    v = as_int(q) - int(in_zp)
    if np.any(v < 0):
        raise ValueError("RSQRT of a negative value: both runtimes fail the invoke")
    inv_m, inv_s = inv_sqrt_quantized_multiplier_exp(v)
    scaled = multiply_by_quantized_multiplier(1, inv_m, inv_s + RSQRT_SHIFT)
    m, s = rsqrt_multiplier(in_scale, out_scale, runtime)
    out = multiply_by_quantized_multiplier(scaled, m, s - RSQRT_SHIFT) + int(out_zp)
    return np.where(v == 0, INT8_MAX, clamp_int8(out)).astype(np.int8)


# --- CONV_2D / DEPTHWISE_CONV_2D ------------------------------------------------------------------


def conv_multipliers(in_scale, weight_scales, out_scale) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel: QuantizeMultiplier(s_in * s_w[c] / s_out), in double from float32s."""
    real = float32_scale(in_scale) * float32_scale(np.atleast_1d(weight_scales)) / float32_scale(out_scale)
    return quantize_multiplier(real)


def activation_range(out_scale, out_zp: int, relu: bool) -> tuple[int, int]:
    """CalculateActivationRangeQuantized: RELU clamps at the quantized 0, i.e. max(-128, out_zp)."""
    return (max(INT8_MIN, int(out_zp)) if relu else INT8_MIN), INT8_MAX


def requantize(acc_int32, in_scale, weight_scales, out_scale, out_zp, relu: bool = False) -> np.ndarray:
    """The int8 conv's output stage: the int32 accumulator (bias included; output channels on the
    last axis) times its channel's multiplier (multiply_by_quantized_multiplier, double rounding),
    + out_zp, clamped to the activation range. CONV_2D and DEPTHWISE_CONV_2D alike."""
    m, s = conv_multipliers(in_scale, weight_scales, out_scale)
    lo, hi = activation_range(out_scale, out_zp, relu)
    return clamp_int8(multiply_by_quantized_multiplier(acc_int32, m, s) + int(out_zp), lo, hi)


def _padded_windows(x: np.ndarray, kh: int, kw: int, stride: int, padding: str, fill: int) -> np.ndarray:
    """(B, OH, OW, C, kh, kw) windows of NHWC x; SAME pads as TFLite (the extra row/column after)."""
    if padding == "SAME":
        h, w = x.shape[1:3]
        ph = max((-(-h // stride) - 1) * stride + kh - h, 0)
        pw = max((-(-w // stride) - 1) * stride + kw - w, 0)
        pads = ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0))
        x = np.pad(x, pads, constant_values=fill)
    elif padding != "VALID":
        raise ValueError(f"padding {padding!r}: SAME or VALID")
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))
    return win[:, ::stride, ::stride]


def conv_accumulator(x, x_zp, weight, bias, stride: int = 1, padding: str = "VALID", depthwise: bool = False):
    """The int32 accumulator of an int8 conv: sum (x - x_zp) * w over the window, + bias. Padding
    adds nothing (the kernels skip points outside the image). weight: OHWI for CONV_2D,
    (1, kh, kw, C) for DEPTHWISE_CONV_2D (depth multiplier 1)."""
    weight = as_int(weight)
    kh, kw = weight.shape[1:3]
    win = _padded_windows(as_int(x) - int(x_zp), kh, kw, stride, padding, 0)
    if depthwise:
        acc = np.einsum("bhwcij,ijc->bhwc", win, weight[0])
    else:
        acc = np.einsum("bhwcij,oijc->bhwo", win, weight)
    return wrap_int32(acc + as_int(bias))


def conv2d(x, x_scale, x_zp, weight, weight_scales, bias, out_scale, out_zp, stride=1, padding="VALID", relu=False):
    """CONV_2D int8 (per-channel weights, zero point 0; int32 bias at s_in * s_w): NHWC -> NHWC."""
    acc = conv_accumulator(x, x_zp, weight, bias, stride, padding)
    return requantize(acc, x_scale, weight_scales, out_scale, out_zp, relu)


def depthwise_conv2d(
    x, x_scale, x_zp, weight, weight_scales, bias, out_scale, out_zp, stride=1, padding="VALID", relu=False
):
    """DEPTHWISE_CONV_2D int8, depth multiplier 1: weight (1, kh, kw, C)."""
    acc = conv_accumulator(x, x_zp, weight, bias, stride, padding, depthwise=True)
    return requantize(acc, x_scale, weight_scales, out_scale, out_zp, relu)


# --- MAX_POOL_2D / CONCATENATION ------------------------------------------------------------------


def max_pool_2d(x, size: int = 2, stride: int = 2, padding: str = "VALID") -> np.ndarray:
    """MAX_POOL_2D int8 (no fused activation): the window's max; output qparams are the
    input's. SAME windows see only points inside the image (padding with -128 is the same)."""
    win = _padded_windows(np.asarray(x, np.int8), size, size, stride, padding, INT8_MIN)
    return win.max(axis=(-2, -1)).astype(np.int8)


def concatenation(parts, axis: int, quants=None, out_quant=None) -> np.ndarray:
    """CONCATENATION int8 of inputs on the output's grid: the values copied. `quants` (one
    (scale, zp) per part) and `out_quant`, when given, must all be equal: TFLM fails to allocate
    otherwise (LiteRT would requantize through float; not modelled)."""
    if quants is not None and any(
        (np.float32(s), int(z)) != (np.float32(out_quant[0]), int(out_quant[1])) for s, z in quants
    ):
        raise ValueError("CONCATENATION of int8 inputs with other qparams than the output's")
    return np.concatenate([np.asarray(p, np.int8) for p in parts], axis=axis)


def _check_runtime(runtime: str) -> None:
    if runtime not in (LITERT, TFLM):
        raise ValueError(f"runtime {runtime!r}: {LITERT!r} or {TFLM!r}")
