"""Hand-built FP32 ONNX graphs of BC-ResNet and TF-SepNet-64 (model/easy_nets.py), from the weights.

Plain graphs, node for node the modules: BatchNorm folded into the conv before it, ResNorm by
onnx_fp32.add_adaresnorm (it is an AdaResNorm with constant parameters), the channel shuffle
as two constant-index Gathers, SiLU as x * Sigmoid(x), and the classifier's 1x1 conv after the
global mean (they commute). None of TF-SepNet's layout tricks (onnx_fp32.add_block): these
families are exported to be correct and validated by the same rule, not tuned.
"""

from __future__ import annotations

import numpy as np

from tfsep_edge.core.config import DEFAULT_FRONTEND, FrontendConfig
from tfsep_edge.export.onnx_fp32 import (
    OUTPUT,
    GraphBuilder,
    _f32,
    add_adaresnorm,
    add_conv,
    add_input,
    finish_model,
    fold_bn,
)
from tfsep_edge.model.shuffle import shuffle_sources


def conv_attrs(conv) -> dict:
    (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
    return {"kernel_shape": [kh, kw], "strides": [sh, sw], "pads": [ph, pw, ph, pw], "group": conv.groups}


def out_size(size: int, conv, axis: int) -> int:
    k, s, p = conv.kernel_size[axis], conv.stride[axis], conv.padding[axis]
    return (size + 2 * p - k) // s + 1


def add_conv_bn(g: GraphBuilder, x: str, block, base: str) -> str:
    """easy_blocks.ConvBnRelu: conv, BN folded in when present, ReLU when present."""
    if block._bn is not None:
        w, b = fold_bn(block._conv, block._bn)
    else:
        w, b = _f32(block._conv.weight), None
    return add_conv(g, x, w, b, base, relu=block._relu is not None, **conv_attrs(block._conv))


def add_tfsep_block(g: GraphBuilder, x: str, block, base: str) -> str:
    """TF-SepNet-64's block: [transition] -> shuffle (Gathers) -> freq half | time half -> concat."""
    if block.trans_conv is not None:
        x = add_conv_bn(g, x, block.trans_conv, f"{base}.trans")
    half = block.half
    idx = np.array(shuffle_sources(2 * half, block.shuffle_layer.groups), np.int64)
    x1 = g.op("Gather", [x, g.const(f"{base}.idx1", idx[:half])], f"{base}.x1", axis=1)
    x2 = g.op("Gather", [x, g.const(f"{base}.idx2", idx[half:])], f"{base}.x2", axis=1)
    halves = []
    for name, xi, dw, pw, axis in (
        ("freq", x1, block.freq_dw_conv, block.freq_pw_conv, 2),
        ("time", x2, block.temp_dw_conv, block.temp_pw_conv, 3),
    ):
        d = add_conv_bn(g, xi, dw, f"{base}.{name}.dw")
        m = g.reduce("ReduceMean", d, [axis], f"{base}.{name}.mean")
        p = add_conv_bn(g, m, pw, f"{base}.{name}.pw")
        halves.append(g.op("Add", [xi, p], f"{base}.{name}.residual"))
    return g.op("Concat", halves, f"{base}.out", axis=1)


def add_broadcast_block(g: GraphBuilder, x: str, block, base: str) -> str:
    """BC-ResBlock: [transition] -> freq dw conv + BN (= auxiliary) -> mean over F -> temporal dw
    conv + BN -> SiLU -> 1x1 conv, added back over F to the auxiliary [and the input] -> ReLU."""
    bn = block.ssn.plain_batchnorm("the FP32 ONNX export")
    identity = x
    if block.trans_conv is not None:
        x = add_conv_bn(g, x, block.trans_conv, f"{base}.trans")
    w, b = fold_bn(block.freq_dw_conv, bn)
    aux = add_conv(g, x, w, b, f"{base}.freq.dw", relu=False, **conv_attrs(block.freq_dw_conv))
    y = g.reduce("ReduceMean", aux, [2], f"{base}.freq.mean")
    y = add_conv_bn(g, y, block.temp_dw_conv, f"{base}.temp.dw")
    y = g.op("Mul", [y, g.op("Sigmoid", [y], f"{base}.sigmoid")], f"{base}.swish")
    y = add_conv(g, y, _f32(block.pw_conv.weight), None, f"{base}.pw", relu=False)
    y = g.op("Add", [aux, y], f"{base}.broadcast")
    if block.trans_conv is None:
        y = g.op("Add", [y, identity], f"{base}.identity")
    return g.op("Relu", [y], f"{base}.relu")


def add_stem(g: GraphBuilder, x: str, model, f: int, t: int) -> tuple[str, int, int]:
    from torch import nn

    stems = [model.conv_layers] if isinstance(model.conv_layers, nn.Conv2d) else list(model.conv_layers)
    for i, stem in enumerate(stems):
        conv = stem if isinstance(stem, nn.Conv2d) else stem._conv
        if isinstance(stem, nn.Conv2d):
            x = add_conv(g, x, _f32(conv.weight), None, f"stem.{i}", relu=False, **conv_attrs(conv))
        else:
            x = add_conv_bn(g, x, stem, f"stem.{i}")
        f, t = out_size(f, conv, 0), out_size(t, conv, 1)
    return x, f, t


def add_easy_model(g: GraphBuilder, x: str, model, n_mels: int, frames: int) -> str:
    """BCResNet / TFSepNetV2 on log-mel `x` (B,1,n_mels,frames) -> logits (B, classes)."""
    from torch import nn

    from tfsep_edge.model.easy_blocks import BroadcastBlock, TimeFreqSepConvolutions
    from tfsep_edge.model.tfsepnet import ResNorm

    x, f, t = add_stem(g, x, model, n_mels, frames)
    for i, layer in enumerate(model.middle_layers):
        base = f"middle.{i}"
        if isinstance(layer, ResNorm):
            channels = layer.rho.shape[1]
            x = add_adaresnorm(g, x, layer, list(range(channels)), f, t, base)
        elif isinstance(layer, nn.MaxPool2d):
            x = g.op("MaxPool", [x], f"{base}.pool", kernel_shape=[2, 2], strides=[2, 2])
            f, t = f // 2, t // 2
        elif isinstance(layer, TimeFreqSepConvolutions):
            x = add_tfsep_block(g, x, layer, base)
        elif isinstance(layer, BroadcastBlock):
            x = add_broadcast_block(g, x, layer, base)
        else:
            raise TypeError(f"unexpected layer {type(layer).__name__}")
    flat = g.op("Flatten", [g.op("GlobalAveragePool", [x], "pool")], "flatten", axis=1)
    conv = model.classifier.conv
    w, b = _f32(conv.weight)[:, :, 0, 0], _f32(conv.bias)
    return g.op(
        "Gemm",
        [flat, g.const("classifier.weight", w.astype(np.float32)), g.const("classifier.bias", b.astype(np.float32))],
        OUTPUT,
        transB=1,
    )


def build_family_fp32(model, frontend: bool, opset: int, cfg: FrontendConfig = DEFAULT_FRONTEND):
    """onnx_fp32.build_fp32 for any family: TF-SepNet's tuned graph, the others' plain one."""
    from tfsep_edge.export.onnx_fp32 import build_fp32

    if model.config.family == "tfsepnet":
        return build_fp32(model, frontend, opset, cfg)
    g = GraphBuilder(opset)
    graph_input, x = add_input(g, frontend, cfg)
    add_easy_model(g, x, model, cfg.n_mels, cfg.n_frames)
    return finish_model(g, graph_input, model.config.num_classes)
