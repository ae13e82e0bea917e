"""Hand-built FP32 ONNX graphs of TF-SepNet (and the log-mel front end) from a model's weights.

Why each node or step is built the way it is, with the measurements that decided it:
docs/export.md (figures go stale in code, so they live there).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tfsep_edge.core.config import DEFAULT_FRONTEND, FrontendConfig
from tfsep_edge.model.shuffle import shuffle_sources
from tfsep_edge.signal.frontend import analysis_window, mel_filterbank

BATCH = "batch"
LOGMEL_INPUT = "logmel"
WAVEFORM_INPUT = "waveform"
OUTPUT = "logits"
FRONTEND_OUTPUT = LOGMEL_INPUT + "_fe"  # the in-graph front end's log-mel (export validation reads it)


class GraphBuilder:
    """Collects nodes and initializers with unique, readable names."""

    def __init__(self, opset: int):
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._count: dict[str, int] = {}
        self._scalars: dict[tuple, str] = {}

    def name(self, base: str) -> str:
        n = self._count.get(base, 0)
        self._count[base] = n + 1
        return base if n == 0 else f"{base}_{n}"

    def const(self, base: str, array: np.ndarray) -> str:
        array = np.ascontiguousarray(array)
        # front-end constants stay apart (stored_bytes tells them from model parameters by name)
        key = (base.startswith("fe."), array.dtype.str, array.shape, array.tobytes()) if array.size <= 64 else None
        if key in self._scalars:  # one initializer per distinct small constant (scales, zero points)
            return self._scalars[key]
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(array, name))
        if key is not None:
            self._scalars[key] = name
        return name

    def op(self, op_type: str, inputs: list[str], base: str, **attrs) -> str:
        out = self.name(base)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def op_multi(self, op_type: str, inputs: list[str], bases: list[str], **attrs) -> list[str]:
        outs = [self.name(b) for b in bases]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=outs[0], **attrs))
        return outs

    def reduce(self, op_type: str, x: str, axes: list[int], base: str) -> str:
        # `axes` became an input: ReduceSum at opset 13, ReduceMean/ReduceSumSquare at 18.
        if self.opset >= (13 if op_type == "ReduceSum" else 18):
            return self.op(op_type, [x, self.const(f"{base}.axes", np.array(axes, np.int64))], base, keepdims=1)
        return self.op(op_type, [x], base, axes=axes, keepdims=1)


def _f32(t) -> np.ndarray:
    """A torch tensor or an array (int8_graph's float parameters) as float64 numpy."""
    if isinstance(t, np.ndarray):
        return t.astype(np.float64)
    return t.detach().cpu().double().numpy()


def fold_bn(conv, bn) -> tuple[np.ndarray, np.ndarray]:
    """Conv (no bias) followed by eval-mode BatchNorm -> (weight, bias) in float64."""
    scale = _f32(bn.weight) / np.sqrt(_f32(bn.running_var) + bn.eps)
    w = _f32(conv.weight) * scale[:, None, None, None]
    b = _f32(bn.bias) - _f32(bn.running_mean) * scale
    return w, b


def add_adaresnorm(
    g: GraphBuilder, x: str, norm, order: list[int], freqs: int, frames: int, base: str, pooled: bool = False
) -> str:
    """gamma*(rho*x + (1-rho)*(x-mean)/sqrt(var+eps)) + beta, var unbiased over (C, T) per (example, F).

    Written as s*(x - mean) + (a*mean + beta) with a = rho*gamma, s = a + (1-rho)*gamma/std: per
    (example, channel, frequency) scale and shift, so two full-size passes instead of seven.
    onnxruntime broadcasts a (B,C,F,1) operand over the short innermost T axis slowly, so each
    such operand is first spelled out to (.., T) by a K=1 MatMul with a row of ones (fast), then
    combined elementwise. Reductions run over T (contiguous) first, then over C.
    """
    rho, gamma, beta = (_f32(p).reshape(-1)[order] for p in (norm.rho, norm.gamma, norm.beta))
    c = len(order)
    n = c * frames  # elements per (example, frequency) statistic
    a = (rho * gamma).reshape(1, c, 1, 1)
    # Over C a mean of the sums, ms = sumsq / c, not a ReduceSum: OpenVINO 2026.4's ARM plugin
    # rewrites a ReduceSum's axis into an invalid one and refuses the graph (docs/export.md).
    # 1/sqrt(sumsq/(n-1) + eps) = sqrt((n-1)/c) * (ms + eps*(n-1)/c)^-0.5: sqrt((n-1)/c) goes into b.
    b = ((1.0 - rho) * gamma * np.sqrt((n - 1) / c)).reshape(1, c, 1, 1)
    ones = g.const(f"const.ones_{frames}", np.ones((1, frames), np.float32))
    mean_t = g.reduce("ReduceMean", x, [3], f"{base}.mean_t")  # (B,C,F,1)
    mean = g.reduce("ReduceMean", mean_t, [1], f"{base}.mean")  # (B,1,F,1)
    mean_full = g.op("MatMul", [mean, ones], f"{base}.mean_full")  # (B,1,F,T): broadcast over C is fast
    centred = g.op("Sub", [x, mean_full], f"{base}.centred")
    ss_t = g.reduce("ReduceSumSquare", centred, [3], f"{base}.ss_t")  # (B,C,F,1)
    ms = g.reduce("ReduceMean", ss_t, [1], f"{base}.sumsq_c")  # (B,1,F,1): sumsq / c
    shifted = g.op("Add", [ms, g.const(f"{base}.eps", np.array(norm.eps * (n - 1) / c, np.float32))], f"{base}.ss_eps")
    inv_std = g.op("Pow", [shifted, g.const(f"{base}.minus_half", np.array(-0.5, np.float32))], f"{base}.inv_std")
    b_inv = g.op("Mul", [inv_std, g.const(f"{base}.b", b.astype(np.float32))], f"{base}.b_inv")  # (B,C,F,1)
    a_const = g.const(f"{base}.a", a.astype(np.float32))
    scale = g.op("Add", [b_inv, a_const], f"{base}.scale")
    shift = g.op(
        "Add",
        [
            g.op("Mul", [mean, a_const], f"{base}.a_mean"),
            g.const(f"{base}.beta", beta.reshape(1, c, 1, 1).astype(np.float32)),
        ],
        f"{base}.shift",
    )
    if pooled:  # only the mean over (F, T) is needed: mean_T(s*(x - mean) + shift) = s*(mean_t - mean) + shift
        centred_t = g.op("Sub", [mean_t, mean], f"{base}.centred_t")
        small = g.op("Add", [g.op("Mul", [centred_t, scale], f"{base}.scaled_t"), shift], f"{base}.out_t")
        return g.reduce("ReduceMean", small, [2], f"{base}.pooled")  # (B,C,1,1)
    scaled = g.op("Mul", [centred, g.op("MatMul", [scale, ones], f"{base}.scale_full")], f"{base}.scaled")
    return g.op("Add", [scaled, g.op("MatMul", [shift, ones], f"{base}.shift_full")], f"{base}.out")


def add_conv(g: GraphBuilder, x: str, w: np.ndarray, b: np.ndarray | None, base: str, relu: bool, **attrs) -> str:
    inputs = [x, g.const(f"{base}.weight", w.astype(np.float32))]
    if b is not None:
        inputs.append(g.const(f"{base}.bias", b.astype(np.float32)))
    y = g.op("Conv", inputs, base, **attrs)
    return g.op("Relu", [y], f"{base}.relu") if relu else y


def add_block(g: GraphBuilder, x: str, block, order: list[int], groups: int, freqs: int, frames: int, base: str) -> str:
    """One TF-SepConv block on a tensor whose storage position p holds logical channel order[p].

    Returns the block output in natural channel order. A transition conv's output rows are
    permuted so the shuffle is free and a Split yields both halves; otherwise the shuffle and
    split are two constant-index Gathers (plain block copies).
    """
    c, half = block.half * 2, block.half
    sources = shuffle_sources(c, groups)

    if block.transition:
        w, b = fold_bn(block.trans_conv.conv, block.trans_conv.bn)
        rows = sources
        x = add_conv(g, x, w[rows][:, order], b[rows], f"{base}.trans", relu=True)
        x1, x2 = g.op_multi(
            "Split",
            [x, g.const(f"{base}.split", np.array([half, half], np.int64))],
            [f"{base}.x1", f"{base}.x2"],
            axis=1,
        )
    else:
        where = {ch: p for p, ch in enumerate(order)}
        idx = np.array([where[src] for src in sources], np.int64)
        x1 = g.op("Gather", [x, g.const(f"{base}.idx1", idx[:half])], f"{base}.x1", axis=1)
        x2 = g.op("Gather", [x, g.const(f"{base}.idx2", idx[half:])], f"{base}.x2", axis=1)
    halves = []
    for name, xi, dw, pw, axis, kernel, pads in (
        ("freq", x1, block.freq_dw_conv, block.freq_pw_conv, 2, [3, 1], [1, 0, 1, 0]),
        ("time", x2, block.temp_dw_conv, block.temp_pw_conv, 3, [1, 3], [0, 1, 0, 1]),
    ):
        wd, bd = fold_bn(dw.conv, dw.bn)
        d = add_conv(g, xi, wd, bd, f"{base}.{name}.dw", relu=True, group=half, pads=pads, kernel_shape=kernel)
        m = g.reduce("ReduceMean", d, [axis], f"{base}.{name}.mean")
        wp, bp = fold_bn(pw.conv, pw.bn)
        p = add_conv(g, m, wp, bp, f"{base}.{name}.pw", relu=True)
        full = spell_out(g, p, axis, half, freqs, frames, f"{base}.{name}")
        halves.append(g.op("Add", [xi, full], f"{base}.{name}.residual"))
    return g.op("Concat", halves, f"{base}.out", axis=1)


def spell_out(g: GraphBuilder, p: str, axis: int, channels: int, freqs: int, frames: int, base: str) -> str:
    """(B,C,1,T) (axis 2) or (B,C,F,1) (axis 3) -> (B,C,F,T), exactly.

    onnxruntime's broadcasting Add is slow on these shapes (short innermost runs of T); spelling
    the broadcast out first and adding same-shape tensors is ~3x faster: Expand along F (row
    copies), and along T a K=1 MatMul with a row of ones (Expand along the innermost axis is slow).
    """
    if axis == 2:
        shape = g.const(f"{base}.full_shape", np.array([1, channels, freqs, frames], np.int64))
        return g.op("Expand", [p, shape], f"{base}.expand")
    return g.op("MatMul", [p, g.const(f"const.ones_{frames}", np.ones((1, frames), np.float32))], f"{base}.expand")


def add_model(g: GraphBuilder, x: str, model, n_mels: int, frames: int) -> str:
    """TFSepNet body on log-mel `x` (B,1,n_mels,frames) -> logits (B, classes)."""
    from torch import nn

    from tfsep_edge.model.tfsepnet import AdaResNorm, TimeFreqSepConvs

    groups = model.config.groups
    order: list[int] = [0]
    f, t = n_mels, frames
    last = len(model.feature) - 1
    pooled = None
    for i, layer in enumerate(model.feature):
        base = f"feature.{i}"
        if i == last and isinstance(layer, AdaResNorm):
            # The classifier's 1x1 conv and the global mean commute: pool inside the last norm.
            pooled = add_adaresnorm(g, x, layer, order, f, t, base, pooled=True)
            break
        if isinstance(layer, nn.Conv2d):
            w = _f32(layer.weight)
            x = add_conv(g, x, w, None, base, relu=False, kernel_shape=[5, 5], strides=[2, 2], pads=[2, 2, 2, 2])
            order = list(range(w.shape[0]))
            f, t = (f + 4 - 5) // 2 + 1, (t + 4 - 5) // 2 + 1
        elif isinstance(layer, AdaResNorm):
            x = add_adaresnorm(g, x, layer, order, f, t, base)
        elif isinstance(layer, nn.MaxPool2d):
            x = g.op("MaxPool", [x], f"{base}.pool", kernel_shape=[2, 2], strides=[2, 2])
            f, t = f // 2, t // 2
        elif isinstance(layer, TimeFreqSepConvs):
            x = add_block(g, x, layer, order, groups, f, t, base)
            order = list(range(len(order) if not layer.transition else layer.half * 2))
        else:
            raise TypeError(f"unexpected layer {type(layer).__name__}")
    if pooled is None:
        pooled = g.op("GlobalAveragePool", [x], "pool")
    flat = g.op("Flatten", [pooled], "flatten", axis=1)
    w = _f32(model.classifier.weight)[:, :, 0, 0][:, order]
    b = _f32(model.classifier.bias)
    return g.op(
        "Gemm",
        [flat, g.const("classifier.weight", w.astype(np.float32)), g.const("classifier.bias", b.astype(np.float32))],
        OUTPUT,
        transB=1,
    )


def dft_split(n_fft: int) -> tuple[int, int]:
    """n_fft = n1 * n2 with n1 <= n2 as close as possible (fewest multiply-adds)."""
    n1 = int(np.sqrt(n_fft))
    while n_fft % n1:
        n1 -= 1
    return n1, n_fft // n1


def add_frontend(g: GraphBuilder, wave: str, cfg: FrontendConfig = DEFAULT_FRONTEND) -> str:
    """Waveform (B, clip_samples) -> log-mel (B, 1, n_mels, n_frames), as frontend.log_mel_torch.

    DFT of each frame x[n], n = n2_size*n1 + n2: A[k1, n2] = sum_n1 x W_{N1}^{n1 k1}, twiddle by
    W_N^{n2 k1}, then X[k1 + N1 k2] = sum_n2 A' W_{N2}^{n2 k2}. Only the bins with a nonzero mel
    weight are computed (the Nyquist bin has none).
    """
    n, hop, samples = cfg.n_fft, cfg.hop_length, cfg.clip_samples
    fb = np.asarray(mel_filterbank(cfg), dtype=np.float64)  # (n_mels, n // 2 + 1)
    used = np.nonzero(fb.any(axis=0))[0]
    n_bins = int(used[-1]) + 1
    n1, n2 = dft_split(n)
    k2_count = -(-n_bins // n1)  # bins k = k1 + n1 * k2 < n1 * k2_count
    # Pre-emphasis (drops one sample), centred reflect padding.
    head = g.op(
        "Slice",
        [
            wave,
            g.const("fe.s1", np.array([1], np.int64)),
            g.const("fe.end", np.array([samples], np.int64)),
            axis := g.const("fe.axis", np.array([1], np.int64)),
        ],
        "fe.head",
    )
    tail = g.op(
        "Slice",
        [
            wave,
            g.const("fe.s0", np.array([0], np.int64)),
            g.const("fe.e1", np.array([samples - 1], np.int64)),
            axis,
        ],
        "fe.tail",
    )
    emph = g.op(
        "Sub",
        [head, g.op("Mul", [tail, g.const("fe.preemphasis", np.array(cfg.preemphasis, np.float32))], "fe.scaled")],
        "fe.emphasized",
    )
    # Centred reflect padding; framing without a per-sample Gather (slow in onnxruntime): with
    # n = q*hop + r, frame t = blocks t..t+q-1 and the first r samples of block t+q, where the
    # padded signal is cut into blocks of hop samples. Reflection past the last frame's end is
    # never read; it only completes the last block.
    frames = cfg.n_frames
    q, r = divmod(n, hop)
    n_blocks = frames - 1 + q + (1 if r else 0)
    pad = n // 2
    extra = n_blocks * hop - (samples - 1 + 2 * pad)
    padded = g.op(
        "Pad",
        [emph, g.const("fe.pads", np.array([0, pad, 0, pad + max(extra, 0)], np.int64))],
        "fe.padded",
        mode="reflect",
    )
    if extra < 0:
        padded = g.op(
            "Slice",
            [
                padded,
                g.const("fe.s0", np.array([0], np.int64)),
                g.const("fe.blocks_end", np.array([n_blocks * hop], np.int64)),
                axis,
            ],
            "fe.trimmed",
        )
    blocks = g.op("Reshape", [padded, g.const("fe.blocks_shape", np.array([-1, n_blocks, hop], np.int64))], "fe.blocks")
    pieces = []
    for j in range(q + (1 if r else 0)):
        starts, ends, axes = [j], [j + frames], [1]
        if j == q:  # the partial block
            starts, ends, axes = [j, 0], [j + frames, r], [1, 2]
        pieces.append(
            g.op(
                "Slice",
                [
                    blocks,
                    g.const(f"fe.start{j}", np.array(starts, np.int64)),
                    g.const(f"fe.end{j}", np.array(ends, np.int64)),
                    g.const(f"fe.axes{len(axes)}", np.array(axes, np.int64)),
                ],
                f"fe.piece{j}",
            )
        )
    framed = g.op("Concat", pieces, "fe.framed", axis=2) if len(pieces) > 1 else pieces[0]  # (B, frames, n)
    framed = g.op("Reshape", [framed, g.const("fe.split_shape", np.array([-1, frames, n1, n2], np.int64))], "fe.frames")
    window = np.asarray(analysis_window(cfg), np.float64)
    if cfg.win_length != n:
        off = (n - cfg.win_length) // 2
        window = np.pad(window, (off, n - cfg.win_length - off))
    windowed = g.op("Mul", [framed, g.const("fe.window", window.reshape(n1, n2).astype(np.float32))], "fe.windowed")
    # Stage 1: real DFT over n1 as a left matmul (2*n1, n1) @ (n1, n2), rows interleaved
    # (2*k1: Re A[k1, n2], 2*k1 + 1: Im), so row pairs become one row of 2*n2 after a reshape.
    k1 = np.arange(n1)
    ang1 = -2 * np.pi * np.outer(k1, np.arange(n1)) / n1
    left = np.stack([np.cos(ang1), np.sin(ang1)], axis=1).reshape(2 * n1, n1)
    a = g.op("MatMul", [g.const("fe.dft1", left.astype(np.float32)), windowed], "fe.stage1")  # (B,F,2n1,n2)
    # Twiddle by W_N^{n2 k1}: Re' = Re c - Im s, Im' = Im c + Re s, elementwise on the
    # interleaved rows with the partner row brought in by a constant-index Gather.
    ang_t = -2 * np.pi * np.outer(k1, np.arange(n2)) / n  # (n1, n2)
    tw_c, tw_s = np.cos(ang_t), np.sin(ang_t)
    swap = np.arange(2 * n1).reshape(n1, 2)[:, ::-1].reshape(-1)
    swapped = g.op("Gather", [a, g.const("fe.swap", swap.astype(np.int64))], "fe.swapped", axis=2)
    mul_a = np.repeat(tw_c, 2, axis=0)
    mul_b = np.stack([-tw_s, tw_s], axis=1).reshape(2 * n1, n2)
    twiddled = g.op(
        "Add",
        [
            g.op("Mul", [a, g.const("fe.tw_a", mul_a.astype(np.float32))], "fe.tw1"),
            g.op("Mul", [swapped, g.const("fe.tw_b", mul_b.astype(np.float32))], "fe.tw2"),
        ],
        "fe.twiddled",
    )
    rows = g.op(
        "Reshape", [twiddled, g.const("fe.rows_shape", np.array([-1, frames, n1, 2 * n2], np.int64))], "fe.rows"
    )
    # Stage 2 over n2, one GEMM: [Re' | Im'] @ [[C, -S], [S, C]] = [Xr | Xi] (exp(-i t) = cos - i sin).
    ang2 = 2 * np.pi * np.outer(np.arange(n2), np.arange(k2_count)) / n2
    cos2, sin2 = np.cos(ang2), np.sin(ang2)
    right = np.block([[cos2, -sin2], [sin2, cos2]])  # (2 n2, 2 k2)
    spec = g.op("MatMul", [rows, g.const("fe.dft2", right.astype(np.float32))], "fe.stage2")  # (B,F,n1,2k2)
    sq = g.op("Mul", [spec, spec], "fe.squares")
    last = g.const("fe.last_axis", np.array([3], np.int64))
    re2 = g.op(
        "Slice",
        [sq, g.const("fe.zero", np.array([0], np.int64)), g.const("fe.k2", np.array([k2_count], np.int64)), last],
        "fe.re2",
    )
    im2 = g.op(
        "Slice",
        [
            sq,
            g.const("fe.k2", np.array([k2_count], np.int64)),
            g.const("fe.2k2", np.array([2 * k2_count], np.int64)),
            last,
        ],
        "fe.im2",
    )
    power = g.op("Add", [re2, im2], "fe.power")  # (B, F, n1, k2)
    flat = g.op(
        "Reshape", [power, g.const("fe.flat_shape", np.array([-1, frames, n1 * k2_count], np.int64))], "fe.power_flat"
    )
    # Flat index k1 * k2_count + k2 holds bin k1 + n1 * k2: permute the filterbank rows to match.
    bins = (np.arange(n1)[:, None] + n1 * np.arange(k2_count)[None, :]).reshape(-1)
    fbt = np.zeros((n1 * k2_count, fb.shape[0]))
    ok = bins < fb.shape[1]
    fbt[ok] = fb[:, bins[ok]].T
    mel = g.op("MatMul", [flat, g.const("fe.mel_filterbank", fbt.astype(np.float32))], "fe.mel")  # (B,F,n_mels)
    logged = g.op(
        "Log",
        [g.op("Add", [mel, g.const("fe.log_offset", np.array(cfg.log_offset, np.float32))], "fe.mel_offset")],
        "fe.log",
    )
    normed = g.op(
        "Mul",
        [
            g.op("Add", [logged, g.const("fe.shift", np.array(cfg.norm_shift, np.float32))], "fe.shifted"),
            g.const("fe.inv_scale", np.array(1.0 / cfg.norm_scale, np.float32)),
        ],
        "fe.normalized",
    )
    spec_t = g.op("Transpose", [normed], "fe.transposed", perm=[0, 2, 1])
    return g.op("Unsqueeze", [spec_t, g.const("fe.unsqueeze_axes", np.array([1], np.int64))], FRONTEND_OUTPUT)


def add_input(g: GraphBuilder, frontend: bool, cfg: FrontendConfig):
    """The graph input (waveform with the front end inside, or log-mel) -> (value info, log-mel name)."""
    if frontend:
        graph_input = helper.make_tensor_value_info(WAVEFORM_INPUT, TensorProto.FLOAT, [BATCH, cfg.clip_samples])
        return graph_input, add_frontend(g, WAVEFORM_INPUT, cfg)
    shape = [BATCH, 1, cfg.n_mels, cfg.n_frames]
    return helper.make_tensor_value_info(LOGMEL_INPUT, TensorProto.FLOAT, shape), LOGMEL_INPUT


def build_fp32(model, frontend: bool, opset: int, cfg: FrontendConfig = DEFAULT_FRONTEND) -> onnx.ModelProto:
    """The clean FP32 graph of `model` (eval mode), taking log-mel or waveform input."""
    g = GraphBuilder(opset)
    graph_input, x = add_input(g, frontend, cfg)
    add_model(g, x, model, cfg.n_mels, cfg.n_frames)
    return finish_model(g, graph_input, model.config.num_classes)


def finish_model(g: GraphBuilder, graph_input, num_classes: int) -> onnx.ModelProto:
    """Wrap the builder's nodes into a model with a dynamic batch and an IR version ORT reads."""
    out = helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [BATCH, num_classes])
    graph = helper.make_graph(g.nodes, "tfsep_net", [graph_input], [out], initializer=g.inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", g.opset)], producer_name="tfsep-edge")
    m.ir_version = 8 if g.opset <= 17 else 9
    return m
