"""Hand-built INT8 QDQ ONNX graph, op for op the quantize step's fake-quant twin.

Why each node or step is built the way it is, with the measurements that decided it:
docs/export.md (figures go stale in code, so they live there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from tfsep_edge.core.config import DEFAULT_FRONTEND, FrontendConfig
from tfsep_edge.export.onnx_fp32 import (
    OUTPUT,
    GraphBuilder,
    _f32,
    add_adaresnorm,
    add_input,
    finish_model,
    spell_out,
)
from tfsep_edge.model.shuffle import shuffle_sources
from tfsep_edge.quant.bias_grid import int32_bias


@dataclass(frozen=True)
class QTensor:
    """A quantized tensor in the graph and the (scale, zero point) that give its real values."""

    name: str
    scale: float
    zero_point: int


def _fq_params(fq) -> tuple[float | None, int | None]:
    """(scale, zero point) of a fake-quant module; (None, None) where the twin has none (a float
    stem keeps its input and output in float: quantize.py replaces those stubs by Identity)."""
    if not hasattr(fq, "scale"):
        return None, None
    return float(fq.scale), int(fq.zero_point)


def quantize(g: GraphBuilder, x: str, scale: float | None, zero_point: int | None, base: str) -> QTensor | str:
    if scale is None:  # no quantization point here: the tensor stays float
        return x
    s = g.const(f"{base}.scale", np.array(scale, np.float32))
    z = g.const(f"{base}.zero_point", np.array(zero_point, g.act_dtype))
    return QTensor(g.op("QuantizeLinear", [x, s, z], f"{base}.q"), scale, zero_point)


def dequantize(g: GraphBuilder, t: QTensor | str, base: str) -> str:
    """One DequantizeLinear per quantized tensor, shared by its consumers (fewer nodes to run;
    onnxruntime's EnsureUniqueDQForNodeUnit gives each int8-fusable consumer its own copy)."""
    if isinstance(t, str):  # already float
        return t
    cache = g.__dict__.setdefault("dq_of", {})
    if t.name not in cache:
        s = g.const(f"{base}.dq_scale", np.array(t.scale, np.float32))
        z = g.const(f"{base}.dq_zero_point", np.array(t.zero_point, g.act_dtype))
        cache[t.name] = g.op("DequantizeLinear", [t.name, s, z], f"{base}.dq")
    return cache[t.name]


def moved(g: GraphBuilder, op: str, t: QTensor, extra: list[str], bases: list[str], **attrs) -> list[QTensor]:
    """Channel movement (Split, Gather) of a quantized tensor: the op on the int8 values, then an
    identity requantization DQ -> Q on the same grid (Q(DQ(q)) == q) before the consumer's DQ.

    Each runtime needs one half of that. OpenVINO's int8 pipeline (CPU plugin, on CPUs with
    VNNI) compiles no conv whose int8 input, with a nonzero zero point, arrives through a Split or
    Gather ("No suitable implementations"): the conv's DQ must follow a Q. For onnxruntime the op
    still sits between the producer's Q and a DQ, which keeps its x86 rewrite to u8s8 integer
    convs away (keep_int8; tests/test_export.py reads its optimized graph).
    """
    outs = g.op_multi(op, [t.name, *extra], [f"{b}.int8" for b in bases], **attrs)
    return [
        quantize(g, dequantize(g, QTensor(o, t.scale, t.zero_point), f"{b}.requant"), t.scale, t.zero_point, b)
        for o, b in zip(outs, bases, strict=True)
    ]


def keep_int8(g: GraphBuilder, t: QTensor | str, channels: int, base: str) -> QTensor | str:
    """An identity channel Gather between a QuantizeLinear and the DequantizeLinear of a conv input.

    On x86 without VNNI onnxruntime 1.32 rewrites an adjacent int8 Q -> DQ pair as uint8 and fuses
    DQ -> Conv -> Q into a u8s8 QLinearConv whose AVX2 kernel saturates 16-bit pair sums with
    full-range activations: under `qemu-x86_64 -cpu Haswell` a model's logits moved by 0.22 and
    a one-conv test lost half its value. Between Q and DQ the Gather (a copy of a tiny tensor)
    stops that rewrite, so there the conv runs in float on the exactly dequantized values; where
    int8 kernels are exact (ARM, VNNI) onnxruntime still fuses the int8 conv around it. Written
    as `moved`, so that OpenVINO compiles the conv after it.
    """
    if not isinstance(t, QTensor):
        return t
    idx = g.const(f"const.identity_{channels}", np.arange(channels, dtype=np.int64))
    return moved(g, "Gather", t, [idx], [f"{base}.keep_int8"], axis=1)[0]


def _conv_parts(layer) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, bool, dict, tuple | None]:
    """(float weight, bias, per-channel weight scales or None, relu, conv attrs, out qparams) of a QLayer."""
    from torch import nn

    body = layer.body
    if hasattr(body, "w_scale"):  # FakeQuantConv: an int8 conv
        w, scales = _f32(body.weight), _f32(body.w_scale)
        bias = None if body.bias is None else _f32(body.bias)
        conv, relu, out = body, body.relu, _fq_params(body.out)
    else:  # float island: the fused float conv, quantized after
        conv = next(m for m in body.modules() if isinstance(m, nn.Conv2d))
        w, scales = _f32(conv.weight), None
        bias = None if conv.bias is None else _f32(conv.bias)
        relu = any(isinstance(m, nn.ReLU) for m in body.modules())
        out = _fq_params(layer.quant)
    kh, kw = w.shape[2:]
    attrs = {
        "kernel_shape": [kh, kw],
        "strides": list(conv.stride),
        "pads": [conv.padding[0], conv.padding[1], conv.padding[0], conv.padding[1]],
        "group": conv.groups,
    }
    return w, bias, scales, relu, attrs, out


def add_qconv(g: GraphBuilder, x: QTensor | str, layer, base: str, rows: list[int] | None = None) -> QTensor | str:
    """A QLayer: DQ(x) -> Conv(DQ(int8 weight)) [-> Relu] -> Q(out). `rows` permutes output channels."""
    w, bias, scales, relu, attrs, (out_s, out_z) = _conv_parts(layer)
    if rows is not None:
        w = w[rows]
        bias = None if bias is None else bias[rows]
        scales = None if scales is None else scales[rows]
    if scales is not None:
        q = np.clip(np.round(w / scales[:, None, None, None]), -128, 127).astype(np.int8)
        wq = g.const(f"{base}.weight_int8", q)
        ws = g.const(f"{base}.weight_scale", scales.astype(np.float32))
        wz = g.const(f"{base}.weight_zero_point", np.zeros(len(scales), np.int8))
        weight = g.op("DequantizeLinear", [wq, ws, wz], f"{base}.weight", axis=0)
    else:
        weight = g.const(f"{base}.weight", w.astype(np.float32))
    inputs = [dequantize(g, x, f"{base}.in"), weight]
    if bias is not None and scales is not None and isinstance(x, QTensor):
        # int32 bias at s_in * s_w (the twin rounds its bias the same way): lets onnxruntime fuse QLinearConv.
        bq, bscale = int32_bias(bias, x.scale, scales)
        bs = g.const(f"{base}.bias_scale", bscale)
        bz = g.const(f"{base}.bias_zero_point", np.zeros(len(bq), np.int32))
        inputs.append(g.op("DequantizeLinear", [g.const(f"{base}.bias_int32", bq), bs, bz], f"{base}.bias", axis=0))
    elif bias is not None:
        inputs.append(g.const(f"{base}.bias", bias.astype(np.float32)))
    y = g.op("Conv", inputs, base, **attrs)
    if relu:
        y = g.op("Relu", [y], f"{base}.relu")
    return quantize(g, y, out_s, out_z, f"{base}.out")


def add_qblock(g: GraphBuilder, x: QTensor, block, groups: int, freqs: int, frames: int, base: str) -> QTensor:
    """A quantized TF-SepConv block (fake-quant twin `block`); output in natural channel order."""
    half = block.half
    c = 2 * half
    sources = shuffle_sources(c, groups)

    if block.transition:
        t = add_qconv(g, x, block.trans_conv, f"{base}.trans", rows=sources)
        sizes = g.const(f"{base}.split", np.array([half, half], np.int64))
        x1, x2 = moved(g, "Split", t, [sizes], [f"{base}.x1", f"{base}.x2"], axis=1)
    else:
        idx = np.array(sources, np.int64)
        (x1,) = moved(g, "Gather", x, [g.const(f"{base}.idx1", idx[:half])], [f"{base}.x1"], axis=1)
        (x2,) = moved(g, "Gather", x, [g.const(f"{base}.idx2", idx[half:])], [f"{base}.x2"], axis=1)
    halves = []
    for name, xi, dw, mean, pw, add in (
        ("freq", x1, block.freq_dw_conv, block.freq_mean, block.freq_pw_conv, block.freq_add),
        ("time", x2, block.temp_dw_conv, block.temp_mean, block.temp_pw_conv, block.temp_add),
    ):
        d = add_qconv(g, xi, dw, f"{base}.{name}.dw")
        m = g.reduce("ReduceMean", dequantize(g, d, f"{base}.{name}.mean_in"), [mean.dim], f"{base}.{name}.mean")
        mq = quantize(g, m, *_fq_params(mean.out), f"{base}.{name}.mean_out")
        p = add_qconv(g, keep_int8(g, mq, half, f"{base}.{name}.mean_out"), pw, f"{base}.{name}.pw")
        p_full = spell_out(g, dequantize(g, p, f"{base}.{name}.res_p"), mean.dim, half, freqs, frames, f"{base}.{name}")
        s = g.op("Add", [dequantize(g, xi, f"{base}.{name}.res_x"), p_full], f"{base}.{name}.residual")
        halves.append(quantize(g, s, *_fq_params(add.out), f"{base}.{name}.residual_out"))
    out_s, out_z = _fq_params(block.concat.out)
    if all(isinstance(h, QTensor) and (h.scale, h.zero_point) == (out_s, out_z) for h in halves):
        # The residual adds share the concat's qparams (quantize's default): Q(DQ(q)) == q on
        # one grid, so the concat only copies integers, as PyTorch's quantized cat does.
        return QTensor(g.op("Concat", [h.name for h in halves], f"{base}.out", axis=1), out_s, out_z)
    cat = g.op("Concat", [dequantize(g, h, f"{base}.cat_in{i}") for i, h in enumerate(halves)], f"{base}.cat", axis=1)
    return quantize(g, cat, out_s, out_z, f"{base}.out")


def add_qmodel(g: GraphBuilder, x: str, fq, n_mels: int, frames: int) -> str:
    """The fake-quant twin's graph on log-mel `x` -> logits."""
    from torch import nn

    groups = fq.config.groups
    q = quantize(g, x, *_fq_params(fq.quant), "input")
    channels, f_len, t_len = 1, n_mels, frames
    for i, layer in enumerate(fq.feature):
        base = f"feature.{i}"
        kind = type(layer).__name__
        if kind == "QLayer":  # the stem
            q = add_qconv(g, q, layer, base)
            channels = _conv_parts(layer)[0].shape[0]
            f_len, t_len = (f_len + 4 - 5) // 2 + 1, (t_len + 4 - 5) // 2 + 1
        elif kind == "FloatIsland":  # AdaResNorm in float between DQ and Q
            y = add_adaresnorm(g, dequantize(g, q, f"{base}.in"), layer.body, list(range(channels)), f_len, t_len, base)
            pool = i + 1 < len(fq.feature) and isinstance(fq.feature[i + 1], nn.MaxPool2d)
            if pool:  # PyTorch pools the quantized tensor; Q is monotonic, so Q(max(y)) == max(Q(y))
                y = g.op("MaxPool", [y], f"feature.{i + 1}.pool", kernel_shape=[2, 2], strides=[2, 2])
                f_len, t_len = f_len // 2, t_len // 2
            q = quantize(g, y, *_fq_params(layer.quant), f"{base}.out")
        elif isinstance(layer, nn.MaxPool2d):
            if not (i > 0 and type(fq.feature[i - 1]).__name__ == "FloatIsland"):  # else pooled above
                name = q.name if isinstance(q, QTensor) else q
                pooled = g.op("MaxPool", [name], f"{base}.pool", kernel_shape=[2, 2], strides=[2, 2])
                q = QTensor(pooled, q.scale, q.zero_point) if isinstance(q, QTensor) else pooled
                f_len, t_len = f_len // 2, t_len // 2
        elif kind == "QBlock":
            q = add_qblock(g, q, layer, groups, f_len, t_len, base)
            channels = 2 * layer.half
        else:
            raise TypeError(f"unexpected layer {kind}")
    c = add_qconv(g, keep_int8(g, q, channels, "classifier.in"), fq.classifier, "classifier")
    pooled = g.op("GlobalAveragePool", [dequantize(g, c, "classifier.out")], "pool")
    return g.op("Flatten", [pooled], OUTPUT, axis=1)


def build_int8(fq, frontend: bool, opset: int, cfg: FrontendConfig = DEFAULT_FRONTEND) -> onnx.ModelProto:
    """QDQ graph of the fake-quant twin `fq` (quantize.QuantizedArtifact.fake_quant_model())."""
    g = GraphBuilder(opset)
    # As the twin expresses activations; read from any fake-quant point, since the input stub is
    # an Identity when the stem stays in float.
    first = next(m for m in fq.modules() if hasattr(m, "quant_min"))
    g.act_dtype = np.int8 if first.quant_min < 0 else np.uint8
    graph_input, x = add_input(g, frontend, cfg)
    add_qmodel(g, x, fq, cfg.n_mels, cfg.n_frames)
    return finish_model(g, graph_input, fq.config.num_classes)
