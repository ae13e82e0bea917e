"""tfsep_edge.quant.integer_kernels equals TFLite's int8 kernels bit for bit: each op as a one-op
int8 .tflite (written with the export's flatbuffer writer and tflite_fp32's op helpers), run in
LiteRT with its builtin reference kernels and in TensorFlow Lite Micro, on TF-SepNet's shapes
(NHWC (1, 64, 22, 24); per-frequency statistics (1, 64, 1, 1); per-channel (1, 1, 1, 24)), random
int8 inputs and realistic random qparams over several seeds, same-qparams and zero-point edge
cases included. Every test runs once per runtime; where the two differ (MUL, RSQRT), each is held
to its own variant and test_runtimes_disagree_* pins a case."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from tfsep_edge.quant import integer_kernels as ik

litert = pytest.importorskip("ai_edge_litert.interpreter")
from tfsep_edge.export import tflite_fp32 as tg  # noqa: E402  (needs the flatbuffers LiteRT brings)
from tfsep_edge.export.tflite_flatbuffer import FlatGraph, Quant  # noqa: E402

X = (1, 64, 22, 24)  # a block's activation: (batch, frequency, time, channels)
PER_FREQ = (1, 64, 1, 1)
PER_CHANNEL = (1, 1, 1, 24)
SEEDS = (0, 1, 2)
MODES = ("random", "same", "edge")  # independent qparams; all equal; zero points at -128 / 127
RUNTIMES = (ik.LITERT, ik.TFLM)


# --- running one-op models ------------------------------------------------------------------------


def run_litert(model: bytes, inputs: list[np.ndarray]) -> np.ndarray:
    it = litert.Interpreter(model_content=model, experimental_op_resolver_type=litert.OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    for detail, value in zip(it.get_input_details(), inputs, strict=True):
        it.set_tensor(detail["index"], value)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


def run_tflm(model: bytes, inputs: list[np.ndarray]) -> np.ndarray:
    micro = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    it = micro.Interpreter.from_bytes(model, arena_size=1 << 20)
    for i, value in enumerate(inputs):
        it.set_input(value, i)
    it.invoke()
    return it.get_output(0)


@pytest.fixture(params=RUNTIMES)
def runtime(request) -> str:
    return request.param


def run(runtime: str, model: bytes, inputs: list[np.ndarray]) -> np.ndarray:
    return (run_litert if runtime == ik.LITERT else run_tflm)(model, inputs)


def assert_exact(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.dtype, want.shape)
    if not np.array_equal(got, want):
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
        raise AssertionError(f"{int((diff > 0).sum())} of {diff.size} values differ, max |d| {diff.max()}")


def pack(g: FlatGraph, inputs, output) -> bytes:
    return g.pack(inputs, [output], {}, "integer_kernels one-op probe")


# --- random data and qparams ----------------------------------------------------------------------


def rng_for(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))  # str hashes vary per process


def random_int8(rng, shape) -> np.ndarray:
    return rng.integers(-128, 128, shape, dtype=np.int8)


def random_qparams(rng) -> tuple[float, int]:
    return float(np.float32(10 ** rng.uniform(-3, -1))), int(rng.integers(-128, 128))


def fitted_qparams(rng, real: np.ndarray) -> tuple[float, int]:
    """What a calibration would pick for values `real`: their range (with 0) over 255 steps,
    jittered so values also saturate."""
    lo, hi = min(float(real.min()), 0.0), max(float(real.max()), 0.0)
    scale = float(np.float32(max(hi - lo, 1e-6) / 255 * rng.uniform(0.8, 1.25)))
    return scale, int(np.clip(np.round(-128 - lo / scale), -128, 127))


def input_qparams(rng, mode: str) -> list[tuple[float, int]]:
    """Two inputs' (scale, zp) for a mode."""
    if mode == "same":
        return [random_qparams(rng)] * 2
    if mode == "edge":
        return [(random_qparams(rng)[0], -128), (random_qparams(rng)[0], 127)]
    return [random_qparams(rng), random_qparams(rng)]


def real(q: np.ndarray, qp: tuple[float, int]) -> np.ndarray:
    return np.float64(np.float32(qp[0])) * (q.astype(np.float64) - qp[1])


def quant(qp: tuple[float, int]) -> Quant:
    return Quant.per_tensor(*qp)


# --- fixed-point helpers --------------------------------------------------------------------------


def test_quantize_multiplier_edge_cases():
    reals = [0.0, 0.5, 1.0, np.nextafter(1.0, 0.0), 2.0**-32, 2.0**-40, 3.0, 1e-7, 0.3]
    m, s = ik.quantize_multiplier(reals)
    assert (m[0], s[0]) == (0, 0)
    assert (m[1], s[1]) == (2**30, 0)
    assert (m[2], s[2]) == (2**30, 1)
    assert (m[3], s[3]) == (2**30, 1), "a mantissa that rounds up to 2^31 carries into the shift"
    assert (m[4], s[4]) == (2**30, -31)
    assert (m[5], s[5]) == (0, 0), "below 2^-32 the multiplier is 0"
    ok = np.array(reals) >= 2.0**-32
    assert np.all((m[ok] >= 2**30) & (m[ok] < 2**31))
    approx = m * 2.0 ** (s.astype(np.float64) - 31)
    assert np.allclose(approx[ok], np.array(reals)[ok], rtol=2.0**-30, atol=0)
    assert ik.quantize_multiplier(2.0**40)[1] == 41
    m, s = ik.quantize_multiplier(2.0**40, single_rounding=True)
    assert (m, s) == (2**31 - 1, 30), "single-rounding builds cap the shift at 30"
    with pytest.raises(ValueError):
        ik.quantize_multiplier_smaller_than_one(1.0)


def test_fixed_point_rounding():
    srdhm = ik.saturating_rounding_doubling_high_mul
    assert srdhm(ik.INT32_MIN, ik.INT32_MIN) == ik.INT32_MAX
    a = np.arange(-(2**20), 2**20, 997)
    b = 1518500250
    assert np.array_equal(srdhm(-a, b), -srdhm(a, b)), "ties round away from zero"
    rdp = ik.rounding_divide_by_pot
    assert rdp([5, -5, 6, -6, 7, -7], 1).tolist() == [3, -3, 3, -3, 4, -4]
    assert rdp([6, -6, 5, -5], 2).tolist() == [2, -2, 1, -1]
    assert rdp([6, 6], [1, 2]).tolist() == [3, 2], "per-channel exponents"
    x = np.arange(-100_000, 100_000)
    m, s = ik.quantize_multiplier(0.0123)
    double = ik.multiply_by_quantized_multiplier(x, m, s)
    single = ik.multiply_by_quantized_multiplier_single_rounding(x, m, s)
    assert 0 < np.count_nonzero(double != single) and np.abs(double - single).max() == 1
    assert np.array_equal(ik.multiply_by_quantized_multiplier_smaller_than_one_exp(x, m, s), double)
    exact = x * 2**12 * 0.0123
    big = ik.multiply_by_quantized_multiplier_int64(x * 2**12, m, s)  # a 16-bit multiplier: ~2^-16 relative
    assert np.abs(big - exact).max() <= 2.0**-15 * np.abs(exact).max()


# --- QUANTIZE / DEQUANTIZE ------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("zp", ["random", -128, 127, 0])
def test_quantize(runtime, seed, zp):
    rng = rng_for("quantize", seed, zp)
    scale = float(np.float32(2.0**-5)) if seed == 0 else random_qparams(rng)[0]  # 2^-5: exact ties
    zp = int(rng.integers(-128, 128)) if zp == "random" else zp
    x = (rng.normal(size=X) * 60 * scale).astype(np.float32)
    ties = (np.arange(-140, 140) + 0.5).astype(np.float32) * np.float32(scale)
    extremes = np.array([0.0, -0.0, 1e30, -1e30, np.inf, -np.inf, np.nan, 3e9 * scale], np.float32)
    x.reshape(-1)[: ties.size + extremes.size] = np.concatenate([ties, extremes])
    g = FlatGraph()
    xt = g.activation("x", X)
    out = g.activation("q", X, "INT8", Quant.per_tensor(scale, zp))
    g.op("QUANTIZE", [xt], [out])
    assert_exact(run(runtime, pack(g, [xt], out), [x]), ik.quantize(x, scale, zp))


@pytest.mark.parametrize("seed", SEEDS)
def test_dequantize(runtime, seed):
    rng = rng_for("dequantize", seed)
    scale, zp = random_qparams(rng)
    q = np.arange(-128, 128, dtype=np.int8).reshape(1, 16, 16)
    g = FlatGraph()
    qt = g.activation("q", q.shape, "INT8", Quant.per_tensor(scale, zp))
    out = g.activation("x", q.shape)
    g.op("DEQUANTIZE", [qt], [out])
    assert_exact(run(runtime, pack(g, [qt], out), [q]), ik.dequantize(q, scale, zp))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mode", MODES)
def test_quantize_int8_to_int8(runtime, seed, mode):
    rng = rng_for("requantize", seed, mode)
    q = random_int8(rng, X)
    qp_in, qp_out = input_qparams(rng, mode)
    g = FlatGraph()
    qt = g.activation("q", X, "INT8", quant(qp_in))
    out = g.activation("r", X, "INT8", quant(qp_out))
    g.op("QUANTIZE", [qt], [out])
    assert_exact(run(runtime, pack(g, [qt], out), [q]), ik.quantize_from_int8(q, *qp_in, *qp_out))


# --- ADD / SUB / MUL / SQUARED_DIFFERENCE ---------------------------------------------------------

BROADCASTS = [(X, X), (X, PER_FREQ), (PER_FREQ, X), (X, PER_CHANNEL), (PER_FREQ, PER_CHANNEL)]
REAL_OPS = {
    "ADD": np.add,
    "SUB": np.subtract,
    "MUL": np.multiply,
    "SQUARED_DIFFERENCE": lambda a, b: (a - b) ** 2,
}


def binary_case(op: str, shapes, seed: int, mode: str):
    """Random int8 operands, their qparams and the output's qparams (fitted to the real result,
    or the inputs' own in the same-qparams mode)."""
    rng = rng_for(op, shapes, seed, mode)
    a, b = random_int8(rng, shapes[0]), random_int8(rng, shapes[1])
    qa, qb = input_qparams(rng, mode)
    if mode == "same" and op in ("ADD", "SUB"):
        qo = qa
    else:
        qo = fitted_qparams(rng, REAL_OPS[op](real(a, qa), real(b, qb)))
        if mode == "edge":
            qo = (qo[0], -128 if seed % 2 else 127)
    return a, qa, b, qb, qo


def binary_model(op: str, a: np.ndarray, qa, b: np.ndarray, qb, qo) -> tuple[bytes, list]:
    g = FlatGraph()
    at = g.activation("a", a.shape, "INT8", quant(qa))
    bt = g.activation("b", b.shape, "INT8", quant(qb))
    if op == "SQUARED_DIFFERENCE":
        out = g.activation("out", tg.broadcast_shape(a.shape, b.shape), "INT8", quant(qo))
        g.op(op, [at, bt], [out])
    else:
        out = tg.binary(g, op, at, bt, "out", quant=quant(qo))
    return pack(g, [at, bt], out), [a, b]


@pytest.mark.parametrize("seed", SEEDS[:2])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shapes", BROADCASTS, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("op", list(REAL_OPS))
def test_binary(runtime, op, shapes, mode, seed):
    a, qa, b, qb, qo = binary_case(op, shapes, seed, mode)
    model, inputs = binary_model(op, a, qa, b, qb, qo)
    if op == "ADD":
        want = ik.add(a, *qa, b, *qb, *qo)
    elif op == "SUB":
        want = ik.sub(a, *qa, b, *qb, *qo)
    elif op == "MUL":
        want = ik.mul(a, *qa, b, *qb, *qo, runtime=runtime)
    else:
        want = ik.squared_difference(a, *qa, b, *qb, *qo)
    assert_exact(run(runtime, model, inputs), want)


def test_squared_difference_of_a_norm(runtime):
    """AdaResNorm's (x - mean)^2 with the mean on x's own grid, as the integer norm computes it."""
    rng = rng_for("sqdiff-norm")
    x = random_int8(rng, X)
    qx = random_qparams(rng)
    mu = ik.mean(x, *qx, *qx, axes=[2, 3])
    qo = fitted_qparams(rng, (real(x, qx) - real(mu, qx)) ** 2)
    model, inputs = binary_model("SQUARED_DIFFERENCE", x, qx, mu, qx, qo)
    assert_exact(run(runtime, model, inputs), ik.squared_difference(x, *qx, mu, *qx, *qo))


# --- MEAN -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("axes,keep", [([2, 3], True), ([1], True), ([2], True), ([1, 2], True), ([1, 2], False)])
def test_mean(runtime, axes, keep, mode, seed):
    rng = rng_for("mean", axes, keep, mode, seed)
    q = random_int8(rng, X)
    qi, qo = input_qparams(rng, mode)
    if mode == "random":
        qo = fitted_qparams(rng, real(q, qi).mean(axis=tuple(axes)))
    g = FlatGraph()
    qt = g.activation("x", X, "INT8", quant(qi))
    out = tg.mean(g, qt, axes, "mean", quant=quant(qo), keep=keep)
    assert_exact(run(runtime, pack(g, [qt], out), [q]), ik.mean(q, *qi, *qo, axes, keep_dims=keep))


# --- RSQRT ----------------------------------------------------------------------------------------


def rsqrt_model(qi, qo, shape) -> bytes:
    g = FlatGraph()
    qt = g.activation("var", shape, "INT8", quant(qi))
    out = g.activation("inv_std", shape, "INT8", quant(qo))
    g.op("RSQRT", [qt], [out])
    return pack(g, [qt], out)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("zp", ["random", -128, 0])
def test_rsqrt(runtime, seed, zp):
    """Every valid input (q >= zp, 0 included), scales of a variance and its 1/std."""
    rng = rng_for("rsqrt", seed, zp)
    scale = float(np.float32(10 ** rng.uniform(-5, 0)))
    zp = int(rng.integers(-128, 100)) if zp == "random" else zp
    q = np.arange(zp, 128, dtype=np.int8).reshape(1, -1, 1, 1)
    peak = 1 / np.sqrt(scale)  # 1/sqrt of the smallest positive input
    qo = (float(np.float32(peak / 255 * rng.uniform(0.1, 1.2))), int(rng.integers(-128, 0)))
    got = run(runtime, rsqrt_model((scale, zp), qo, q.shape), [q])
    want = ik.rsqrt(q, scale, zp, *qo, runtime=runtime)
    assert want[0, 0, 0, 0] == 127, "input 0 gives the largest output, whatever the zero point"
    assert_exact(got, want)


def test_rsqrt_of_a_negative_value_fails(runtime):
    q = np.array([[5, -3]], np.int8)
    with pytest.raises(RuntimeError):
        run(runtime, rsqrt_model((0.01, 0), (0.05, -128), q.shape), [q])
    with pytest.raises(ValueError):
        ik.rsqrt(q, 0.01, 0, 0.05, -128)


def every_int8_pair() -> tuple[np.ndarray, np.ndarray]:
    """(1, 256, 256, 1) operands holding all 65,536 pairs of int8 values."""
    values = np.arange(-128, 128, dtype=np.int8)
    a = np.broadcast_to(values.reshape(1, 256, 1, 1), (1, 256, 256, 1)).copy()
    return a, a.transpose(0, 2, 1, 3).copy()


def test_runtimes_disagree_on_mul():
    """LiteRT derives MUL's multiplier s_a * s_b / s_out in float32, TFLM in double: with these
    scales (found by search, about one random triple in 40) two of the 65,536 products land one
    step apart. Each runtime equals its own variant."""
    a, b = every_int8_pair()
    qa, qb, qo = (0.04431023448705673, -126), (0.006459476426243782, -88), (0.06032533198595047, -80)
    model, inputs = binary_model("MUL", a, qa, b, qb, qo)
    got_litert, got_tflm = run_litert(model, inputs), run_tflm(model, inputs)
    assert_exact(got_litert, ik.mul(a, *qa, b, *qb, *qo, runtime=ik.LITERT))
    assert_exact(got_tflm, ik.mul(a, *qa, b, *qb, *qo, runtime=ik.TFLM))
    assert np.count_nonzero(got_litert != got_tflm) == 2


def test_runtimes_disagree_on_rsqrt():
    """LiteRT takes RSQRT's sqrt(s_in) * s_out in float32, TFLM in double: with these scales
    (about one random pair in 2,500) one input lands one step apart."""
    q = np.arange(-128, 128, dtype=np.int8).reshape(1, -1, 1, 1)
    qi, qo = (0.0001667710894253105, -128), (0.04735655337572098, -16)
    model = rsqrt_model(qi, qo, q.shape)
    got_litert, got_tflm = run_litert(model, [q]), run_tflm(model, [q])
    assert_exact(got_litert, ik.rsqrt(q, *qi, *qo, runtime=ik.LITERT))
    assert_exact(got_tflm, ik.rsqrt(q, *qi, *qo, runtime=ik.TFLM))
    assert np.count_nonzero(got_litert != got_tflm) == 1


# --- CONV_2D / DEPTHWISE_CONV_2D ------------------------------------------------------------------

CONVS = {  # name: (input shape, OIHW weight shape, stride, SAME?)
    "pointwise": (X, (24, 24, 1, 1), 1, False),
    "stem": ((1, 128, 44, 1), (24, 1, 5, 5), 2, True),
    "stem_valid": ((1, 132, 48, 1), (24, 1, 5, 5), 2, False),
    "depthwise_3x1": (X, (24, 1, 3, 1), 1, True),
    "depthwise_1x3": (X, (24, 1, 1, 3), 1, True),
}


def conv_case(name: str, seed: int, relu: bool):
    rng = rng_for("conv", name, seed, relu)
    x_shape, w_shape, stride, same = CONVS[name]
    x = random_int8(rng, x_shape)
    qx = random_qparams(rng) if seed != 2 else (random_qparams(rng)[0], -128)
    w_oihw = rng.integers(-127, 128, w_shape).astype(np.int8)
    w_scales = (10 ** rng.uniform(-3, -1.5, w_shape[0])).astype(np.float32)
    grid = ik.float32_scale(qx[0]) * w_scales.astype(np.float64)
    bias = rng.integers(-3000, 3000, w_shape[0]).astype(np.int64)
    depthwise = name.startswith("depthwise")
    w = w_oihw.transpose(1, 2, 3, 0) if depthwise else w_oihw.transpose(0, 2, 3, 1)  # TFLite's layouts
    padding = "SAME" if same else "VALID"
    acc = ik.conv_accumulator(x, qx[1], w, bias, stride, padding, depthwise=depthwise)
    qo = fitted_qparams(rng, acc * (float(np.float32(qx[0])) * w_scales.astype(np.float64)))
    g = FlatGraph()
    xt = g.activation("x", x.shape, "INT8", quant(qx))
    # tflite_fp32.conv rounds bias / (s_in * s_w) back to these integers (bias_grid.int32_bias)
    out = tg.conv(
        g,
        xt,
        w_oihw.astype(np.float64),
        bias * grid,
        "conv",
        relu=relu,
        stride=stride,
        same=same,
        wq=(w_oihw, w_scales),
        out_quant=quant(qo),
    )
    args = (x, *qx, w, w_scales, bias, *qo, stride, padding, relu)
    want = ik.depthwise_conv2d(*args) if depthwise else ik.conv2d(*args)
    return pack(g, [xt], out), x, want, (acc, qx, w_scales, qo)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("name", list(CONVS))
def test_conv(runtime, name, relu, seed):
    model, x, want, _ = conv_case(name, seed, relu)
    assert_exact(run(runtime, model, [x]), want)


def test_runtimes_use_double_rounding(runtime):
    """The conv requantization both runtimes run is the double-rounding one: on these values the
    single-rounding build would give other outputs."""
    model, x, want, (acc, qx, w_scales, qo) = conv_case("pointwise", 0, False)
    m, s = ik.conv_multipliers(qx[0], w_scales, qo[0])
    single = ik.clamp_int8(ik.multiply_by_quantized_multiplier_single_rounding(acc, m, s) + qo[1])
    got = run(runtime, model, [x])
    assert_exact(got, want)
    assert not np.array_equal(got, single)


# --- MAX_POOL_2D / CONCATENATION ------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_max_pool(runtime, seed):
    rng = rng_for("pool", seed)
    q = random_int8(rng, X)
    g = FlatGraph()
    qt = g.activation("x", X, "INT8", quant(random_qparams(rng)))
    out = tg.max_pool(g, qt, "pool")
    assert_exact(run(runtime, pack(g, [qt], out), [q]), ik.max_pool_2d(q))


@pytest.mark.parametrize("seed", SEEDS)
def test_concatenation(runtime, seed):
    rng = rng_for("concat", seed)
    half = (*X[:3], X[3] // 2)
    parts = [random_int8(rng, half), random_int8(rng, half)]
    qp = random_qparams(rng)
    g = FlatGraph()
    ts = [g.activation(f"x{i}", half, "INT8", quant(qp)) for i in range(2)]
    out = tg.concat_channels(g, ts, "cat")
    got = run(runtime, pack(g, ts, out), parts)
    assert_exact(got, ik.concatenation(parts, axis=3, quants=[qp, qp], out_quant=qp))
    with pytest.raises(ValueError):
        ik.concatenation(parts, axis=3, quants=[qp, (qp[0] * 2, qp[1])], out_quant=qp)


# --- int16 (the first norm's statistics) ----------------------------------------------------------


def pot_scale(rng) -> float:
    return float(2.0 ** rng.integers(-16, -4))


def int16_scale(rng, pot: bool) -> float:
    """A power of two (the scales integer_norm gives every int16 point), or any float32 one."""
    return pot_scale(rng) if pot else float(np.float32(10 ** rng.uniform(-5, -2)))


def random_int16(rng, shape, hi: int = 32767) -> np.ndarray:
    return rng.integers(-hi, hi + 1, shape).astype(np.int16)


def int16_tensor(g: FlatGraph, name: str, shape, scale: float):
    return g.activation(name, shape, "INT16", Quant.per_tensor(scale, 0))


@pytest.mark.parametrize("pot", [True, False], ids=["pot", "any"])
@pytest.mark.parametrize("shapes", BROADCASTS[:4] + [((1, 64, 1, 1), (1, 64, 1, 1))], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("op", ["ADD", "SUB", "MUL"])
def test_binary_int16(runtime, op, shapes, pot):
    """int16 ADD/SUB (lifted by 2^15, LiteRT's general path) and MUL, zero points 0. With
    power-of-two scales (what integer_norm uses) MUL's multiplier is exact, so LiteRT's float32
    derivation and TFLM's double one agree; with any scales MUL is checked in LiteRT only."""
    if op == "MUL" and not pot and runtime == ik.TFLM:
        pytest.skip("MUL's multiplier differs between the runtimes for general scales (test_runtimes_disagree_on_mul)")
    rng = rng_for("int16", op, shapes, pot)
    a, b = (
        random_int16(rng, shapes[0], 181 if op == "MUL" else 16000),
        random_int16(rng, shapes[1], 181 if op == "MUL" else 16000),
    )
    sa, sb, so = (int16_scale(rng, pot) for _ in range(3))
    if op == "MUL":
        so = sa * sb * 4 if pot else so
    g = FlatGraph()
    at, bt = int16_tensor(g, "a", a.shape, sa), int16_tensor(g, "b", b.shape, sb)
    out = tg.binary(g, op, at, bt, "out", quant=Quant.per_tensor(so, 0))
    fn = {"ADD": ik.add, "SUB": ik.sub}.get(op)
    want = fn(a, sa, 0, b, sb, 0, so, 0, bits=16) if fn else ik.mul(a, sa, 0, b, sb, 0, so, 0, runtime=runtime, bits=16)
    assert_exact(run(runtime, pack(g, [at, bt], out), [a, b]), want)


@pytest.mark.parametrize("pot", [True, False], ids=["pot", "any"])
def test_mean_int16(runtime, pot):
    rng = rng_for("mean16", pot)
    q = random_int16(rng, X)
    si, so = int16_scale(rng, pot), int16_scale(rng, pot)
    g = FlatGraph()
    qt = int16_tensor(g, "x", X, si)
    out = tg.mean(g, qt, [2, 3], "mean", quant=Quant.per_tensor(so, 0))
    assert_exact(run(runtime, pack(g, [qt], out), [q]), ik.mean(q, si, 0, so, 0, [2, 3], bits=16))


@pytest.mark.parametrize("direction", ["8to16", "16to8"])
def test_quantize_int8_int16(runtime, direction):
    rng = rng_for("q16", direction)
    s8, zp8 = random_qparams(rng)
    s16 = float(2.0 ** np.floor(np.log2(s8 * 255 / 32767)))  # a power of two that holds the int8 range
    g = FlatGraph()
    if direction == "8to16":
        q = random_int8(rng, X)
        qt, out = g.activation("q", X, "INT8", Quant.per_tensor(s8, zp8)), int16_tensor(g, "r", X, s16)
        want = ik.quantize_from_int8(q, s8, zp8, s16, 0, bits=16)
    else:
        q = random_int16(rng, X)
        qt, out = int16_tensor(g, "q", X, s16), g.activation("r", X, "INT8", Quant.per_tensor(s8, zp8))
        want = ik.quantize_from_int8(q, s16, 0, s8, zp8)
    g.op("QUANTIZE", [qt], [out])
    assert_exact(run(runtime, pack(g, [qt], out), [q]), want)
