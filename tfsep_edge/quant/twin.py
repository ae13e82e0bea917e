"""The fake-quant twin: float ops with fake quantization at exactly the INT8 model's points,
scales and zero points. The INT8 ONNX mirrors it op for op, and export validation compares with it."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from tfsep_edge.core.config import DEFAULT_FRONTEND, FrontendConfig
from tfsep_edge.model.tfsepnet import ConvBlock
from tfsep_edge.quant import integer_kernels as K
from tfsep_edge.quant.bias_grid import bias_grid, grid_ints, on_grid
from tfsep_edge.quant.integer_norm import IntegerMean, IntegerNorm, IntegerQuantize, straight_through
from tfsep_edge.quant.integer_norm import on_grid as integers_of
from tfsep_edge.quant.ready import (
    FloatIsland,
    QBlock,
    QBroadcastBlock,
    QLayer,
    QTFSepNet,
    float_stem,
    layer_conv,
)

# --- fake-quant twin ----------------------------------------------------------------------------


def _act_range(dtype: str) -> tuple[int, int, int]:
    """(quant_min, quant_max, zero-point shift) to express a quint8 activation in `dtype`."""
    if dtype == "int8":
        return -128, 127, -128
    if dtype == "uint8":
        return 0, 255, 0
    raise ValueError(f"act_dtype {dtype!r}: use 'int8' or 'uint8'")


class FakeQuant(nn.Module):
    """Per-tensor fake quantization with fixed qparams (exports to QuantizeLinear/DequantizeLinear)."""

    def __init__(self, scale: float, zero_point: int, act_dtype: str):
        super().__init__()
        qmin, qmax, shift = _act_range(act_dtype)
        self.scale, self.zero_point = float(scale), int(zero_point) + shift
        self.quant_min, self.quant_max = qmin, qmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fake_quantize_per_tensor_affine(x, self.scale, self.zero_point, self.quant_min, self.quant_max)


class FakeQuantConv(nn.Module):
    """Conv2d (+ReLU) with per-channel fake-quantized weights, its bias rounded onto the int32
    accumulator grid s_in * s_w (bias_grid: as the exports store it and int8 kernels add it) when
    the input scale is known, and a fake-quantized output."""

    def __init__(self, qconv: nn.Module, relu: bool, act_dtype: str, in_scale: float | None = None):
        super().__init__()
        w = qconv.weight()
        self.weight = nn.Parameter(w.dequantize(), requires_grad=False)
        self.register_buffer("w_scale", w.q_per_channel_scales().to(torch.float32))
        self.register_buffer("w_zero_point", w.q_per_channel_zero_points().to(torch.int32))
        bias = qconv.bias()
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False) if bias is not None else None
        grid = None
        if bias is not None and in_scale is not None:
            grid = torch.from_numpy(bias_grid(in_scale, self.w_scale.numpy()))
        self.register_buffer("bias_scale", grid)
        self.stride, self.padding = qconv.stride, qconv.padding
        self.dilation, self.groups = qconv.dilation, qconv.groups
        self.relu = relu
        self.out = FakeQuant(qconv.scale, qconv.zero_point, act_dtype)
        self.in_scale = None if in_scale is None else float(np.float32(in_scale))
        self.exact = False  # an integer model's twin: the int8 kernel's output (integer_twin sets it)

    def grid_bias(self) -> torch.Tensor | None:
        """The bias on its int32 grid (bias_grid.on_grid); gradients pass straight through the
        rounding, so fine-tuning still moves it."""
        if self.bias is None or self.bias_scale is None:
            return self.bias
        snapped = torch.from_numpy(on_grid(self.bias.detach().numpy(), self.bias_scale.numpy()))
        return self.bias + (snapped - self.bias).detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.fake_quantize_per_channel_affine(self.weight, self.w_scale, self.w_zero_point, 0, -128, 127)
        y = nn.functional.conv2d(x, w, self.grid_bias(), self.stride, self.padding, self.dilation, self.groups)
        if self.relu:
            y = torch.relu(y)
        y = self.out(y)
        return self.exact_output(x, y) if self.exact else y

    def exact_output(self, x: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
        """What the int8 CONV_2D / DEPTHWISE_CONV_2D computes: the int32 accumulator of the input's
        integers (x sits on its point's grid, so x / s_in is q - zp exactly; padding is zero there,
        as the kernels pad with the zero point) and the int8 weights, plus the int32 bias, then
        integer_kernels.requantize; the float conv's gradient (straight-through). The float conv
        differs from it by a rounding step here and there, which an integer model's norms
        amplify in quiet rows (docs/quantization.md)."""
        grid = self.bias_scale.numpy() if self.bias_scale is not None else None
        q = torch.round(x.detach().double() / self.in_scale)
        wq = torch.round(self.weight.detach().double() / self.w_scale.double().reshape(-1, 1, 1, 1)).clamp(-128, 127)
        bq = None if self.bias is None else torch.from_numpy(grid_ints(self.bias.detach().numpy(), grid)).double()
        acc = nn.functional.conv2d(q, wq, bq, self.stride, self.padding, self.dilation, self.groups)
        acc = acc.permute(0, 2, 3, 1).numpy().astype(np.int64)  # requantize takes channels last
        out = K.requantize(acc, self.in_scale, self.w_scale.numpy(), self.out.scale, self.out.zero_point, self.relu)
        exact = torch.from_numpy(K.dequantize(out, self.out.scale, self.out.zero_point)).permute(0, 3, 1, 2)
        return surrogate + (exact.to(surrogate.dtype) - surrogate).detach()


class FakeQuantFunctional(nn.Module):
    """FloatFunctional's add/add_relu/cat followed by fake quantization with the int8 op's qparams."""

    def __init__(self, scale: float, zero_point: int, act_dtype: str):
        super().__init__()
        self.out = FakeQuant(scale, zero_point, act_dtype)

    def add(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.out(a + b)

    def add_relu(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(a + b))

    def cat(self, xs: list[torch.Tensor], dim: int = 0) -> torch.Tensor:
        return self.out(torch.cat(xs, dim=dim))


class IntegerAdd(nn.Module):
    """An integer model's residual add: the int8 ADD's output (integer_kernels.add on the
    integers of its operands, each on its producer's point), the float add's gradient."""

    def __init__(self, add: FakeQuantFunctional, a: tuple[float, int], b: tuple[float, int]):
        super().__init__()
        self.out = add.out  # the add's point: what describe() and the exports read
        self.a, self.b = a, b

    def add(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        surrogate = self.out(a + b)
        out = (self.out.scale, self.out.zero_point)
        exact = K.add(integers_of(a, *self.a), *self.a, integers_of(b, *self.b), *self.b, *out)
        return straight_through(exact, *out, surrogate)


class FakeQuantMean(nn.Module):
    """Mean over one axis, requantized to its input's qparams (what quantized mean does)."""

    def __init__(self, dim: int, scale: float, zero_point: int, act_dtype: str):
        super().__init__()
        self.dim = dim
        self.out = FakeQuant(scale, zero_point, act_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(x.mean(self.dim, keepdim=True))


def qconv_of(layer: nn.Module) -> tuple[nn.Module, bool]:
    """The quantized conv inside an int8 QLayer, and whether it has a fused ReLU."""
    body = layer.body
    conv = body.conv if isinstance(body, ConvBlock) or hasattr(body, "conv") else body
    return conv, "ReLU" in type(conv).__name__


def conv_input_scales(int8_model: nn.Module, cfg: FrontendConfig = DEFAULT_FRONTEND) -> dict[str, float]:
    """The input scale of every int8 QLayer (by name), read off one forward pass of `int8_model`
    on a zero log-mel of `cfg`'s shape (run it under its quantized engine): it places each
    conv's int32 bias grid. The scales are the model's qparams, so any input gives them."""
    example = torch.zeros(1, 1, cfg.n_mels, cfg.n_frames)
    scales: dict[str, float] = {}
    hooks = [
        m.register_forward_pre_hook(lambda _m, args, name=name: scales.__setitem__(name, args[0].q_scale()))
        for name, m in int8_model.named_modules()
        if isinstance(m, QLayer) and not m.float_island
    ]
    try:
        with torch.no_grad():
            int8_model(example)
    finally:
        for h in hooks:
            h.remove()
    return scales


def _fake_quant_mean(q: nn.Module, branch: str, dim: int, act_dtype: str) -> FakeQuantMean:
    """The twin of block `q`'s `<branch>_mean`: a float island has its own output point, an
    int8 mean keeps its input's (the depthwise conv's output)."""
    prev = q.get_submodule(f"{branch}_dw_conv")
    mean = q.get_submodule(f"{branch}_mean")
    if mean.float_island:
        s, z = mean.quant.scale.item(), mean.quant.zero_point.item()
    elif prev.float_island:
        s, z = prev.quant.scale.item(), prev.quant.zero_point.item()
    else:
        qconv, _ = qconv_of(prev)
        s, z = qconv.scale, qconv.zero_point
    return FakeQuantMean(dim, s, z, act_dtype)


def build_fake_quant(
    int8_model: nn.Module,
    float_qready: QTFSepNet,
    act_dtype: str = "int8",
    in_scales: dict[str, float] | None = None,
    integer_points: dict | None = None,
    frames: int = DEFAULT_FRONTEND.n_frames,
) -> QTFSepNet:
    """Float twin of `int8_model`: same structure as `float_qready`, every int8 op replaced by its
    float op + fake quantization with the int8 model's scales/zero points. `in_scales`
    (conv_input_scales) puts each conv's bias on its int32 grid; without it biases stay float.
    `integer_points` (an integer model's, calibrate.integer_points): the input quantization, the
    means, the AdaResNorms and the global mean become their exact integer ops (integer_twin)."""
    given = in_scales is not None
    in_scales = in_scales or {}
    fq = copy.deepcopy(float_qready).eval()
    stem = float_stem(fq)
    if fq.feature[0].float_island:  # the input is not quantized
        fq.quant = nn.Identity()
    else:
        fq.quant = FakeQuant(int8_model.quant.scale.item(), int8_model.quant.zero_point.item(), act_dtype)
    fq.dequant = nn.Identity()
    for name, m in list(fq.named_modules()):
        if not isinstance(m, (FloatIsland, QLayer, QBlock, QBroadcastBlock)):
            continue
        q = int8_model.get_submodule(name)
        if isinstance(m, FloatIsland):
            m.dequant = nn.Identity()
            m.quant = FakeQuant(q.quant.scale.item(), q.quant.zero_point.item(), act_dtype)
        elif isinstance(m, QLayer):
            if m.float_island:
                m.dequant = nn.Identity()
                if any(m is layer for layer in stem):
                    m.quant = nn.Identity()
                else:
                    m.quant = FakeQuant(q.quant.scale.item(), q.quant.zero_point.item(), act_dtype)
            else:
                qconv, relu = qconv_of(q)
                if given and name not in in_scales:  # else its bias would stay float, off the exports' grid
                    raise ValueError(f"conv_input_scales has no input scale for {name}")
                m.body = FakeQuantConv(qconv, relu, act_dtype, in_scales.get(name))
        elif isinstance(m, QBlock):
            for branch, dim in (("freq", 2), ("temp", 3)):
                setattr(m, f"{branch}_mean", _fake_quant_mean(q, branch, dim, act_dtype))
                add = q.get_submodule(f"{branch}_add")
                setattr(m, f"{branch}_add", FakeQuantFunctional(add.scale, add.zero_point, act_dtype))
            m.concat = FakeQuantFunctional(q.concat.scale, q.concat.zero_point, act_dtype)
        elif isinstance(m, QBroadcastBlock):
            m.freq_mean = _fake_quant_mean(q, "freq", 2, act_dtype)
            for add in ("residual", "broadcast") if not m.transition else ("broadcast",):
                qadd = q.get_submodule(add)
                setattr(m, add, FakeQuantFunctional(qadd.scale, qadd.zero_point, act_dtype))
    if integer_points is not None:
        if act_dtype != "int8":
            raise ValueError("an integer model's twin has int8 activations")
        integer_twin(fq, int8_model, integer_points, frames)
    return fq


def _point(m: nn.Module) -> tuple[float, int]:
    return float(m.scale), int(m.zero_point)


def integer_twin(fq: QTFSepNet, int8_model: nn.Module, points: dict, frames: int) -> None:
    """The integer ops of an integer model in place of their float versions in the twin `fq`
    (int8 activations): exact QUANTIZE at the input, every AdaResNorm as an IntegerNorm (its
    gamma, rho, beta the INT8 model's, which fine-tuning moves), exact int8 means and an int8
    global mean at the calibrated "pool" point, and every conv's int8 kernel output (exact_output:
    the norms amplify a float conv's rounding steps). Walks the layers tracking each tensor's
    point and its time length (`frames` at the input: the norms' statistics count C * T values)."""
    for conv in fq.modules():
        if isinstance(conv, FakeQuantConv) and conv.in_scale is not None:
            conv.exact = True
    fq.quant = IntegerQuantize(fq.quant.scale, fq.quant.zero_point)
    x = _point(fq.quant)
    for i, layer in enumerate(fq.feature):
        name = f"feature.{i}"
        if isinstance(layer, QLayer):
            x = _point(layer.body.out if isinstance(layer.body, FakeQuantConv) else layer.quant)
            conv = layer.body if isinstance(layer.body, FakeQuantConv) else layer_conv(layer)
            kw, stride, pad = conv.weight.shape[-1], conv.stride[-1], conv.padding[-1]
            frames = (frames + 2 * pad - kw) // stride + 1
        elif isinstance(layer, nn.MaxPool2d):
            frames //= 2
        elif isinstance(layer, FloatIsland):
            body = int8_model.get_submodule(name).body
            n = body.rho.numel() * frames
            wide = name in points.get("wide_norms", ())
            fq.feature[i] = IntegerNorm(body, x, points["norms"][name], _point(layer.quant), n, wide)
            x = _point(fq.feature[i])
        elif isinstance(layer, QBlock):
            halves = _point(layer.trans_conv.body.out) if layer.transition else x  # the shuffle keeps points
            for branch, dim in (("freq", 2), ("temp", 3)):
                dw = getattr(layer, f"{branch}_dw_conv")
                mean = getattr(layer, f"{branch}_mean")
                setattr(layer, f"{branch}_mean", IntegerMean((dim,), _point(dw.body.out), _point(mean.out)))
                pw_out = _point(getattr(layer, f"{branch}_pw_conv").body.out)
                setattr(layer, f"{branch}_add", IntegerAdd(getattr(layer, f"{branch}_add"), halves, pw_out))
            x = _point(layer.concat.out)
        elif isinstance(layer, QBroadcastBlock):  # quantize_model refuses it first; never a stale point
            raise ValueError(f"{name}: BC-ResNet's block has no integer form (its SiLU)")
    cls = fq.classifier.body
    fq.pool = IntegerMean((2, 3), _point(cls.out), tuple(points["pool"]), keepdim=False)


def output_step(fq: QTFSepNet) -> float:
    """The scale of the twin's last quantization point (the classifier's output): logits are means
    of integers on this grid, so export validation states its INT8 tolerance in these steps."""
    if fq.pool is not None:  # an integer model: logits are the int8 global mean's values
        return float(fq.pool.scale)
    cls = fq.classifier
    point = cls.body.out if isinstance(cls.body, FakeQuantConv) else cls.quant
    return float(point.scale)
