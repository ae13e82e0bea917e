"""The INT8 TFLite writer: an Int8Model (int8_graph.py, the fake-quant twin described once)
op for op as int8 TFLite tensors and ops, one writer function per op type: the same model as
the PyTorch INT8 model and the INT8 ONNX.

Every quantization point becomes a TFLite int8 tensor with that point's scale and zero point:
each int8 conv takes and gives int8 tensors, its weight the twin's GPTQ-rounded int8 weight
with PyTorch's per-channel scales (zero point 0), its bias int32 at scale s_in * s_w; the
residual ADDs and the means are int8 ops with their points' qparams; the float islands (the
stem by default, AdaResNorm, anything --max-drop left in float) run in float between DEQUANTIZE
and QUANTIZE, written with tflite_fp32's float helpers. As in the INT8 ONNX: MaxPool after a
float island runs on the float output before its QUANTIZE (Q is monotonic, so the same values),
the block's concat copies int8 values when both residual adds share its qparams (quantize's
default) and requantizes through float otherwise, and the classifier's output is dequantized
before the global mean (PyTorch pools in float).

Why written directly rather than a PT2E graph converted by litert-torch: the qparams are then
exactly the twin's by construction (no converter re-deriving or folding them), the layout is
NHWC as in the FP32 graph (the shuffle folded into the transition convs; elsewhere two
permutation convs, or two GATHERs in an integer model, since the FP32 graph's whole-tensor block
would merge quantization points the twin keeps apart), an integer model's widest part runs in
bands of rows (chunked_front), and the export install needs no converter. Where this differs from PyTorch:
TFLite/XNNPACK requantize with their own rounding (fixed-point or float multipliers), so a value
on a rounding edge can land one step away; export validation bounds that in steps of the output
scale.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfsep_edge.core.config import DEFAULT_FRONTEND, FrontendConfig
from tfsep_edge.export import tflite_fp32 as tg
from tfsep_edge.export.int8_graph import (
    Add,
    BCBlock,
    Block,
    Classifier,
    Concat,
    Conv,
    FloatConv,
    FloatNorm,
    FloatSiLU,
    Int8Conv,
    Int8Model,
    IntegerNorm,
    MaxPool,
    Mean,
    QParams,
    QuantizeInput,
    describe,
    is_integer,
)
from tfsep_edge.export.tflite_flatbuffer import FlatGraph, Quant, Tensor

NHWC_AXIS = {2: 1, 3: 2}  # an NCHW axis of the description -> the NHWC axis of the graph


def _quant(q: QParams | None) -> Quant | None:
    return None if q is None else Quant.per_tensor(q.scale, q.zero_point)


def quantize(g: FlatGraph, x: Tensor, q: Quant | None, name: str) -> Tensor:
    """float -> int8 at `q` (None: no quantization point here, stays float)."""
    if q is None:
        return x
    if x.dtype == "INT8":  # requantize
        x = dequantize(g, x, f"{name}.dq")
    out = g.activation(name, x.shape, "INT8", q)
    g.op("QUANTIZE", [x], [out])
    return out


def dequantize(g: FlatGraph, x: Tensor, name: str) -> Tensor:
    if x.dtype != "INT8":
        return x
    out = g.activation(name, x.shape)
    g.op("DEQUANTIZE", [x], [out])
    return out


def qconv(g: FlatGraph, x: Tensor, op: Conv, name: str, rows=None) -> Tensor:
    """A conv op: int8 conv (int8 in and out) or a float island (float conv, then QUANTIZE).
    Padding: a strided conv with padding gets PyTorch's symmetric padding as a PAD (TFLite's
    SAME pads (1, 2) at stride 2), a stride-1 one is SAME, an unpadded one VALID."""
    if rows is not None:
        op = op.rows(rows)
    same = op.stride == 1 and any(op.padding)
    if op.stride > 1 and any(op.padding):
        ph, pw = op.padding
        x = tg.pad(g, x, [(0, 0), (ph, ph), (pw, pw), (0, 0)], f"{name}.pad")  # int8 PAD fills with the zero point
    if isinstance(op, FloatConv):
        y = tg.conv(g, dequantize(g, x, f"{name}.in"), op.weight, op.bias, name, op.relu, op.stride, same)
        return quantize(g, y, _quant(op.out), f"{name}.out")
    # tg.conv rounds the float bias onto s_in * s_w itself: the integers of op.bias_int32()
    wq = (op.weight, op.w_scales.astype(np.float64))
    w = op.float_weight()
    return tg.conv(g, x, w, op.bias, name, relu=op.relu, stride=op.stride, same=same, wq=wq, out_quant=_quant(op.out))


def qmean(g: FlatGraph, x: Tensor, op: Mean) -> Tensor:
    q, axis = _quant(op.out), NHWC_AXIS[op.axis]
    if q is None or x.dtype != "INT8":
        return quantize(g, tg.mean(g, dequantize(g, x, f"{op.name}.in"), [axis], op.name), q, f"{op.name}.out")
    return tg.mean(g, x, [axis], op.name, quant=q)


def qadd(g: FlatGraph, a: Tensor, b: Tensor, op: Add) -> Tensor:
    """An int8 ADD (fused ReLU if op.relu: the int8 output clamped at the zero point, which is
    Q(relu(a + b))), or in float between DEQUANTIZEs and a QUANTIZE."""
    q, name = _quant(op.out), op.name
    if a.dtype == b.dtype == "INT8" and q is not None:
        return tg.binary(g, "ADD", a, b, name, quant=q, relu=op.relu)
    s = tg.binary(g, "ADD", dequantize(g, a, f"{name}.a"), dequantize(g, b, f"{name}.b"), name, relu=op.relu)
    return quantize(g, s, q, f"{name}.out")


def float_silu(g: FlatGraph, x: Tensor, op: FloatSiLU) -> Tensor:
    """x * LOGISTIC(x) in float between DEQUANTIZE and QUANTIZE."""
    xf = dequantize(g, x, f"{op.name}.in")
    y = tg.binary(g, "MUL", xf, tg.unary(g, "LOGISTIC", xf, f"{op.name}.sigmoid"), op.name)
    return quantize(g, y, _quant(op.out), f"{op.name}.out")


def bc_block(g: FlatGraph, x: Tensor, blk: BCBlock) -> Tensor:
    """BC-ResNet's broadcast block (int8_graph.BCBlock): int8 convs, MEAN and ADDs (the last one
    broadcasting the pointwise output over frequency, its ReLU fused), the SiLU in float."""
    identity = x
    if blk.transition is not None:
        x = qconv(g, x, blk.transition, blk.transition.name)
    aux = qconv(g, x, blk.dw, blk.dw.name)
    t = qconv(g, qmean(g, aux, blk.mean), blk.temporal, blk.temporal.name)
    p = qconv(g, float_silu(g, t, blk.swish), blk.pw, blk.pw.name)
    s = aux if blk.residual is None else qadd(g, identity, aux, blk.residual)
    return qadd(g, s, p, blk.out)


def qconcat(g: FlatGraph, parts: list[Tensor], op: Concat) -> Tensor:
    q = _quant(op.out)
    if q is not None and all(p.quant == q for p in parts):  # int8 copies on one grid, as PyTorch's quantized cat
        return tg.concat_channels(g, parts, f"{op.name}.out", quant=q)
    cat = tg.concat_channels(g, [dequantize(g, p, f"{p.index}.dq") for p in parts], f"{op.name}.cat")
    return quantize(g, cat, q, f"{op.name}.out")


def shuffle_halves(g: FlatGraph, x: Tensor, groups: int, name: str) -> list[Tensor]:
    """The shuffle and split of an int8 tensor as two 1x1 int8 convs whose weights are rows of
    the permutation matrix: weight 1 at scale 1, no bias, output at the input's scale and zero
    point, so each output is its input integer exactly (requantization by 1.0). XNNPACK's int8
    conv beat its TRANSPOSE of the (pixels, c/g, g) view at C=12 and C=40 and tied at C=60
    (docs/tflite.md)."""
    c = x.shape[-1]
    half = c // 2
    rows = tg.shuffle_sources(c, groups)
    perm = np.eye(c)[rows][:, :, None, None]
    halves = (perm[:half], perm[half:])
    return [
        tg.conv(g, x, p, None, f"{name}.{i}", relu=False, wq=(p.astype(np.int8), np.ones(half)), out_quant=x.quant)
        for i, p in enumerate(halves)
    ]


def gather_halves(g: FlatGraph, x: Tensor, groups: int, name: str) -> list[Tensor]:
    """The shuffle and split of an int8 tensor as two GATHERs along the channels: the same
    integers as shuffle_halves with no weights and no requantization, which is what a
    microcontroller's interpreter pays least for (XNNPACK does not run GATHER)."""
    c = x.shape[-1]
    rows = np.array(tg.shuffle_sources(c, groups), np.int32)
    outs = []
    for i, idx in enumerate((rows[: c // 2], rows[c // 2 :])):
        out = g.activation(f"{name}.{i}", (*x.shape[:-1], c // 2), x.dtype, x.quant)
        g.op("GATHER", [x, g.const(f"{name}.{i}.rows", idx)], [out], g.options("GatherOptions", axis=3))
        outs.append(out)
    return outs


def block_halves(g: FlatGraph, x: Tensor, blk: Block, gather: bool = False) -> list[Tensor]:
    """The block's shuffled halves of natural-order `x`: a transition conv written as two
    half-width convs whose rows are the shuffled halves (nothing to split); otherwise
    shuffle_halves' two permutation convs, or with `gather` gather_halves' two GATHERs."""
    c, half = 2 * blk.half, blk.half
    if blk.transition is None:
        split = gather_halves if gather else shuffle_halves
        return split(g, x, blk.groups, f"{blk.name}.shuffle")
    rows = tg.shuffle_sources(c, blk.groups)
    return [
        qconv(g, x, blk.transition, f"{blk.name}.trans{i}", rows=rows[s])
        for i, s in enumerate((slice(0, half), slice(half, c)))
    ]


def block_paths(g: FlatGraph, halves: list[Tensor], blk: Block) -> Tensor:
    """The two paths on the shuffled halves, then the concat: output in natural channel order."""
    outs = []
    for xi, branch in zip(halves, blk.branches, strict=True):
        d = qconv(g, xi, branch.dw, branch.dw.name)
        m = qmean(g, d, branch.mean)
        p = qconv(g, m, branch.pw, branch.pw.name)
        outs.append(qadd(g, xi, p, branch.add))
    return qconcat(g, outs, blk.concat)


def qblock(g: FlatGraph, x: Tensor, blk: Block, gather: bool = False) -> Tensor:
    """A block on a natural-order tensor; output in natural channel order."""
    return block_paths(g, block_halves(g, x, blk, gather), blk)


# The integer model's widest tensors are the stem's output and the first norm's (2C x F/2 x T/2,
# two live at once). The norm's statistics are per frequency row and the stem and the transition
# conv after it are local, so the .tflite runs stem, norm and transition conv on bands of rows
# and joins the narrower transition outputs: the same integers, a smaller TFLM arena
# (docs/quantization.md, "The integer .tflite in TFLite Micro's arena", has the measurements).
FRONT_BANDS = 3
# A wide first norm (int16 statistics) holds two int16 band tensors at once: more, narrower bands.
# Past 6 the per-op bookkeeping grows faster than the bands shrink (measured at C=12).
WIDE_FRONT_BANDS = 6
# A later wide norm followed by the 2x2 max-pool runs on bands of row pairs for the same reason
# (its int16 temporaries take a band's size) and joins the pooled bands: --int16-norms all.
WIDE_POOLED_BANDS = 6


def chunked_front(g: FlatGraph, x: Tensor, stem: Int8Conv, norm: IntegerNorm, blk: Block, bands: int) -> list[Tensor]:
    """Stem, first norm and the first block's transition conv on `bands` bands of output rows:
    PAD once, then per band a SLICE of the padded input rows it reads, the stem VALID, the norm,
    the two half convs; each half's bands joined along frequency (one CONCATENATION each, on the
    conv's own grid). Returns the block's shuffled halves, as block_halves would."""
    kh, stride, (ph, pw) = stem.weight.shape[2], stem.stride, stem.padding
    padded = tg.pad(g, x, [(0, 0), (ph, ph), (pw, pw), (0, 0)], f"{stem.name}.pad")
    out_rows = (padded.shape[1] - kh) // stride + 1
    valid = dataclasses.replace(stem, padding=(0, 0))
    parts: list[list[Tensor]] = [[], []]
    for i, rows in enumerate(np.array_split(np.arange(out_rows), bands)):
        first, n = int(rows[0]), len(rows)
        band = tg.slice_rows(g, padded, first * stride, (n - 1) * stride + kh, f"{stem.name}.band{i}")
        y = integer_norm(g, qconv(g, band, valid, f"{stem.name}.{i}"), norm, suffix=f".{i}")
        for part, half in zip(parts, block_halves(g, y, blk), strict=True):
            part.append(half)
    return [tg.concat(g, p, 1, f"{blk.name}.trans{k}.rows", quant=p[0].quant) for k, p in enumerate(parts)]


def banded_pooled_norm(g: FlatGraph, x: Tensor, op: IntegerNorm, bands: int = WIDE_POOLED_BANDS) -> Tensor:
    """A norm with its 2x2 max-pool on `bands` bands of row pairs: per band a SLICE of its rows,
    the norm and the pool; the pooled bands joined along frequency (the pool keeps the norm's
    output point). The statistics are per row, so the integers are the whole tensor's."""
    parts = []
    bands = max(1, min(bands, x.shape[1] // 2))  # never an empty band
    for i, pairs in enumerate(np.array_split(np.arange(x.shape[1] // 2), bands)):
        band = tg.slice_rows(g, x, 2 * int(pairs[0]), 2 * len(pairs), f"{op.name}.band{i}")
        parts.append(integer_norm(g, band, op, suffix=f".{i}"))
    return tg.concat(g, parts, 1, f"{op.pool.name}.rows", quant=parts[0].quant)


def float_norm(g: FlatGraph, x: Tensor, op: FloatNorm) -> Tensor:
    """AdaResNorm in float between DEQUANTIZE and QUANTIZE (and the max-pool after it, before the QUANTIZE)."""
    y = tg.adaresnorm(g, dequantize(g, x, f"{op.name}.in"), op, list(range(x.shape[-1])), op.name)
    if op.pool is not None:
        y = tg.max_pool(g, y, f"{op.pool.name}.pool")  # Q(max(y)) == max(Q(y))
    return quantize(g, y, _quant(op.out), f"{op.name}.out")


def integer_norm(g: FlatGraph, x: Tensor, op: IntegerNorm, suffix: str = "") -> Tensor:
    """AdaResNorm as int8 ops in the order of quant/integer_norm.integer_norm (the twin's exact
    arithmetic): statistics over (T, C) of NHWC x, each (B, F, 1, 1) statistic taken to the C
    channels by a 1x1 CONV_2D; then the max-pool after it, if any.
    `suffix` names the tensors of one band of rows (chunked_front)."""
    if op.wide is not None:
        return integer_norm_wide(g, x, op, suffix)
    name, p = op.name + suffix, {k: _quant(q) for k, q in op.points.items()}

    def channel_conv(stat: Tensor, conv, key: str) -> Tensor:  # (B, F, 1, 1) -> (B, F, 1, C)
        w = conv.weight.astype(np.float64).reshape(-1, 1, 1, 1)
        wq = (conv.weight.reshape(-1, 1, 1, 1), conv.w_scales.astype(np.float64))
        return tg.conv(g, stat, w, conv.bias, f"{name}.{key}", relu=False, wq=wq, out_quant=p[key])

    mu = tg.mean(g, x, [2, 3], f"{name}.mean", quant=p["mean"])
    sq = g.activation(f"{name}.sq", x.shape, "INT8", p["sq"])
    g.op("SQUARED_DIFFERENCE", [x, mu], [sq])
    var = tg.mean(g, sq, [2, 3], f"{name}.var", quant=p["var"])
    r = g.activation(f"{name}.rsqrt", var.shape, "INT8", p["rsqrt"])
    g.op("RSQRT", [var], [r])
    scale = channel_conv(r, op.scale_conv, "scale")
    offset = channel_conv(mu, op.offset_conv, "offset")
    d = tg.binary(g, "SUB", x, mu, f"{name}.centered", quant=p["centered"])
    prod = tg.binary(g, "MUL", d, scale, f"{name}.product", quant=p["product"])
    y = tg.binary(g, "ADD", prod, offset, f"{name}.out", quant=_quant(op.out))
    return tg.max_pool(g, y, f"{op.pool.name}.pool{suffix}") if op.pool is not None else y


def integer_norm_wide(g: FlatGraph, x: Tensor, op: IntegerNorm, suffix: str = "") -> Tensor:
    """The wide norm (int16 statistics) in the order of quant/integer_norm.integer_norm_wide:
    int16 tensors at power-of-two scales, the per-channel constants (1, 1, 1, C) int16."""
    name, w, p = op.name + suffix, op.wide, {k: _quant(q) for k, q in op.points.items()}

    def q16(scale: float) -> Quant:
        return Quant.per_tensor(scale, 0)

    def requantize(t: Tensor, quant: Quant, dtype: str, key: str) -> Tensor:
        out = g.activation(f"{name}.{key}", t.shape, dtype, quant)
        g.op("QUANTIZE", [t], [out])
        return out

    def const(k, key: str, shape=(1, 1, 1, -1)) -> Tensor:
        return g.const(f"{op.name}.{key}", k.q.reshape(shape), q16(k.scale))

    def binary(code: str, a: Tensor, b: Tensor, scale: float, key: str) -> Tensor:
        return tg.binary(g, code, a, b, f"{name}.{key}", quant=q16(scale))

    x16 = requantize(x, q16(w.x), "INT16", "x16")
    mu = tg.mean(g, x16, [2, 3], f"{name}.mean16", quant=q16(w.mean))
    d = binary("SUB", x16, mu, w.centered, "centered16")
    var = tg.mean(g, binary("MUL", d, d, w.sq, "sq16"), [2, 3], f"{name}.var16", quant=q16(w.var))
    var8 = requantize(var, p["var"], "INT8", "var")
    r8 = g.activation(f"{name}.rsqrt", var8.shape, "INT8", p["rsqrt"])
    g.op("RSQRT", [var8], [r8])
    r = requantize(r8, q16(w.r), "INT16", "rsqrt16")
    for i, st in enumerate(w.newton):
        u = binary("MUL", binary("MUL", var, r, st.w, f"newton{i}.w"), r, st.u, f"newton{i}.u")
        v = binary("SUB", const(st.three, f"newton{i}.three", (1, 1, 1, 1)), u, st.v, f"newton{i}.v")
        r = binary("MUL", r, v, st.r, f"newton{i}.r")
    gq = const(w.g, "g")
    s = binary("ADD", binary("MUL", r, const(w.c, "c"), w.scale_mul, "cr"), gq, w.scale, "scale16")
    o = binary("ADD", binary("MUL", mu, gq, w.offset_mul, "gmu"), const(w.beta, "beta"), w.offset, "offset16")
    y = binary("ADD", binary("MUL", d, s, w.product, "product16"), o, w.out, "out16")
    y = requantize(y, _quant(op.out), "INT8", "out")
    return tg.max_pool(g, y, f"{op.pool.name}.pool{suffix}") if op.pool is not None else y


def classifier(g: FlatGraph, x: Tensor, op: Classifier, int8_output: bool = False) -> Tensor:
    """The classifier conv and the global mean -> (B, classes) logits: float after a DEQUANTIZE,
    or (an integer model) an int8 MEAN to the pool's point, dequantized unless `int8_output`."""
    c = qconv(g, x, op.conv, op.conv.name)
    if op.pool is None:
        return tg.mean(g, dequantize(g, c, "classifier.dq"), [1, 2], tg.OUTPUT_NAME, keep=False)
    if int8_output:
        return tg.mean(g, c, [1, 2], tg.OUTPUT_NAME, quant=_quant(op.pool), keep=False)
    pooled = tg.mean(g, c, [1, 2], "pool", quant=_quant(op.pool), keep=False)
    out = g.activation(tg.OUTPUT_NAME, pooled.shape)
    g.op("DEQUANTIZE", [pooled], [out])
    return out


def add_qmodel(g: FlatGraph, x: Tensor, model: Int8Model, int8_output: bool = False) -> Tensor:
    """The Int8Model's ops on the NHWC log-mel -> (B, classes) logits (or the last tensor of a
    model described only up to a feature layer). An int8 `x` is already at the input's point."""
    ops, integer = list(model.ops), is_integer(model)
    while ops:
        op = ops.pop(0)
        if front_in_bands(ops, op):
            norm, blk = ops.pop(0), ops.pop(0)
            bands = WIDE_FRONT_BANDS if norm.wide is not None else FRONT_BANDS
            x = block_paths(g, chunked_front(g, x, op, norm, blk, bands), blk)
        elif isinstance(op, QuantizeInput):
            if x.dtype != "INT8":
                x = quantize(g, x, _quant(op.out), "input.q")
        elif isinstance(op, IntegerNorm) and op.wide is not None and op.pool is not None:
            x = banded_pooled_norm(g, x, op)
        elif isinstance(op, IntegerNorm):
            x = integer_norm(g, x, op)
        elif isinstance(op, (Int8Conv, FloatConv)):  # the stem
            x = qconv(g, x, op, op.name)
        elif isinstance(op, FloatNorm):
            x = float_norm(g, x, op)
        elif isinstance(op, MaxPool):
            x = tg.max_pool(g, x, f"{op.name}.pool")
        elif isinstance(op, Block):
            x = qblock(g, x, op, gather=integer)
        elif isinstance(op, BCBlock):
            x = bc_block(g, x, op)
        elif isinstance(op, Classifier):
            x = classifier(g, x, op, int8_output)
        else:
            raise TypeError(f"no TFLite writer for {type(op).__name__}")
    return x


def front_in_bands(rest: list, op) -> bool:
    """`op` an int8 stem followed by an integer norm (no pool) and a transition block: what
    chunked_front runs in bands of rows."""
    return (
        isinstance(op, Int8Conv)
        and len(rest) >= 2
        and isinstance(rest[0], IntegerNorm)
        and rest[0].pool is None
        and isinstance(rest[1], Block)
        and rest[1].transition is not None
    )


def write_int8(
    model: Int8Model, cfg: FrontendConfig = DEFAULT_FRONTEND, int8_io: bool = False
) -> tuple[FlatGraph, Tensor, Tensor]:
    """The INT8 graph of an Int8Model: (graph, input, logits output); float input and output, or
    with `int8_io` (integer models only) int8 ones at the input's and the pool's points."""
    if model.act_dtype != "int8":
        raise ValueError("the .tflite takes the twin with int8 activations: fake_quant_model('int8')")
    if int8_io and not is_integer(model):
        raise ValueError("int8 input and output need an integer model (quantize --integer)")
    g = FlatGraph(share_constants=True)
    if is_integer(model):  # int8 from the input on: QUANTIZE (unless int8 io) before the reshape
        q = _quant(model.ops[0].out)
        x_in = g.activation(
            tg.INPUT_NAME, (1, 1, cfg.n_mels, cfg.n_frames), "INT8" if int8_io else "FLOAT32", q if int8_io else None
        )
        x = tg.reshape(
            g, x_in if int8_io else quantize(g, x_in, q, "input.q"), (1, cfg.n_mels, cfg.n_frames, 1), "input.nhwc"
        )
    else:
        x_in, x = tg.stem_input(g, cfg)
    return g, x_in, add_qmodel(g, x, model, int8_io)


def build_int8(
    fq, cfg: FrontendConfig = DEFAULT_FRONTEND, until: int | None = None, int8_io: bool = False
) -> tuple[FlatGraph, Tensor, Tensor]:
    """INT8 graph of the fake-quant twin `fq`: (graph, input, logits output); `until`: only the
    feature layers before it (int8_graph.describe)."""
    return write_int8(describe(fq, until), cfg, int8_io)
