"""FP32 .tflite graphs of BC-ResNet and TF-SepNet-64 (model/easy_nets.py), NHWC, from the weights.

Plain graphs built from tflite_fp32's op helpers: BatchNorm folded, ResNorm through
tflite_fp32.adaresnorm (a ResNorm is an AdaResNorm with constant parameters), PyTorch's conv
padding as PAD + VALID (exact for every stride; TFLite's SAME pads stride-2 convs differently),
the channel shuffle as two GATHERs, SiLU as x * LOGISTIC(x), broadcast adds left to the
runtime, the classifier after the global mean (they commute). Not tuned as TF-SepNet's
(tflite_fp32.py); validated by the same rule.
"""

from __future__ import annotations

import numpy as np

from tfsep_edge.core.config import DEFAULT_FRONTEND, FrontendConfig
from tfsep_edge.export.tflite_flatbuffer import FlatGraph, Tensor
from tfsep_edge.export.tflite_fp32 import (
    OUTPUT_NAME,
    adaresnorm,
    binary,
    conv,
    f64,
    fold_bn,
    fully_connected,
    max_pool,
    mean,
    pad,
    reshape,
    stem_input,
    unary,
)
from tfsep_edge.model.shuffle import shuffle_sources


def padded_conv(g: FlatGraph, x: Tensor, torch_conv, w: np.ndarray, b, name: str, relu: bool) -> Tensor:
    """A PyTorch Conv2d (its padding and stride) with weight `w`, bias `b`."""
    ph, pw = torch_conv.padding
    if ph or pw:
        x = pad(g, x, [(0, 0), (ph, ph), (pw, pw), (0, 0)], f"{name}.pad")
    return conv(g, x, w, b, name, relu=relu, stride=torch_conv.stride[0])


def conv_bn(g: FlatGraph, x: Tensor, block, name: str) -> Tensor:
    """easy_blocks.ConvBnRelu: BN folded in when present, ReLU fused when present."""
    w, b = fold_bn(block._conv, block._bn) if block._bn is not None else (f64(block._conv.weight), None)
    return padded_conv(g, x, block._conv, w, b, name, relu=block._relu is not None)


def gather_channels(g: FlatGraph, x: Tensor, idx: np.ndarray, name: str) -> Tensor:
    out = g.activation(name, (*x.shape[:-1], len(idx)))
    g.op("GATHER", [x, g.const(f"{name}.idx", idx.astype(np.int32))], [out], g.options("GatherOptions", axis=3))
    return out


def tfsep_block(g: FlatGraph, x: Tensor, blk, name: str) -> Tensor:
    """TF-SepNet-64's block: [transition] -> shuffle -> freq half | time half -> concat."""
    from tfsep_edge.export.tflite_fp32 import concat_channels

    if blk.trans_conv is not None:
        x = conv_bn(g, x, blk.trans_conv, f"{name}.trans")
    half = blk.half
    idx = np.array(shuffle_sources(2 * half, blk.shuffle_layer.groups))
    halves = []
    for path, part, dw, pw, axis in (
        ("freq", idx[:half], blk.freq_dw_conv, blk.freq_pw_conv, 1),
        ("time", idx[half:], blk.temp_dw_conv, blk.temp_pw_conv, 2),
    ):
        xi = gather_channels(g, x, part, f"{name}.{path}.x")
        d = conv_bn(g, xi, dw, f"{name}.{path}.dw")
        p = conv_bn(g, mean(g, d, [axis], f"{name}.{path}.mean"), pw, f"{name}.{path}.pw")
        halves.append(binary(g, "ADD", xi, p, f"{name}.{path}.residual"))
    return concat_channels(g, halves, f"{name}.out")


def broadcast_block(g: FlatGraph, x: Tensor, blk, name: str) -> Tensor:
    """BC-ResBlock (easy_blocks.BroadcastBlock), sub_bands 1 only."""
    bn = blk.ssn.plain_batchnorm(".tflite")
    identity = x
    if blk.trans_conv is not None:
        x = conv_bn(g, x, blk.trans_conv, f"{name}.trans")
    w, b = fold_bn(blk.freq_dw_conv, bn)
    aux = padded_conv(g, x, blk.freq_dw_conv, w, b, f"{name}.freq.dw", relu=False)
    y = conv_bn(g, mean(g, aux, [1], f"{name}.freq.mean"), blk.temp_dw_conv, f"{name}.temp.dw")
    y = binary(g, "MUL", y, unary(g, "LOGISTIC", y, f"{name}.sigmoid"), f"{name}.swish")
    y = conv(g, y, f64(blk.pw_conv.weight), None, f"{name}.pw", relu=False)
    y = binary(g, "ADD", aux, y, f"{name}.broadcast")
    if blk.trans_conv is None:
        y = binary(g, "ADD", y, identity, f"{name}.identity")
    return unary(g, "RELU", y, f"{name}.relu")


def stem(g: FlatGraph, x: Tensor, model) -> Tensor:
    from torch import nn

    if isinstance(model.conv_layers, nn.Conv2d):  # BC-ResNet: 5x5 stride 2, no BN
        c = model.conv_layers
        return padded_conv(g, x, c, f64(c.weight), None, "stem.0", relu=False)
    for i, block in enumerate(model.conv_layers):  # TF-SepNet-64: two ConvBnRelu
        x = conv_bn(g, x, block, f"stem.{i}")
    return x


def add_easy_model(g: FlatGraph, x: Tensor, model) -> Tensor:
    """BCResNet / TFSepNetV2 on the NHWC log-mel -> (B, classes) logits."""
    from torch import nn

    from tfsep_edge.model.easy_blocks import BroadcastBlock, TimeFreqSepConvolutions
    from tfsep_edge.model.tfsepnet import ResNorm

    x = stem(g, x, model)
    for i, layer in enumerate(model.middle_layers):
        name = f"middle.{i}"
        if isinstance(layer, ResNorm):
            x = adaresnorm(g, x, layer, list(range(x.shape[-1])), name)
        elif isinstance(layer, nn.MaxPool2d):
            x = max_pool(g, x, f"{name}.pool")
        elif isinstance(layer, TimeFreqSepConvolutions):
            x = tfsep_block(g, x, layer, name)
        elif isinstance(layer, BroadcastBlock):
            x = broadcast_block(g, x, layer, name)
        else:
            raise TypeError(f"unexpected layer {type(layer).__name__}")
    pooled = mean(g, x, [1, 2], "pool")
    flat = reshape(g, pooled, (pooled.shape[0], pooled.shape[-1]), "flatten")
    head = model.classifier.conv
    return fully_connected(g, flat, f64(head.weight)[:, :, 0, 0], f64(head.bias), OUTPUT_NAME)


def build_family_fp32(model, cfg: FrontendConfig = DEFAULT_FRONTEND) -> tuple[FlatGraph, Tensor, Tensor]:
    """tflite_fp32.build_fp32 for any family: (graph, input, output)."""
    from tfsep_edge.export.tflite_fp32 import build_fp32

    if model.config.family == "tfsepnet":
        return build_fp32(model, cfg)
    g = FlatGraph()
    x_in, x = stem_input(g, cfg)
    return g, x_in, add_easy_model(g, x, model)
