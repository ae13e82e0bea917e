"""Hand-built INT8 TFLite graph from the quantize step's fake-quant twin: the same model as the
PyTorch INT8 model and the INT8 ONNX.

Every quantization point of QuantizedArtifact.fake_quant_model() (read by onnx_int8's twin
readers, the ones the INT8 ONNX is built from) becomes a TFLite int8 tensor with that point's
scale and zero point: each int8 conv takes and gives int8 tensors, its weight is the twin's
GPTQ-rounded int8 weight with PyTorch's per-channel scales (zero point 0), its bias int32 at
scale s_in * s_w; the residual ADDs and the means are int8 ops with their points' qparams; the
float islands (the stem by default, AdaResNorm, anything --max-drop left in float) run in float
between DEQUANTIZE and QUANTIZE, written with tflite_fp32's float helpers. As in onnx_int8:
MaxPool after a float island runs on the float output before its QUANTIZE (Q is monotonic, so
the same values), the block's concat copies int8 values when both residual adds share its
qparams (quantize's default) and requantizes through float otherwise, and the classifier's
output is dequantized before the global mean (PyTorch pools in float).

Why written directly rather than a PT2E graph converted by litert-torch: the qparams are then
exactly the twin's by construction (no converter re-deriving or folding them), the layout is
NHWC as in the FP32 graph (the shuffle folded into the transition convs; elsewhere two
permutation convs, since the FP32 graph's whole-tensor block would merge quantization points the
twin keeps apart), and the export install needs no converter. Where this differs from PyTorch: TFLite/XNNPACK requantize
with their own rounding (fixed-point or float multipliers), so a value on a rounding edge can
land one step away; export validation bounds that in steps of the output scale.
"""

from __future__ import annotations

import numpy as np

from tfsep_edge.core.config import DEFAULT_FRONTEND, FrontendConfig
from tfsep_edge.export import tflite_fp32 as tg
from tfsep_edge.export.tflite_flatbuffer import FlatGraph, Quant, Tensor


def _quant(params: tuple[float | None, int | None]) -> Quant | None:
    scale, zero_point = params
    return None if scale is None else Quant.per_tensor(scale, zero_point)


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


def qconv(g: FlatGraph, x: Tensor, layer, name: str, rows=None, same: bool = False, stem: bool = False) -> Tensor:
    """A twin QLayer: int8 conv (int8 in and out) or a float island (float conv, then QUANTIZE)."""
    from tfsep_edge.export.onnx_int8 import _conv_parts  # the twin's reader, shared with the INT8 ONNX

    w, bias, scales, relu, attrs, out = _conv_parts(layer)
    if rows is not None:
        w = w[rows]
        bias = None if bias is None else bias[rows]
        scales = None if scales is None else scales[rows]
    stride = attrs["strides"][0]
    if stem:
        kh = w.shape[2]
        x = tg.pad(
            g, x, [(0, 0), (kh // 2, kh // 2), (kh // 2, kh // 2), (0, 0)], f"{name}.pad"
        )  # int8 PAD fills with the zero point
    if scales is None or x.dtype != "INT8":
        y = tg.conv(g, dequantize(g, x, f"{name}.in"), w, bias, name, relu=relu, stride=stride, same=same)
        return quantize(g, y, _quant(out), f"{name}.out")
    q = np.clip(np.round(w / scales[:, None, None, None]), -128, 127).astype(np.int8)
    return tg.conv(g, x, w, bias, name, relu=relu, stride=stride, same=same, wq=(q, scales), out_quant=_quant(out))


def qmean(g: FlatGraph, x: Tensor, mean_module, axis: int, name: str) -> Tensor:
    from tfsep_edge.export.onnx_int8 import _fq_params

    q = _quant(_fq_params(mean_module.out))
    if q is None or x.dtype != "INT8":
        return quantize(g, tg.mean(g, dequantize(g, x, f"{name}.in"), [axis], name), q, f"{name}.out")
    return tg.mean(g, x, [axis], name, quant=q)


def qadd(g: FlatGraph, a: Tensor, b: Tensor, add_module, name: str) -> Tensor:
    from tfsep_edge.export.onnx_int8 import _fq_params

    q = _quant(_fq_params(add_module.out))
    if a.dtype == b.dtype == "INT8" and q is not None:
        return tg.binary(g, "ADD", a, b, name, quant=q)
    s = tg.binary(g, "ADD", dequantize(g, a, f"{name}.a"), dequantize(g, b, f"{name}.b"), name)
    return quantize(g, s, q, f"{name}.out")


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


def qblock(g: FlatGraph, x: Tensor, blk, groups: int, name: str) -> Tensor:
    """A twin QBlock on a natural-order tensor; output in natural channel order."""
    from tfsep_edge.export.onnx_int8 import _fq_params

    c, half = 2 * blk.half, blk.half
    if blk.transition:
        rows = tg.shuffle_sources(c, groups)
        halves = [
            qconv(g, x, blk.trans_conv, f"{name}.trans{i}", rows=rows[s])
            for i, s in enumerate((slice(0, half), slice(half, c)))
        ]
    else:
        halves = shuffle_halves(g, x, groups, f"{name}.shuffle")
    outs = []
    for path, xi, dw, mean_m, pw, add_m, axis in (
        ("freq", halves[0], blk.freq_dw_conv, blk.freq_mean, blk.freq_pw_conv, blk.freq_add, 1),
        ("time", halves[1], blk.temp_dw_conv, blk.temp_mean, blk.temp_pw_conv, blk.temp_add, 2),
    ):
        d = qconv(g, xi, dw, f"{name}.{path}.dw", same=True)
        m = qmean(g, d, mean_m, axis, f"{name}.{path}.mean")
        p = qconv(g, m, pw, f"{name}.{path}.pw")
        outs.append(qadd(g, xi, p, add_m, f"{name}.{path}.residual"))
    q = _quant(_fq_params(blk.concat.out))
    if q is not None and all(o.quant == q for o in outs):  # int8 copies on one grid, as PyTorch's quantized cat
        return tg.concat_channels(g, outs, f"{name}.out", quant=q)
    cat = tg.concat_channels(g, [dequantize(g, o, f"{o.index}.dq") for o in outs], f"{name}.cat")
    return quantize(g, cat, q, f"{name}.out")


def add_qmodel(g: FlatGraph, x: Tensor, fq, until: int | None = None) -> Tensor:
    """The twin's body on the NHWC float log-mel -> (B, classes) float logits (`until`: as
    tflite_fp32.add_model)."""
    from torch import nn

    from tfsep_edge.export.onnx_int8 import _fq_params

    groups = fq.config.groups
    q = quantize(g, x, _quant(_fq_params(fq.quant)), "input.q")
    feature = list(fq.feature)
    for i, layer in enumerate(feature):
        name = f"feature.{i}"
        kind = type(layer).__name__
        if i == until:
            return q
        if kind == "QLayer":  # the stem
            q = qconv(g, q, layer, name, stem=True)
        elif kind == "FloatIsland":  # AdaResNorm in float between DEQUANTIZE and QUANTIZE
            y = tg.adaresnorm(g, dequantize(g, q, f"{name}.in"), layer.body, list(range(q.shape[-1])), name)
            if i + 1 < len(feature) and isinstance(feature[i + 1], nn.MaxPool2d):
                y = tg.max_pool(g, y, f"feature.{i + 1}.pool")  # Q(max(y)) == max(Q(y))
            q = quantize(g, y, _quant(_fq_params(layer.quant)), f"{name}.out")
        elif isinstance(layer, nn.MaxPool2d):
            if not (i > 0 and type(feature[i - 1]).__name__ == "FloatIsland"):  # else pooled above
                q = tg.max_pool(g, q, f"{name}.pool")
        elif kind == "QBlock":
            q = qblock(g, q, layer, groups, name)
        else:
            raise TypeError(f"unexpected layer {kind}")
    c = dequantize(g, qconv(g, q, fq.classifier, "classifier"), "classifier.dq")
    return tg.mean(g, c, [1, 2], tg.OUTPUT_NAME, keep=False)


def build_int8(
    fq, cfg: FrontendConfig = DEFAULT_FRONTEND, until: int | None = None
) -> tuple[FlatGraph, Tensor, Tensor]:
    """INT8 graph of the fake-quant twin `fq`: (graph, float input, float logits output)."""
    first = next(m for m in fq.modules() if hasattr(m, "quant_min"))
    if first.quant_min >= 0:
        raise ValueError("build_int8 takes the twin with int8 activations: fake_quant_model('int8')")
    g = FlatGraph()
    x_in, x = tg.stem_input(g, cfg)
    return g, x_in, add_qmodel(g, x, fq, until)
