"""FP32 .tflite graphs of BC-ResNet and TF-SepNet-64 (model/easy_nets.py), NHWC, from the weights.

Plain graphs built from tflite_fp32's op helpers: BatchNorm folded, ResNorm through
tflite_fp32.adaresnorm (a ResNorm is an AdaResNorm with constant parameters), stride-1 convs
SAME and strided ones PAD + VALID (TFLite's SAME pads stride-2 convs differently from PyTorch),
the channel shuffle as a transition conv's rows or as RESHAPE, TRANSPOSE, RESHAPE and a SPLIT
(one XNNPACK partition), SiLU as x * LOGISTIC(x), broadcast adds left to the runtime, the
classifier after the global mean (they commute). Not tuned as TF-SepNet's
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
    """A PyTorch Conv2d (its padding and stride) with weight `w`, bias `b`: SAME where that is
    PyTorch's padding (stride 1, odd kernel, (k - 1) / 2 each side), else PAD + VALID."""
    (ph, pw), stride = torch_conv.padding, torch_conv.stride[0]
    kh, kw = w.shape[2:]
    if stride == 1 and (ph, pw) == ((kh - 1) // 2, (kw - 1) // 2) and kh % 2 and kw % 2 and (ph or pw):
        return conv(g, x, w, b, name, relu=relu, same=True)
    if ph or pw:
        x = pad(g, x, [(0, 0), (ph, ph), (pw, pw), (0, 0)], f"{name}.pad")
    return conv(g, x, w, b, name, relu=relu, stride=stride)


def conv_bn(g: FlatGraph, x: Tensor, block, name: str) -> Tensor:
    """easy_blocks.ConvBnRelu: BN folded in when present, ReLU fused when present."""
    w, b = fold_bn(block._conv, block._bn) if block._bn is not None else (f64(block._conv.weight), None)
    return padded_conv(g, x, block._conv, w, b, name, relu=block._relu is not None)


def shuffled_halves(g: FlatGraph, x: Tensor, groups: int, name: str) -> list[Tensor]:
    """ChannelShuffle(groups) then the split into halves, as XNNPACK runs it in one partition:
    RESHAPE (B, H*W, c/g, g) -> TRANSPOSE (B, H*W, g, c/g) -> RESHAPE (B, H, W, c) -> SPLIT in two
    (GATHER along the channels, and SLICE with a dynamic batch, are not delegated and split the
    graph at every block)."""
    b, h, w, c = x.shape
    grouped = reshape(g, x, (b, h * w, c // groups, groups), f"{name}.grouped")
    swapped = g.activation(f"{name}.swapped", (b, h * w, groups, c // groups))
    g.op("TRANSPOSE", [grouped, g.const(f"{name}.perm", np.array([0, 1, 3, 2], np.int32))], [swapped])
    shuffled = reshape(g, swapped, (b, h, w, c), f"{name}.shuffled")
    halves = [g.activation(f"{name}.{i}", (b, h, w, c // 2)) for i in range(2)]
    axis = g.const(f"{name}.axis", np.array(3, np.int32))
    g.op("SPLIT", [axis, shuffled], halves, g.options("SplitOptions", numSplits=2))
    return halves


def tfsep_block(g: FlatGraph, x: Tensor, blk, name: str) -> Tensor:
    """TF-SepNet-64's block: [transition] -> shuffle -> freq half | time half -> concat. With a
    transition conv the shuffle is its rows (two half-width convs, nothing to move)."""
    from tfsep_edge.export.tflite_fp32 import concat_channels

    half = blk.half
    if blk.trans_conv is not None:
        tc = blk.trans_conv
        w, b = fold_bn(tc._conv, tc._bn) if tc._bn is not None else (f64(tc._conv.weight), np.zeros(2 * half))
        rows = np.array(shuffle_sources(2 * half, blk.shuffle_layer.groups))
        parts = [
            padded_conv(g, x, tc._conv, w[r], b[r], f"{name}.trans.{k}", relu=tc._relu is not None)
            for k, r in enumerate((rows[:half], rows[half:]))
        ]
    else:
        parts = shuffled_halves(g, x, blk.shuffle_layer.groups, f"{name}.shuffle")
    halves = []
    for xi, (path, dw, pw, axis) in zip(
        parts,
        (("freq", blk.freq_dw_conv, blk.freq_pw_conv, 1), ("time", blk.temp_dw_conv, blk.temp_pw_conv, 2)),
        strict=True,
    ):
        d = conv_bn(g, xi, dw, f"{name}.{path}.dw")
        p = conv_bn(g, mean(g, d, [axis], f"{name}.{path}.mean"), pw, f"{name}.{path}.pw")
        halves.append(binary(g, "ADD", xi, p, f"{name}.{path}.residual"))
    return concat_channels(g, halves, f"{name}.out")


def broadcast_block(g: FlatGraph, x: Tensor, blk, name: str) -> Tensor:
    """BC-ResBlock (easy_blocks.BroadcastBlock), sub_bands 1 only."""
    bn = blk.ssn.plain_batchnorm("the FP32 .tflite export")
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
