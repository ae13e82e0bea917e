"""The INT8 QDQ ONNX writer: an Int8Model (int8_graph.py, the fake-quant twin described once)
op for op as QuantizeLinear / DequantizeLinear around float ops, one writer function per op type.

Every conv reads uint8 and writes int8, the same values on the same grids (an int8 point (s, z)
is stored as (s, z + 128) in uint8). Two runtimes set that: OpenVINO's CPU plugin in its default
precision (bf16 where the CPU has it) compiles no int8 convolution of signed activations with a
nonzero zero point; onnxruntime fuses DQ -> Conv -> Q into an integer QLinearConv only when input
and output share a type, and on x86 without VNNI those u8s8 kernels saturate (docs/export.md).

Why each node or step is built the way it is, with the measurements that decided it:
docs/export.md (figures go stale in code, so they live there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper

from tfsep_edge.core.config import DEFAULT_FRONTEND, FrontendConfig
from tfsep_edge.export.int8_graph import (
    Add,
    BCBlock,
    Block,
    Classifier,
    Conv,
    FloatConv,
    FloatNorm,
    Int8Conv,
    Int8Model,
    IntegerNorm,
    MaxPool,
    QParams,
    QuantizeInput,
    describe,
    is_integer,
)
from tfsep_edge.export.onnx_fp32 import (
    OUTPUT,
    GraphBuilder,
    add_adaresnorm,
    add_input,
    finish_model,
    spell_out,
)
from tfsep_edge.model.shuffle import shuffle_sources
from tfsep_edge.quant.bias_grid import bias_grid, on_grid


@dataclass(frozen=True)
class QTensor:
    """A quantized tensor in the graph and the (scale, zero point) that give its real values."""

    name: str
    scale: float
    zero_point: int  # the model's zero point, whatever type the graph stores the tensor as
    stored: type = np.int8  # the model's activation type, or np.uint8 (a conv input)


def stored_zero_point(g: GraphBuilder, zero_point: int, stored: type) -> np.ndarray:
    """A zero point as the graph stores it: an int8 model's value + 128 where stored as uint8."""
    shift = 128 if stored == np.uint8 and g.act_dtype == np.int8 else 0
    return np.array(zero_point + shift, stored)


def quantize(
    g: GraphBuilder, x: str, scale: float | None, zero_point: int | None, base: str, stored: type | None = None
) -> QTensor | str:
    """Q(x) at the model's (scale, zero_point), stored as `stored` (default: the model's type)."""
    if scale is None:  # no quantization point here: the tensor stays float
        return x
    stored = g.act_dtype if stored is None else stored
    s = g.const(f"{base}.scale", np.array(scale, np.float32))
    z = g.const(f"{base}.zero_point", stored_zero_point(g, zero_point, stored))
    return QTensor(g.op("QuantizeLinear", [x, s, z], f"{base}.q"), scale, zero_point, stored)


def dequantize(g: GraphBuilder, t: QTensor | str, base: str) -> str:
    """One DequantizeLinear per quantized tensor, shared by its consumers (fewer nodes to run;
    onnxruntime's EnsureUniqueDQForNodeUnit gives each int8-fusable consumer its own copy)."""
    if isinstance(t, str):  # already float
        return t
    cache = g.__dict__.setdefault("dq_of", {})
    if t.name not in cache:
        s = g.const(f"{base}.dq_scale", np.array(t.scale, np.float32))
        z = g.const(f"{base}.dq_zero_point", stored_zero_point(g, t.zero_point, t.stored))
        cache[t.name] = g.op("DequantizeLinear", [t.name, s, z], f"{base}.dq")
    return cache[t.name]


def moved(g: GraphBuilder, op: str, t: QTensor, extra: list[str], bases: list[str], **attrs) -> list[QTensor]:
    """Channel movement (Split, Gather) of a quantized tensor: the op on the integers, then an
    identity requantization DQ -> Q(uint8) on the same grid before the consumers' DQ (the paths'
    convs read it, and the residual add, for which any type will do).

    OpenVINO's int8 pipeline (CPU plugin, on CPUs with VNNI) compiles no conv whose quantized
    input arrives through a Split or Gather ("No suitable implementations"): the conv's DQ must
    follow a Q.
    """
    outs = g.op_multi(op, [t.name, *extra], [f"{b}.moved" for b in bases], **attrs)
    return [as_uint8(g, QTensor(o, t.scale, t.zero_point, t.stored), b) for o, b in zip(outs, bases, strict=True)]


def as_uint8(g: GraphBuilder, t: QTensor, base: str) -> QTensor:
    """The same values on the same grid, stored as uint8: DQ -> Q(uint8)."""
    return quantize(g, dequantize(g, t, f"{base}.requant"), t.scale, t.zero_point, base, np.uint8)


def conv_input(g: GraphBuilder, x: QTensor | str, base: str) -> QTensor | str:
    """A conv's quantized input as uint8 (requantized where its producer stored int8): OpenVINO's
    default precision has no convolution for signed activations with a nonzero zero point."""
    if not isinstance(x, QTensor) or x.stored == np.uint8:
        return x
    return as_uint8(g, x, f"{base}.in_uint8")


def hold_int8(g: GraphBuilder, t: QTensor | str, channels: int, base: str) -> QTensor | str:
    """An identity channel Gather after a conv's int8 output Q, before the DQs that read it.

    onnxruntime on x86 rewrites an int8 Q followed only by DQs as uint8 (QDQS8ToU8Transformer);
    the conv would then read and write uint8 and be fused into a u8s8 QLinearConv, whose AVX2
    kernel (no VNNI) saturates 16-bit pair sums with full-range activations (`make test-arm` runs
    it under `qemu-x86_64 -cpu Haswell` with the default session options; docs/export.md). The
    Gather (a copy of a small tensor) keeps the output int8, so input (uint8) and output differ in
    type and onnxruntime runs the conv in float on exactly dequantized values.
    """
    if not isinstance(t, QTensor):
        return t
    idx = g.const(f"const.identity_{channels}", np.arange(channels, dtype=np.int64))
    return QTensor(g.op("Gather", [t.name, idx], f"{base}.hold", axis=1), t.scale, t.zero_point, t.stored)


def conv_outputs(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def add_qconv(
    g: GraphBuilder, x: QTensor | str, op: Conv, base: str, rows: list[int] | None = None, hold: bool = True
) -> QTensor | str:
    """A conv op: DQ(uint8 x) -> Conv(DQ(int8 weight)) [-> Relu] -> Q(int8 out) [-> hold_int8, unless
    `hold` is False: an output whose first consumer is not a DQ]. `rows` permutes output channels."""
    if rows is not None:
        op = op.rows(rows)
    kh, kw = op.weight.shape[2:]
    attrs = {
        "kernel_shape": [kh, kw],
        "strides": [op.stride, op.stride],
        "pads": [op.padding[0], op.padding[1], op.padding[0], op.padding[1]],
        "group": op.groups,
    }
    if isinstance(op, Int8Conv):
        wq = g.const(f"{base}.weight_int8", op.weight)
        ws = g.const(f"{base}.weight_scale", op.w_scales)
        wz = g.const(f"{base}.weight_zero_point", np.zeros(len(op.w_scales), np.int8))
        weight = g.op("DequantizeLinear", [wq, ws, wz], f"{base}.weight", axis=0)
    else:
        weight = g.const(f"{base}.weight", op.weight.astype(np.float32))
    inputs = [dequantize(g, conv_input(g, x, base), f"{base}.in"), weight]
    if isinstance(op, Int8Conv) and op.bias is not None:
        # int32 bias at s_in * s_w, as int8 kernels add it (the twin rounds its bias the same way).
        bq, bscale = op.bias_int32()
        bs = g.const(f"{base}.bias_scale", bscale)
        bz = g.const(f"{base}.bias_zero_point", np.zeros(len(bq), np.int32))
        inputs.append(g.op("DequantizeLinear", [g.const(f"{base}.bias_int32", bq), bs, bz], f"{base}.bias", axis=0))
    elif op.bias is not None:
        inputs.append(g.const(f"{base}.bias", op.bias.astype(np.float32)))
    y = g.op("Conv", inputs, base, **attrs)
    if op.relu:
        y = g.op("Relu", [y], f"{base}.relu")
    out = quantize(g, y, *_point(op.out), f"{base}.out")
    return hold_int8(g, out, op.weight.shape[0], f"{base}.out") if hold else out


def _point(q) -> tuple[float | None, int | None]:
    return (None, None) if q is None else (q.scale, q.zero_point)


def add_qsum(g: GraphBuilder, a: QTensor, b: str, op: Add) -> QTensor | str:
    """DQ(a) + b (float) [-> Relu] -> Q(op.out)."""
    s = g.op("Add", [dequantize(g, a, f"{op.name}.a"), b], op.name)
    if op.relu:
        s = g.op("Relu", [s], f"{op.name}.relu")
    return quantize(g, s, *_point(op.out), f"{op.name}.out")


def add_qblock(g: GraphBuilder, x: QTensor, block: Block, freqs: int, frames: int) -> QTensor:
    """A quantized TF-SepConv block; output in natural channel order."""
    base, half = block.name, block.half
    sources = shuffle_sources(2 * half, block.groups)
    if block.transition is not None:  # its rows in shuffled order: a Split hands each path its half
        t = add_qconv(g, x, block.transition, f"{base}.trans", rows=sources, hold=False)  # read by a Split
        sizes = g.const(f"{base}.split", np.array([half, half], np.int64))
        x1, x2 = moved(g, "Split", t, [sizes], [f"{base}.x1", f"{base}.x2"], axis=1)
    else:
        idx = np.array(sources, np.int64)
        (x1,) = moved(g, "Gather", x, [g.const(f"{base}.idx1", idx[:half])], [f"{base}.x1"], axis=1)
        (x2,) = moved(g, "Gather", x, [g.const(f"{base}.idx2", idx[half:])], [f"{base}.x2"], axis=1)
    halves = []
    for xi, branch in zip((x1, x2), block.branches, strict=True):
        name, mean = branch.path, branch.mean
        d = add_qconv(g, xi, branch.dw, f"{base}.{name}.dw")
        m = g.reduce("ReduceMean", dequantize(g, d, f"{base}.{name}.mean_in"), [mean.axis], f"{base}.{name}.mean")
        mq = quantize(g, m, *_point(mean.out), f"{base}.{name}.mean_out", np.uint8)  # read by the pw conv only
        p = add_qconv(g, mq, branch.pw, f"{base}.{name}.pw")
        p_float = dequantize(g, p, f"{base}.{name}.res_p")
        p_full = spell_out(g, p_float, mean.axis, half, freqs, frames, f"{base}.{name}")
        halves.append(add_qsum(g, xi, p_full, branch.add))
    out_s, out_z = _point(block.concat.out)
    if all(isinstance(h, QTensor) and (h.scale, h.zero_point) == (out_s, out_z) for h in halves):
        # The residual adds share the concat's qparams (quantize's default): Q(DQ(q)) == q on
        # one grid, so the concat only copies integers, as PyTorch's quantized cat does.
        return QTensor(g.op("Concat", [h.name for h in halves], f"{base}.out", axis=1), out_s, out_z, halves[0].stored)
    cat = g.op("Concat", [dequantize(g, h, f"{base}.cat_in{i}") for i, h in enumerate(halves)], f"{base}.cat", axis=1)
    return quantize(g, cat, out_s, out_z, f"{base}.out")


def add_bc_block(g: GraphBuilder, x: QTensor, blk: BCBlock, freqs: int, frames: int) -> QTensor | str:
    """BC-ResNet's broadcast block (int8_graph.BCBlock): the convs as add_qconv, the mean and the
    SiLU between DQ and Q (the SiLU's output read by the pointwise conv only, stored uint8), the
    pointwise output spelled out over frequency before the add."""
    identity = x
    if blk.transition is not None:
        x = add_qconv(g, x, blk.transition, blk.transition.name)
    aux = add_qconv(g, x, blk.dw, blk.dw.name)
    m = g.reduce("ReduceMean", dequantize(g, aux, f"{blk.mean.name}.in"), [blk.mean.axis], blk.mean.name)
    mq = quantize(g, m, *_point(blk.mean.out), f"{blk.mean.name}.out", np.uint8)  # read by the conv only
    t = dequantize(g, add_qconv(g, mq, blk.temporal, blk.temporal.name), f"{blk.swish.name}.in")
    sw = g.op("Mul", [t, g.op("Sigmoid", [t], f"{blk.swish.name}.sigmoid")], blk.swish.name)
    swq = quantize(g, sw, *_point(blk.swish.out), f"{blk.swish.name}.out", np.uint8)
    p = dequantize(g, add_qconv(g, swq, blk.pw, blk.pw.name), f"{blk.pw.name}.res")
    channels = blk.pw.weight.shape[0]
    p_full = spell_out(g, p, blk.mean.axis, channels, freqs, frames, blk.name)
    s = aux if blk.residual is None else add_qsum(g, identity, dequantize(g, aux, f"{blk.name}.aux"), blk.residual)
    return add_qsum(g, s, p_full, blk.out)


def add_float_norm(g: GraphBuilder, x: QTensor | str, op: FloatNorm, freqs: int, frames: int) -> QTensor | str:
    """AdaResNorm in float between DQ and Q (and the max-pool after it, before the Q)."""
    base = op.name
    y = add_adaresnorm(g, dequantize(g, x, f"{base}.in"), op, list(range(len(op.rho))), freqs, frames, base)
    if op.pool is not None:  # PyTorch pools the quantized tensor; Q is monotonic, so Q(max(y)) == max(Q(y))
        y = g.op("MaxPool", [y], f"{op.pool.name}.pool", kernel_shape=[2, 2], strides=[2, 2])
    return quantize(g, y, *_point(op.out), f"{base}.out")


def rsqrt_table(g: GraphBuilder, var: QTensor, out: QParams, base: str) -> QTensor:
    """int8 RSQRT as TFLite computes it (a fixed-point inverse square root, not 1/sqrt rounded):
    a Gather from its 256 outputs (integer_kernels.rsqrt), indexed by the int8 input + 128."""
    from tfsep_edge.quant import integer_kernels as K

    table = K.rsqrt(np.arange(-128, 128), var.scale, var.zero_point, out.scale, out.zero_point).astype(np.int8)
    idx = g.op("Cast", [var.name], f"{base}.idx", to=onnx.TensorProto.INT32)
    idx = g.op("Add", [idx, g.const(f"{base}.offset", np.array(128, np.int32))], f"{base}.row")
    return QTensor(g.op("Gather", [g.const(f"{base}.table", table), idx], base, axis=0), out.scale, out.zero_point)


def add_integer_norm(g: GraphBuilder, x: QTensor, op: IntegerNorm) -> QTensor:
    """AdaResNorm as quant/integer_norm's ops, each DQ -> float op -> Q at its point (the
    statistics over C and T of NCHW x; the 1x1 convs from the statistics to the channels as a Mul
    and an Add by their dequantized weight and bias), then the
    max-pool after it on the dequantized output, requantized to the same point (Q is monotonic)."""
    if op.wide is not None:
        return add_integer_norm_wide(g, x, op)
    base = op.name

    def point(value: str, key: str) -> QTensor:
        q = op.out if key == "out" else op.points[key]
        return quantize(g, value, q.scale, q.zero_point, f"{base}.{key}")

    def value(t: QTensor) -> str:
        return dequantize(g, t, t.name)

    def channel_conv(stat: QTensor, conv, key: str) -> QTensor:
        """integer_norm.ChannelConv on a (B, 1, F, 1) statistic: w * stat + bias, the weight and
        the bias dequantized from their integers (the bias on its int32 grid), (1, C, 1, 1)."""
        w = (conv.weight.astype(np.float64) * conv.w_scales.astype(np.float64)).astype(np.float32)
        bias = on_grid(conv.bias, bias_grid(conv.in_scale, conv.w_scales))
        wt = g.const(f"{base}.{key}_weight", w.reshape(1, -1, 1, 1))
        bt = g.const(f"{base}.{key}_bias", bias.reshape(1, -1, 1, 1))
        product = g.op("Mul", [value(stat), wt], f"{base}.{key}_w")
        return point(g.op("Add", [product, bt], f"{base}.{key}_f"), key)

    xf = value(x)
    mu = point(g.reduce("ReduceMean", xf, [1, 3], f"{base}.mean_f"), "mean")
    diff = g.op("Sub", [xf, value(mu)], f"{base}.diff_f")
    sq = point(g.op("Mul", [diff, diff], f"{base}.sq_f"), "sq")
    var = point(g.reduce("ReduceMean", value(sq), [1, 3], f"{base}.var_f"), "var")
    r = rsqrt_table(g, var, op.points["rsqrt"], f"{base}.rsqrt")
    scale = channel_conv(r, op.scale_conv, "scale")
    offset = channel_conv(mu, op.offset_conv, "offset")
    d = point(g.op("Sub", [xf, value(mu)], f"{base}.centered_f"), "centered")
    prod = point(g.op("Mul", [value(d), value(scale)], f"{base}.product_f"), "product")
    y = point(g.op("Add", [value(prod), value(offset)], f"{base}.out_f"), "out")
    if op.pool is None:
        return y
    pooled = g.op("MaxPool", [value(y)], f"{op.pool.name}.pool", kernel_shape=[2, 2], strides=[2, 2])
    return quantize(g, pooled, y.scale, y.zero_point, f"{op.pool.name}.pool_out")


def add_integer_norm_wide(g: GraphBuilder, x: QTensor, op: IntegerNorm) -> QTensor:
    """The wide norm (quant/integer_norm.integer_norm_wide) in float ops, each int16 point as
    x -> round(x / s) clipped to int16, times s (its scales are powers of two: exact in float32),
    the int8 points as Q/DQ, RSQRT as rsqrt_table; statistics over C and T of NCHW x."""
    base, w = op.name, op.wide

    def int16_point(value: str, scale: float, key: str) -> str:
        steps = g.op("Mul", [value, g.const(f"{base}.{key}.inv", np.array(1.0 / scale, np.float32))], f"{base}.{key}_s")
        lo, hi = (g.const(f"{base}.{key}.{n}", np.array(v, np.float32)) for n, v in (("lo", -32768), ("hi", 32767)))
        q = g.op("Clip", [g.op("Round", [steps], f"{base}.{key}_r"), lo, hi], f"{base}.{key}_q")
        return g.op("Mul", [q, g.const(f"{base}.{key}.scale", np.array(scale, np.float32))], f"{base}.{key}")

    def per_channel(k, key: str) -> str:
        return g.const(f"{base}.{key}", (k.q.astype(np.float64) * k.scale).astype(np.float32).reshape(1, -1, 1, 1))

    def binary(code: str, a: str, b: str, scale: float, key: str) -> str:
        return int16_point(g.op(code, [a, b], f"{base}.{key}_f"), scale, key)

    x16 = int16_point(dequantize(g, x, x.name), w.x, "x16")
    mu = int16_point(g.reduce("ReduceMean", x16, [1, 3], f"{base}.mean_f"), w.mean, "mean16")
    d = binary("Sub", x16, mu, w.centered, "centered16")
    sq = binary("Mul", d, d, w.sq, "sq16")
    var = int16_point(g.reduce("ReduceMean", sq, [1, 3], f"{base}.var_f"), w.var, "var16")
    var8 = quantize(g, var, op.points["var"].scale, op.points["var"].zero_point, f"{base}.var")
    r8 = rsqrt_table(g, var8, op.points["rsqrt"], f"{base}.rsqrt")
    r = int16_point(dequantize(g, r8, r8.name), w.r, "r16")
    for i, st in enumerate(w.newton):
        u = binary("Mul", binary("Mul", var, r, st.w, f"newton{i}.w"), r, st.u, f"newton{i}.u")
        three = g.const(f"{base}.newton{i}.three", np.array(st.three.q[0] * st.three.scale, np.float32))
        r = binary("Mul", r, binary("Sub", three, u, st.v, f"newton{i}.v"), st.r, f"newton{i}.r")
    gc = per_channel(w.g, "g")
    scale = binary("Add", binary("Mul", r, per_channel(w.c, "c"), w.scale_mul, "cr"), gc, w.scale, "scale16")
    gmu = binary("Mul", mu, gc, w.offset_mul, "gmu")
    offset = binary("Add", gmu, per_channel(w.beta, "beta"), w.offset, "offset16")
    y = binary("Add", binary("Mul", d, scale, w.product, "product16"), offset, w.out, "out16")
    if op.pool is not None:  # Q is monotonic: Q(max(y)) == max(Q(y))
        y = g.op("MaxPool", [y], f"{op.pool.name}.pool", kernel_shape=[2, 2], strides=[2, 2])
    return quantize(g, y, op.out.scale, op.out.zero_point, f"{base}.out")


def add_max_pool(g: GraphBuilder, x: QTensor | str, op: MaxPool) -> QTensor | str:
    name = x.name if isinstance(x, QTensor) else x
    pooled = g.op("MaxPool", [name], f"{op.name}.pool", kernel_shape=[2, 2], strides=[2, 2])
    return QTensor(pooled, x.scale, x.zero_point, x.stored) if isinstance(x, QTensor) else pooled


def add_classifier(g: GraphBuilder, x: QTensor | str, op: Classifier, int8_output: bool = False) -> str:
    """The classifier conv, dequantized, global mean -> logits (an integer model's at the int8
    global mean's point: dequantized, or the int8 values themselves with `int8_output`)."""
    c = add_qconv(g, x, op.conv, "classifier")
    pooled = g.op("GlobalAveragePool", [dequantize(g, c, "classifier.out")], "pool")
    if op.pool is not None:
        q = quantize(g, pooled, op.pool.scale, op.pool.zero_point, "pool", np.int8)
        pooled = q.name if int8_output else dequantize(g, q, "pool.out")
    return g.op("Flatten", [pooled], OUTPUT, axis=1)


def add_qmodel(g: GraphBuilder, x: str, model: Int8Model, n_mels: int, frames: int, int8_output: bool = False) -> str:
    """The Int8Model's ops on log-mel `x` -> logits, tracking (frequency, time) for the broadcasts."""
    q: QTensor | str = x
    f_len, t_len = n_mels, frames
    for op in model.ops:
        if isinstance(op, QuantizeInput):  # read by the stem conv only
            q = quantize(g, q, *_point(op.out), op.name, np.uint8)
        elif isinstance(op, (Int8Conv, FloatConv)):  # the stem
            q = add_qconv(g, q, op, op.name)
            kh, kw = op.weight.shape[2:]
            f_len = conv_outputs(f_len, kh, op.stride, op.padding[0])
            t_len = conv_outputs(t_len, kw, op.stride, op.padding[1])
        elif isinstance(op, FloatNorm | IntegerNorm):
            q = add_float_norm(g, q, op, f_len, t_len) if isinstance(op, FloatNorm) else add_integer_norm(g, q, op)
            if op.pool is not None:
                f_len, t_len = f_len // 2, t_len // 2
        elif isinstance(op, MaxPool):
            q = add_max_pool(g, q, op)
            f_len, t_len = f_len // 2, t_len // 2
        elif isinstance(op, Block):
            q = add_qblock(g, q, op, f_len, t_len)
        elif isinstance(op, BCBlock):
            q = add_bc_block(g, q, op, f_len, t_len)
        elif isinstance(op, Classifier):
            return add_classifier(g, q, op, int8_output)
        else:
            raise TypeError(f"no ONNX writer for {type(op).__name__}")
    raise ValueError("the Int8Model ends before its classifier")


def write_int8(
    model: Int8Model, frontend: bool, opset: int, cfg: FrontendConfig = DEFAULT_FRONTEND, int8_io: bool = False
) -> onnx.ModelProto:
    """The QDQ graph of an Int8Model, taking log-mel or waveform input; with `int8_io` (an integer
    model, log-mel input) the input is the int8 log-mel at the input's point and the output the
    int8 logits at the global mean's point (META_IO holds both)."""
    if int8_io and (frontend or not is_integer(model)):
        raise ValueError("int8 input and output: an integer model's log-mel graph only")
    g = GraphBuilder(opset)
    g.act_dtype = np.int8 if model.act_dtype == "int8" else np.uint8
    graph_input, x = add_input(g, frontend, cfg)
    if int8_io:  # the graph dequantizes its int8 input; the stem's Q then gives back the same integers
        shape = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
        graph_input = helper.make_tensor_value_info(x, TensorProto.INT8, shape)
        x = dequantize(g, QTensor(x, *_point(model.ops[0].out), np.int8), "input")
    add_qmodel(g, x, model, cfg.n_mels, cfg.n_frames, int8_io)
    out = finish_model(g, graph_input, model.num_classes)
    if int8_io:
        out.graph.output[0].type.tensor_type.elem_type = TensorProto.INT8
    return out


def build_int8(
    fq, frontend: bool, opset: int, cfg: FrontendConfig = DEFAULT_FRONTEND, int8_io: bool = False
) -> onnx.ModelProto:
    """QDQ graph of the fake-quant twin `fq` (quantize.QuantizedArtifact.fake_quant_model())."""
    return write_int8(describe(fq), frontend, opset, cfg, int8_io)
