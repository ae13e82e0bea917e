"""Hand-built FP32 TFLite graph of TF-SepNet, written straight into the flatbuffer.

Why not `litert_torch.convert`: the converter keeps PyTorch's NCHW semantics and surrounds
layout-sensitive ops with TRANSPOSEs, keeps the shuffle's reshape/transpose chains and
AdaResNorm's seven elementwise ops, and it pulls jax, transformers and its converter into the
export install (the measurements behind each choice: docs/tflite.md). Written here, in NHWC (TFLite's layout) from
the input on, every op is one XNNPACK runs (benchmarks/results/peers.md has the comparison):
- the (B, 1, F, T) log-mel input is reshaped to (B, F, T, 1) (free: one channel);
- BatchNorm folded into each conv, ReLU fused into it; the stem's (2, 2) padding is one PAD
  (TFLite's SAME pads (1, 2) at stride 2, PyTorch pads (2, 2));
- no channel shuffle or split runs: a channel's place in storage is tracked instead (`order`),
  a transition conv writes its rows in shuffled order, and each block runs its two paths on
  the whole tensor (block), except transition blocks after the first, which run each path on
  its own half and end in one CONCATENATION (split_transition_block; the forms measured are in
  docs/tflite.md);
- AdaResNorm is s*(x - mean) + shift with its constants folded (onnx_fp32.add_adaresnorm's
  algebra): per-(example, frequency) statistics are MEANs over (T, C), the per-channel scale
  and shift are built on the small (B, F, 1, C) tensors, two full-size passes;
- the classifier's 1x1 conv commutes with the global mean: the last norm returns only its
  mean over (F, T), then one FULLY_CONNECTED.
No torch at import (add_model imports it to tell the layers apart).
"""

from __future__ import annotations

import numpy as np

from tfsep_edge.core.config import DEFAULT_FRONTEND, FrontendConfig
from tfsep_edge.export.tflite_flatbuffer import FlatGraph, Quant, Tensor
from tfsep_edge.model.shuffle import shuffle_positions, shuffle_sources
from tfsep_edge.quant.bias_grid import int32_bias

INPUT_NAME = "logmel"
OUTPUT_NAME = "logits"


def f64(t) -> np.ndarray:
    """A torch tensor or an array (int8_graph's float parameters) as float64 numpy."""
    if isinstance(t, np.ndarray):
        return t.astype(np.float64)
    return t.detach().cpu().double().numpy()


def fold_bn(conv, bn) -> tuple[np.ndarray, np.ndarray]:
    """Conv (no bias) followed by eval-mode BatchNorm -> (OIHW weight, bias) in float64."""
    scale = f64(bn.weight) / np.sqrt(f64(bn.running_var) + bn.eps)
    return f64(conv.weight) * scale[:, None, None, None], f64(bn.bias) - f64(bn.running_mean) * scale


# --- op helpers (NHWC) -----------------------------------------------------------------------


def broadcast_shape(a: tuple, b: tuple) -> tuple:
    return tuple(np.broadcast_shapes(a, b))


def binary(
    g: FlatGraph, code: str, a: Tensor, b: Tensor, name: str, quant: Quant | None = None, relu: bool = False
) -> Tensor:
    """An elementwise ADD/MUL/SUB (broadcasting), quantized at `quant` (int8, or int16 when the
    inputs are int16), with a fused ReLU if `relu`."""
    dtype = ("INT16" if a.dtype == "INT16" else "INT8") if quant is not None else "FLOAT32"
    out = g.activation(name, broadcast_shape(a.shape, b.shape), dtype, quant)
    opts = {"ADD": "AddOptions", "MUL": "MulOptions", "SUB": "SubOptions"}[code]
    values = {"fusedActivationFunction": g.s.ActivationFunctionType.RELU} if relu else {}
    if dtype == "INT16" and code != "MUL":  # LiteRT's general int16 path, the one TFLM has
        values["potScaleInt16"] = False
    g.op(code, [a, b], [out], g.options(opts, **values))
    return out


def unary(g: FlatGraph, code: str, x: Tensor, name: str) -> Tensor:
    out = g.activation(name, x.shape, x.dtype, x.quant)
    g.op(code, [x], [out])
    return out


def mean(g: FlatGraph, x: Tensor, axes: list[int], name: str, quant: Quant | None = None, keep: bool = True) -> Tensor:
    if keep:
        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    else:
        shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    out = g.activation(name, shape, x.dtype, quant if quant is not None else x.quant)
    g.op(
        "MEAN",
        [x, g.const(f"{name}.axes", np.array(axes, np.int32))],
        [out],
        g.options("ReducerOptions", keepDims=keep),
    )
    return out


def reshape(g: FlatGraph, x: Tensor, shape: tuple, name: str) -> Tensor:
    out = g.activation(name, shape, x.dtype, x.quant)
    new_shape = np.array([-1, *shape[1:]], np.int32)
    g.op("RESHAPE", [x, g.const(f"{name}.shape", new_shape)], [out], g.options("ReshapeOptions", newShape=new_shape))
    return out


def concat(g: FlatGraph, parts: list[Tensor], axis: int, name: str, quant: Quant | None = None) -> Tensor:
    shape = list(parts[0].shape)
    shape[axis] = sum(p.shape[axis] for p in parts)
    out = g.activation(name, tuple(shape), parts[0].dtype, quant if quant is not None else parts[0].quant)
    g.op("CONCATENATION", parts, [out], g.options("ConcatenationOptions", axis=axis))
    return out


def concat_channels(g: FlatGraph, parts: list[Tensor], name: str, quant: Quant | None = None) -> Tensor:
    return concat(g, parts, len(parts[0].shape) - 1, name, quant)


def slice_rows(g: FlatGraph, x: Tensor, start: int, rows: int, name: str) -> Tensor:
    """Rows start..start+rows of NHWC x (axis 1), every batch, column and channel."""
    out = g.activation(name, (x.shape[0], rows, *x.shape[2:]), x.dtype, x.quant)
    begin = g.const(f"{name}.begin", np.array([0, start, 0, 0], np.int32))
    size = g.const(f"{name}.size", np.array([-1, rows, -1, -1], np.int32))
    g.op("SLICE", [x, begin, size], [out])
    return out


def pad(g: FlatGraph, x: Tensor, pads: list[tuple[int, int]], name: str) -> Tensor:
    shape = tuple(d + a + b for d, (a, b) in zip(x.shape, pads, strict=True))
    out = g.activation(name, shape, x.dtype, x.quant)
    g.op("PAD", [x, g.const(f"{name}.pads", np.array(pads, np.int32))], [out])
    return out


def max_pool(g: FlatGraph, x: Tensor, name: str) -> Tensor:
    b, h, w, c = x.shape
    out = g.activation(name, (b, h // 2, w // 2, c), x.dtype, x.quant)
    s = g.s
    opts = g.options("Pool2DOptions", padding=s.Padding.VALID, strideW=2, strideH=2, filterWidth=2, filterHeight=2)
    g.op("MAX_POOL_2D", [x], [out], opts)
    return out


def conv(
    g: FlatGraph,
    x: Tensor,
    w: np.ndarray,
    b: np.ndarray | None,
    name: str,
    relu: bool,
    stride: int = 1,
    same: bool = False,
    wq: tuple[np.ndarray, np.ndarray] | None = None,
    out_quant: Quant | None = None,
) -> Tensor:
    """CONV_2D, or DEPTHWISE_CONV_2D for a (C, 1, kh, kw) weight on C channels. `w` is OIHW float.

    INT8 (wq = (int8 OIHW weight, per-channel scales)): int32 bias at scale s_in * s_w.
    """
    s = g.s
    out_ch, in_per_group, kh, kw = w.shape
    depthwise = in_per_group == 1 and x.shape[-1] == out_ch and out_ch > 1
    b_, h, wd, _ = x.shape
    oh, ow = (
        ((h - 1) // stride + 1, (wd - 1) // stride + 1) if same else ((h - kh) // stride + 1, (wd - kw) // stride + 1)
    )
    padding = s.Padding.SAME if same else s.Padding.VALID
    act = s.ActivationFunctionType.RELU if relu else s.ActivationFunctionType.NONE
    bias = np.zeros(out_ch) if b is None else b
    if wq is None:
        weight = w.astype(np.float32)
        weight = weight.transpose(1, 2, 3, 0) if depthwise else weight.transpose(0, 2, 3, 1)
        wt = g.const(f"{name}.weight", np.ascontiguousarray(weight))
        bt = g.const(f"{name}.bias", bias.astype(np.float32))
        out = g.activation(name, (b_, oh, ow, out_ch))
        version = 1
    else:
        q, scales = wq
        q = q.transpose(1, 2, 3, 0) if depthwise else q.transpose(0, 2, 3, 1)
        axis = 3 if depthwise else 0
        wt = g.const(
            f"{name}.weight", np.ascontiguousarray(q.astype(np.int8)), Quant(tuple(scales), (0,) * out_ch, axis)
        )
        bq, bscale = int32_bias(bias, x.quant.scale[0], scales)
        bt = g.const(f"{name}.bias", bq, Quant(tuple(bscale), (0,) * out_ch, 0))
        out = g.activation(name, (b_, oh, ow, out_ch), "INT8", out_quant)
        version = 3
    if depthwise:
        opts = g.options(
            "DepthwiseConv2DOptions",
            padding=padding,
            strideW=stride,
            strideH=stride,
            depthMultiplier=1,
            fusedActivationFunction=act,
            dilationWFactor=1,
            dilationHFactor=1,
        )
        g.op("DEPTHWISE_CONV_2D", [x, wt, bt], [out], opts, version=version)
    else:
        opts = g.options(
            "Conv2DOptions",
            padding=padding,
            strideW=stride,
            strideH=stride,
            fusedActivationFunction=act,
            dilationWFactor=1,
            dilationHFactor=1,
        )
        g.op("CONV_2D", [x, wt, bt], [out], opts, version=version)
    return out


def fully_connected(g: FlatGraph, x: Tensor, w: np.ndarray, b: np.ndarray, name: str) -> Tensor:
    wt = g.const(f"{name}.weight", w.astype(np.float32))
    bt = g.const(f"{name}.bias", b.astype(np.float32))
    out = g.activation(name, (x.shape[0], w.shape[0]))
    g.op("FULLY_CONNECTED", [x, wt, bt], [out], g.options("FullyConnectedOptions", keepNumDims=False))
    return out


# --- model parts -------------------------------------------------------------------------------


def stem_input(g: FlatGraph, cfg: FrontendConfig) -> tuple[Tensor, Tensor]:
    """The (B, 1, n_mels, frames) float input and its NHWC view (B, n_mels, frames, 1)."""
    x_in = g.activation(INPUT_NAME, (1, 1, cfg.n_mels, cfg.n_frames))
    return x_in, reshape(g, x_in, (1, cfg.n_mels, cfg.n_frames, 1), "input.nhwc")


def stem(g: FlatGraph, x: Tensor, weight: np.ndarray, name: str, **q) -> Tensor:
    """5x5 stride-2 conv with PyTorch's (2, 2) padding: PAD then VALID."""
    kh = weight.shape[2]
    x = pad(g, x, [(0, 0), (kh // 2, kh // 2), (kh // 2, kh // 2), (0, 0)], f"{name}.pad")
    return conv(g, x, weight, None, name, relu=False, stride=2, **q)


def adaresnorm(g: FlatGraph, x: Tensor, norm, order: list[int], name: str, pooled: bool = False) -> Tensor:
    """gamma*(rho*x + (1-rho)*(x - mean)/sqrt(var + eps)) + beta; var unbiased over (T, C) per (example, F).

    = s*(x - mean) + (a*mean + beta), a = rho*gamma, s = a + (1-rho)*gamma/std. With n values per
    statistic, 1/std = sqrt((n-1)/n) * rsqrt(mean_sq + eps*(n-1)/n): sqrt((n-1)/n) goes into the
    constant. `pooled`: return only the mean over (F, T) of the result (B, 1, 1, C).
    """
    rho, gamma, beta = (f64(p).reshape(-1)[order] for p in (norm.rho, norm.gamma, norm.beta))
    _, _, t_len, c = x.shape
    n = c * t_len
    a = rho * gamma
    k = (1.0 - rho) * gamma * np.sqrt((n - 1) / n)
    mu = mean(g, x, [2, 3], f"{name}.mean")  # (B, F, 1, 1)
    sq = g.activation(f"{name}.sq", x.shape)
    g.op("SQUARED_DIFFERENCE", [x, mu], [sq])  # (x - mean)^2 in one pass
    ms = mean(g, sq, [2, 3], f"{name}.mean_sq")
    eps = g.const(f"{name}.eps", np.array(norm.eps * (n - 1) / n, np.float32))
    inv_std = unary(g, "RSQRT", binary(g, "ADD", ms, eps, f"{name}.var"), f"{name}.inv_std")
    a_t = g.const(f"{name}.a", a.astype(np.float32))
    scale = binary(
        g,
        "ADD",
        binary(g, "MUL", inv_std, g.const(f"{name}.k", k.astype(np.float32)), f"{name}.k_inv"),
        a_t,
        f"{name}.scale",
    )  # (B, F, 1, C)
    # s*(x - mean) + a*mean + beta = s*x + (beta - k*inv_std*mean): one MUL and one ADD at full size
    k_mean = binary(
        g,
        "MUL",
        binary(g, "MUL", inv_std, mu, f"{name}.inv_std_mean"),
        g.const(f"{name}.k", k.astype(np.float32)),
        f"{name}.k_mean",
    )
    shift = binary(g, "SUB", g.const(f"{name}.beta", beta.astype(np.float32)), k_mean, f"{name}.shift")
    if pooled:  # mean over (F, T) of s*x + shift = mean_F(s*mean_T(x) + shift)
        small = binary(
            g,
            "ADD",
            binary(g, "MUL", mean(g, x, [2], f"{name}.mean_t"), scale, f"{name}.scaled_t"),
            shift,
            f"{name}.out_t",
        )
        return mean(g, small, [1], f"{name}.pooled")
    return binary(g, "ADD", binary(g, "MUL", x, scale, f"{name}.scaled"), shift, f"{name}.out")


def path_pointwise(pw, s: np.ndarray, lo: int, half: int) -> tuple[np.ndarray, np.ndarray]:
    """One path's 1x1 conv as a (c, c) conv over the whole tensor in storage order `s`: its
    rows and columns at the path's channels (lo..lo+half in block order), zeros elsewhere, so
    the other path's channels get relu(0) = 0 added."""
    wp, bp = fold_bn(pw.conv, pw.bn)
    c = len(s)
    mine = np.flatnonzero((s >= lo) & (s < lo + half))
    w, b = np.zeros((c, c, 1, 1)), np.zeros(c)
    w[np.ix_(mine, mine)] = wp[np.ix_(s[mine] - lo, s[mine] - lo)]
    b[mine] = bp[s[mine] - lo]
    return w, b


def block(g: FlatGraph, x: Tensor, blk, order: list[int], groups: int, name: str) -> tuple[Tensor, list[int]]:
    """One TF-SepConv block on `x`, whose storage position p holds input channel order[p] ->
    (output, its order). No shuffle, split or concat runs: the block works on the whole tensor
    in whatever order its channels are stored and says where each output channel is.

    - the shuffle is a renaming: storage p holds shuffled channel s[p]; a transition conv's
      output rows are written in shuffled order, so there s[p] = p;
    - both depthwise convs run on all channels as a 3x1 then a 1x3 depthwise conv: each path's
      kernel on its own channels, the identity tap (0, 1, 0) on the other path's;
    - each path's mean and 1x1 conv run on all channels with zero rows/columns off the path
      (path_pointwise): the means are small tensors, so this costs little;
    - the residual is out = x + p_freq + p_time: two broadcast ADDs on the whole tensor.
    Output channel j is shuffled channel j's path result, so the output order is s.
    """
    c, half = blk.half * 2, blk.half
    if blk.transition:
        w, b = fold_bn(blk.trans_conv.conv, blk.trans_conv.bn)
        rows = shuffle_sources(c, groups)
        x = conv(g, x, w[rows][:, order], b[rows], f"{name}.trans", relu=True)
        s = np.arange(c)
    else:
        s = np.array(shuffle_positions(c, groups))[order]
    wf, bf = fold_bn(blk.freq_dw_conv.conv, blk.freq_dw_conv.bn)
    wt, bt = fold_bn(blk.temp_dw_conv.conv, blk.temp_dw_conv.bn)
    freq, time = np.flatnonzero(s < half), np.flatnonzero(s >= half)
    # 3x1 then 1x3 over all channels, each path's kernel on its channels and the identity tap
    # (0, 1, 0) on the others: exact, and faster than one 3x3 with zero taps (docs/tflite.md).
    w31, w13, b = np.zeros((c, 1, 3, 1)), np.zeros((c, 1, 1, 3)), np.zeros(c)
    w31[time, 0, 1, 0], w13[freq, 0, 0, 1] = 1.0, 1.0
    w31[freq, 0, :, 0], b[freq] = wf[s[freq], 0, :, 0], bf[s[freq]]
    w13[time, 0, 0, :], b[time] = wt[s[time] - half, 0, 0, :], bt[s[time] - half]
    d = conv(g, x, w31, None, f"{name}.dw_freq", relu=False, same=True)
    d = conv(g, d, w13, b, f"{name}.dw_time", relu=True, same=True)
    out = x
    for path, pw, axis, lo in (("freq", blk.freq_pw_conv, 1, 0), ("time", blk.temp_pw_conv, 2, half)):
        m = mean(g, d, [axis], f"{name}.{path}.mean")
        wp, bp = path_pointwise(pw, s, lo, half)
        out = binary(g, "ADD", out, conv(g, m, wp, bp, f"{name}.{path}.pw", relu=True), f"{name}.{path}.residual")
    return out, [int(j) for j in s]


def split_transition_block(
    g: FlatGraph, x: Tensor, blk, order: list[int], groups: int, name: str
) -> tuple[Tensor, list[int]]:
    """A transition block as two half-width transition convs (the freq half's rows and the time
    half's, in shuffled order: nothing to split), each path on its own half with its own kernel
    (one 3-tap depthwise conv, not block()'s two passes over all channels; an (h, h) pointwise
    conv, not a zero-padded (c, c) one), then one CONCATENATION: the output is in natural order.
    Faster than block() for transition blocks after the first, slower for the first (full
    resolution, narrow halves): docs/tflite.md has the measurements."""
    c, half = blk.half * 2, blk.half
    w, b = fold_bn(blk.trans_conv.conv, blk.trans_conv.bn)
    rows = np.array(shuffle_sources(c, groups))
    out = []
    paths = (("freq", blk.freq_dw_conv, blk.freq_pw_conv, 1), ("time", blk.temp_dw_conv, blk.temp_pw_conv, 2))
    for k, (path, dw, pw, axis) in enumerate(paths):
        r = rows[k * half : (k + 1) * half]
        xh = conv(g, x, w[r][:, order], b[r], f"{name}.trans.{path}", relu=True)
        wd, bd = fold_bn(dw.conv, dw.bn)
        d = conv(g, xh, wd, bd, f"{name}.{path}.dw", relu=True, same=True)
        m = mean(g, d, [axis], f"{name}.{path}.mean")
        wp, bp = fold_bn(pw.conv, pw.bn)
        out.append(binary(g, "ADD", xh, conv(g, m, wp, bp, f"{name}.{path}.pw", relu=True), f"{name}.{path}.residual"))
    return concat_channels(g, out, f"{name}.concat"), list(range(c))


def add_model(g: FlatGraph, x: Tensor, model, until: int | None = None) -> Tensor:
    """TFSepNet body on the NHWC log-mel -> (B, classes) logits. `until`: stop before feature
    layer `until` and return that tensor (the per-layer profile of benchmarks/peers.py)."""
    from torch import nn

    from tfsep_edge.model.tfsepnet import AdaResNorm, TimeFreqSepConvs

    groups = model.config.groups
    order = [0]
    last = len(model.feature) - 1
    pooled = None
    blocks_seen = 0
    for i, layer in enumerate(model.feature):
        name = f"feature.{i}"
        if i == until:
            return x
        if i == last and isinstance(layer, AdaResNorm):
            pooled = adaresnorm(g, x, layer, order, name, pooled=True)
            break
        if isinstance(layer, nn.Conv2d):
            x = stem(g, x, f64(layer.weight), name)
            order = list(range(layer.out_channels))
        elif isinstance(layer, AdaResNorm):
            x = adaresnorm(g, x, layer, order, name)
        elif isinstance(layer, nn.MaxPool2d):
            x = max_pool(g, x, f"{name}.pool")
        elif isinstance(layer, TimeFreqSepConvs):
            if layer.transition and blocks_seen:
                x, order = split_transition_block(g, x, layer, order, groups, name)
            else:
                x, order = block(g, x, layer, order, groups, name)
            blocks_seen += 1
        else:
            raise TypeError(f"unexpected layer {type(layer).__name__}")
    if pooled is None:
        pooled = mean(g, x, [1, 2], "pool")
    flat = reshape(g, pooled, (pooled.shape[0], pooled.shape[-1]), "flatten")
    w = f64(model.classifier.weight)[:, :, 0, 0][:, order]
    out = fully_connected(g, flat, w, f64(model.classifier.bias), OUTPUT_NAME)
    return out


def build_fp32(
    model, cfg: FrontendConfig = DEFAULT_FRONTEND, until: int | None = None
) -> tuple[FlatGraph, Tensor, Tensor]:
    """The FP32 graph of `model` (eval mode): (graph, input, output); pack it with metadata."""
    g = FlatGraph()
    x_in, x = stem_input(g, cfg)
    return g, x_in, add_model(g, x, model, until)
