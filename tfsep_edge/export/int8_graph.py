"""The INT8 model described once, whatever format writes it: its ops in order, each with its
weights, biases and the scales and zero points of the tensors it gives, read off the quantize
step's fake-quant twin (QuantizedArtifact.fake_quant_model()).

Each format's writer (onnx_int8.py, tflite_int8.py) emits from an `Int8Model` with one writer
function per op type; no writer reads the twin. A new op type (integer normalisation, say) is a
new dataclass here, the branch of `describe` that makes it, and a writer function per format.

Tensors between ops are int8 (or uint8, `act_dtype`) with the `QParams` of the op that gave them;
`out=None` means no quantization point there: the tensor stays float (a float stem keeps its
input and output in float). Op names are the bases the writers name their tensors after
(`feature.2.freq.dw`, `classifier`), the same in every format. numpy only, except `describe`,
which reads the twin's modules.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from tfsep_edge.quant.bias_grid import int32_bias


@dataclass(frozen=True)
class QParams:
    """A quantization point: real value = scale * (q - zero_point)."""

    scale: float
    zero_point: int


@dataclass(frozen=True)
class QuantizeInput:
    """The float log-mel -> the first quantized tensor (`out` None: the stem takes it in float)."""

    out: QParams | None
    name: str = "input"


@dataclass(frozen=True)
class Int8Conv:
    """An int8 conv: int8 weight at per-output-channel scales (zero point 0), an int32 bias on the
    accumulator's grid s_in * s_w (`bias_int32`), fused ReLU, requantized to `out`."""

    name: str
    weight: np.ndarray  # int8 (O, I / groups, kh, kw)
    w_scales: np.ndarray  # float32 (O,)
    bias: np.ndarray | None  # float64 (O,): the twin's bias; the graphs store bias_int32()
    relu: bool
    stride: int
    padding: tuple[int, int]  # (frequency, time), both sides
    groups: int
    inp: QParams  # the input's point (its scale places the bias grid)
    out: QParams

    def bias_int32(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(int32 bias, its float32 scale s_in * s_w): the integers the twin adds (bias_grid)."""
        return None if self.bias is None else int32_bias(self.bias, self.inp.scale, self.w_scales)

    def float_weight(self) -> np.ndarray:
        return self.weight.astype(np.float64) * self.w_scales.astype(np.float64)[:, None, None, None]

    def rows(self, rows) -> Int8Conv:
        """The same conv with its output channels in order `rows`."""
        return dataclasses.replace(
            self,
            weight=self.weight[rows],
            w_scales=self.w_scales[rows],
            bias=None if self.bias is None else self.bias[rows],
        )


@dataclass(frozen=True)
class FloatConv:
    """A conv left in float (a float island: the stem by default, or one --max-drop kept): its
    fused float weight and bias, then quantized to `out` (None: stays float)."""

    name: str
    weight: np.ndarray  # float64 (O, I / groups, kh, kw)
    bias: np.ndarray | None  # float64 (O,)
    relu: bool
    stride: int
    padding: tuple[int, int]
    groups: int
    out: QParams | None

    def rows(self, rows) -> FloatConv:
        return dataclasses.replace(self, weight=self.weight[rows], bias=None if self.bias is None else self.bias[rows])


Conv = Int8Conv | FloatConv


@dataclass(frozen=True)
class MaxPool:
    """2x2 max-pool of a quantized tensor: the same integers' maximum, the same qparams."""

    name: str


@dataclass(frozen=True)
class FloatNorm:
    """AdaResNorm in float between a dequantize and a quantize to `out`; `pool`: the 2x2 max-pool
    after it, run on its float output before the quantize (Q is monotonic, so Q(max(y)) ==
    max(Q(y)), the max-pool PyTorch runs on the quantized tensor)."""

    name: str
    rho: np.ndarray  # float64 (C,)
    gamma: np.ndarray
    beta: np.ndarray
    eps: float
    pool: MaxPool | None
    out: QParams | None


@dataclass(frozen=True)
class IntegerNorm:
    """AdaResNorm in int8 ops (quant/integer_norm.py has the op list and the algebra): the points
    of its input, of every intermediate (`points`, by integer_norm.NORM_POINTS name) and of its
    output, and its two 1x1 convs from the statistics to the channels (integer_norm.ChannelConv:
    r -> S with weight c and bias g, mu -> O with weight g and bias beta). `pool`: the 2x2
    max-pool after it, on its int8 output."""

    name: str
    inp: QParams
    points: dict[str, QParams]
    out: QParams
    scale_conv: object  # integer_norm.ChannelConv (numpy only)
    offset_conv: object
    pool: MaxPool | None
    wide: object = None  # integer_norm.WideSpec: int16 statistics (then the convs are unused)


@dataclass(frozen=True)
class Mean:
    """Mean over one axis (NCHW: 2 frequency, 3 time), requantized to `out`."""

    name: str
    axis: int
    out: QParams


@dataclass(frozen=True)
class Add:
    """A residual add: a full-size tensor plus another (or a pointwise conv's output broadcast
    along the mean's axis), [ReLU,] quantized to `out`."""

    name: str
    out: QParams
    relu: bool = False


@dataclass(frozen=True)
class Concat:
    """The block's two branch outputs along the channels, quantized to `out` (when both already
    sit at `out`, as quantize gives them by default, the concat only copies integers). Its name
    is the block's: writers name its tensor `<block>.out`."""

    name: str
    out: QParams


@dataclass(frozen=True)
class Branch:
    """One half of a TF-SepConv block: depthwise conv, mean, pointwise conv, residual add."""

    path: str  # "freq" or "time"
    dw: Conv
    mean: Mean
    pw: Conv
    add: Add


@dataclass(frozen=True)
class Block:
    """A TF-SepConv block: [transition conv], channel shuffle in `groups` groups, split into the
    two branches, concat; output channels in natural order. How the shuffle is laid out (rows of
    the transition conv, gathers, permutation convs) is each writer's choice."""

    name: str
    half: int
    groups: int
    transition: Conv | None
    branches: tuple[Branch, Branch]
    concat: Concat


@dataclass(frozen=True)
class FloatSiLU:
    """x * sigmoid(x) in float between a dequantize and a quantize to `out` (BC-ResNet's swish,
    on a (C, 1, T) tensor: a float island, as torch has no int8 SiLU)."""

    name: str
    out: QParams


@dataclass(frozen=True)
class BCBlock:
    """BC-ResNet's broadcast block: [transition conv] -> frequency depthwise conv (its
    SubSpectralNorm folded in; the auxiliary) -> mean over frequency -> temporal depthwise conv ->
    SiLU -> pointwise conv; then `residual` (identity + auxiliary, None in a transition block)
    and `out`, the add of the pointwise output broadcast over frequency, with ReLU."""

    name: str
    transition: Conv | None
    dw: Conv
    mean: Mean
    temporal: Conv
    swish: FloatSiLU
    pw: Conv
    residual: Add | None
    out: Add


@dataclass(frozen=True)
class Classifier:
    """The 1x1 classifier conv, then the mean over frequency and time -> logits: in float after a
    dequantize (PyTorch pools in float), or, with `pool` (an integer model), an int8 MEAN to that
    point, dequantized at the output."""

    conv: Conv
    pool: QParams | None = None


Op = QuantizeInput | Int8Conv | FloatConv | FloatNorm | IntegerNorm | MaxPool | Block | BCBlock | Classifier


@dataclass(frozen=True)
class Int8Model:
    """The INT8 model's ops in order, from the float log-mel input to the logits (no Classifier
    when described only up to a feature layer)."""

    act_dtype: str  # "int8" or "uint8": how the activations' integers are stored
    num_classes: int
    ops: tuple[Op, ...]

    def convs(self) -> list[Conv]:
        """Every conv, in order (tests and tools look one up by name)."""
        found: list[Conv] = []
        for op in self.ops:
            if isinstance(op, (Int8Conv, FloatConv)):
                found.append(op)
            elif isinstance(op, Block):
                found += [op.transition] if op.transition is not None else []
                found += [c for b in op.branches for c in (b.dw, b.pw)]
            elif isinstance(op, BCBlock):
                found += [op.transition] if op.transition is not None else []
                found += [op.dw, op.temporal, op.pw]
            elif isinstance(op, Classifier):
                found.append(op.conv)
        return found

    def conv(self, name: str) -> Conv:
        return next(c for c in self.convs() if c.name == name)


# --- reading the twin ----------------------------------------------------------------------------


def qparams(fake_quant) -> QParams | None:
    """The point of a twin fake-quant module; None where the twin has none (an Identity)."""
    if not hasattr(fake_quant, "scale"):
        return None
    return QParams(float(fake_quant.scale), int(fake_quant.zero_point))


def _f64(t) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def describe_conv(layer, name: str, inp: QParams | None) -> Conv:
    """A twin QLayer: its FakeQuantConv as an Int8Conv, or its float body as a FloatConv."""
    from torch import nn

    from tfsep_edge.quant.twin import FakeQuantConv

    body = layer.body
    if isinstance(body, FakeQuantConv):
        if inp is None:
            raise ValueError(f"{name}: an int8 conv on a float tensor (the twin quantizes every int8 conv's input)")
        w, scales = _f64(body.weight), _f64(body.w_scale)
        q = np.clip(np.round(w / scales[:, None, None, None]), -128, 127).astype(np.int8)
        return Int8Conv(
            name=name,
            weight=q,
            w_scales=scales.astype(np.float32),
            bias=None if body.bias is None else _f64(body.bias),
            relu=bool(body.relu),
            stride=int(body.stride[0]),
            padding=(int(body.padding[0]), int(body.padding[1])),
            groups=int(body.groups),
            inp=inp,
            out=qparams(body.out),
        )
    conv = next(m for m in body.modules() if isinstance(m, nn.Conv2d))  # fused Conv(+ReLU) in float
    return FloatConv(
        name=name,
        weight=_f64(conv.weight),
        bias=None if conv.bias is None else _f64(conv.bias),
        relu=any(isinstance(m, nn.ReLU) for m in body.modules()),
        stride=int(conv.stride[0]),
        padding=(int(conv.padding[0]), int(conv.padding[1])),
        groups=int(conv.groups),
        out=qparams(layer.quant),
    )


def describe_mean(m, name: str) -> Mean:
    """A twin mean over one axis: FakeQuantMean (float mean, then its point) or IntegerMean."""
    from tfsep_edge.quant.integer_norm import IntegerMean

    if isinstance(m, IntegerMean):
        return Mean(name, int(m.dims[0]), qparams(m))
    return Mean(name, int(m.dim), qparams(m.out))


def is_integer(model: Int8Model) -> bool:
    """Integer from input to logits: an int8 input point, no float conv or norm, an int8 pool."""
    floats = any(isinstance(op, FloatConv | FloatNorm | BCBlock) for op in model.ops)  # BCBlock: a float SiLU
    classifier_op = model.ops[-1]
    pooled = isinstance(classifier_op, Classifier) and classifier_op.pool is not None
    return not floats and pooled and all(c.out is not None for c in model.convs()) and model.ops[0].out is not None


def describe_integer_norm(norm, name: str, pool: MaxPool | None) -> IntegerNorm:
    """A twin IntegerNorm with its current constants and (runtime-agreeing) scales."""
    spec = norm.spec(norm.n)
    q = {k: QParams(*v) for k, v in spec.points.items()}
    return IntegerNorm(
        name, QParams(*spec.inp), q, QParams(*spec.out), spec.scale_conv, spec.offset_conv, pool, spec.wide
    )


def describe_block(block, groups: int, name: str, inp: QParams | None) -> Block:
    transition = describe_conv(block.trans_conv, f"{name}.trans", inp) if block.transition else None
    x = transition.out if transition is not None else inp
    branches = []
    for path, dw_layer, mean_m, pw_layer, add_m in (
        ("freq", block.freq_dw_conv, block.freq_mean, block.freq_pw_conv, block.freq_add),
        ("time", block.temp_dw_conv, block.temp_mean, block.temp_pw_conv, block.temp_add),
    ):
        dw = describe_conv(dw_layer, f"{name}.{path}.dw", x)
        mean = describe_mean(mean_m, f"{name}.{path}.mean")
        pw = describe_conv(pw_layer, f"{name}.{path}.pw", mean.out)
        branches.append(Branch(path, dw, mean, pw, Add(f"{name}.{path}.residual", qparams(add_m.out))))
    concat = Concat(name, qparams(block.concat.out))
    return Block(name, int(block.half), groups, transition, tuple(branches), concat)


def describe_bc_block(block, name: str, inp: QParams | None) -> BCBlock:
    """A twin QBroadcastBlock."""
    transition = describe_conv(block.trans_conv, f"{name}.trans", inp) if block.transition else None
    x = transition.out if transition is not None else inp
    dw = describe_conv(block.freq_dw_conv, f"{name}.freq.dw", x)
    mean = describe_mean(block.freq_mean, f"{name}.freq.mean")
    temporal = describe_conv(block.temp_dw_conv, f"{name}.temp.dw", mean.out)
    swish = FloatSiLU(f"{name}.swish", qparams(block.swish.quant))
    pw = describe_conv(block.pw_conv, f"{name}.pw", swish.out)
    residual = None if block.transition else Add(f"{name}.residual", qparams(block.residual.out))
    out = Add(f"{name}.broadcast", qparams(block.broadcast.out), relu=True)
    return BCBlock(name, transition, dw, mean, temporal, swish, pw, residual, out)


def describe(fq, until: int | None = None) -> Int8Model:
    """The fake-quant twin `fq` as an Int8Model. `until`: only the feature layers before layer
    `until`, no classifier (the per-layer profile of benchmarks/peers.py)."""
    from torch import nn

    from tfsep_edge.quant.integer_norm import IntegerNorm as TwinIntegerNorm
    from tfsep_edge.quant.ready import FloatIsland, QBlock, QBroadcastBlock, QLayer

    # How the twin expresses activations, read from any fake-quant point, since the input stub
    # is an Identity when the stem stays in float.
    first = next(m for m in fq.modules() if hasattr(m, "quant_min"))
    act_dtype = "int8" if first.quant_min < 0 else "uint8"
    x = qparams(fq.quant)
    ops: list[Op] = [QuantizeInput(x)]
    feature = list(fq.feature)
    for i, layer in enumerate(feature):
        if i == until:
            return Int8Model(act_dtype, fq.config.num_classes, tuple(ops))
        name = f"feature.{i}"
        if isinstance(layer, QLayer):  # the stem
            op = describe_conv(layer, name, x)
        elif isinstance(layer, FloatIsland):
            norm = layer.body
            pooled = i + 1 < len(feature) and isinstance(feature[i + 1], nn.MaxPool2d)
            pool = MaxPool(f"feature.{i + 1}") if pooled else None
            vec = (_f64(p).reshape(-1) for p in (norm.rho, norm.gamma, norm.beta))
            op = FloatNorm(name, *vec, eps=float(norm.eps), pool=pool, out=qparams(layer.quant))
        elif isinstance(layer, TwinIntegerNorm):
            pooled = i + 1 < len(feature) and isinstance(feature[i + 1], nn.MaxPool2d)
            op = describe_integer_norm(layer, name, MaxPool(f"feature.{i + 1}") if pooled else None)
        elif isinstance(layer, nn.MaxPool2d):
            if i > 0 and isinstance(feature[i - 1], FloatIsland | TwinIntegerNorm):  # pooled by the norm before it
                continue
            ops.append(MaxPool(name))
            continue
        elif isinstance(layer, QBlock):
            op = describe_block(layer, layer.shuffle_layer.groups, name, x)
        elif isinstance(layer, QBroadcastBlock):
            op = describe_bc_block(layer, name, x)
        else:
            raise TypeError(f"unexpected layer {type(layer).__name__}")
        ops.append(op)
        x = op.concat.out if isinstance(op, Block) else op.out.out if isinstance(op, BCBlock) else op.out
    pool = qparams(fq.pool) if fq.pool is not None else None
    ops.append(Classifier(describe_conv(fq.classifier, "classifier", x), pool))
    return Int8Model(act_dtype, fq.config.num_classes, tuple(ops))
