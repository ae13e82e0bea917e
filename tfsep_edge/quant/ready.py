"""The quantization-ready model: containers that mark TF-SepNet's quantization points
(QTFSepNet/QBlock/QLayer/FloatIsland/AxisMean wrap the float model's own modules), and fusion."""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn

from tfsep_edge.core.errors import TfsepError
from tfsep_edge.model.tfsepnet import AdaResNorm, ChannelShuffle, ConvBlock, TFSepNet, TimeFreqSepConvs

# --- the quantization-ready model -----------------------------------------------------------
# Same weights as TFSepNet; the containers below only add quant stubs, FloatFunctionals and
# named mean ops so that every quantization point is a module the eager flow (and the
# fake-quant twin) can see. TFSepNet's own float behaviour is untouched.


class QLayer(nn.Module):
    """One conv unit (stem, fused Conv-BN-ReLU, classifier); int8, or a float island."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body
        self.float_island = False
        self.dequant = torch.ao.quantization.DeQuantStub()
        self.quant = torch.ao.quantization.QuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.float_island:
            return self.quant(self.body(self.dequant(x)))
        return self.body(x)


class FloatIsland(nn.Module):
    """DeQuant -> float module -> Quant: for ops without a good int8 kernel (AdaResNorm)."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.dequant = torch.ao.quantization.DeQuantStub()
        self.body = body
        self.quant = torch.ao.quantization.QuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quant(self.body(self.dequant(x)))


class AxisMean(nn.Module):
    """x.mean(dim, keepdim=True) on int8 (requantized to the input's grid), or as a float island
    with its own output qparams. A module so the fake-quant twin can mirror it."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.float_island = False
        self.dequant = torch.ao.quantization.DeQuantStub()
        self.quant = torch.ao.quantization.QuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.float_island:
            return self.quant(self.dequant(x).mean(self.dim, keepdim=True))
        return x.mean(self.dim, keepdim=True)


class QBlock(nn.Module):
    """TimeFreqSepConvs with the adds/concat as FloatFunctionals and each conv a QLayer."""

    def __init__(self, block: TimeFreqSepConvs):
        super().__init__()
        self.transition = block.transition
        self.half = block.half
        if self.transition:
            self.trans_conv = QLayer(block.trans_conv)
        self.freq_dw_conv = QLayer(block.freq_dw_conv)
        self.temp_dw_conv = QLayer(block.temp_dw_conv)
        self.freq_pw_conv = QLayer(block.freq_pw_conv)
        self.temp_pw_conv = QLayer(block.temp_pw_conv)
        self.shuffle_layer = ChannelShuffle(block.shuffle_layer.groups)
        self.freq_mean = AxisMean(2)
        self.temp_mean = AxisMean(3)
        self.freq_add = torch.ao.nn.quantized.FloatFunctional()
        self.temp_add = torch.ao.nn.quantized.FloatFunctional()
        self.concat = torch.ao.nn.quantized.FloatFunctional()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.transition:
            x = self.trans_conv(x)
        x = self.shuffle_layer(x)
        x1, x2 = torch.split(x, self.half, dim=1)
        y1 = self.freq_pw_conv(self.freq_mean(self.freq_dw_conv(x1)))
        y1 = self.freq_add.add(x1, y1)  # full-size operand first: output keeps x1's shape
        y2 = self.temp_pw_conv(self.temp_mean(self.temp_dw_conv(x2)))
        y2 = self.temp_add.add(x2, y2)
        return self.concat.cat([y1, y2], dim=1)


class QTFSepNet(nn.Module):
    """TFSepNet rebuilt for eager-mode quantization (sharing nothing: weights are copied)."""

    def __init__(self, model: TFSepNet):
        super().__init__()
        model = copy.deepcopy(model).eval()
        self.config = model.config
        self.quant = torch.ao.quantization.QuantStub()
        layers: list[nn.Module] = []
        for m in model.feature:
            if isinstance(m, TimeFreqSepConvs):
                layers.append(QBlock(m))
            elif isinstance(m, AdaResNorm):
                layers.append(FloatIsland(m))
            elif isinstance(m, nn.Conv2d):
                layers.append(QLayer(m))
            else:  # MaxPool2d runs on quantized tensors
                layers.append(m)
        self.feature = nn.Sequential(*layers)
        self.classifier = QLayer(model.classifier)
        self.dequant = torch.ao.quantization.DeQuantStub()
        self.pool: nn.Module | None = None  # the integer twin's int8 global mean; None: pooled in float

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.feature[0].float_island:  # a float stem takes the float input as it is
            x = self.quant(x)
        y = self.dequant(self.classifier(self.feature(x)))
        return y.mean((-1, -2)) if self.pool is None else self.pool(y)


def fuse(qmodel: QTFSepNet) -> QTFSepNet:
    """Fuse every ConvBlock's Conv-BN-ReLU in place (eval-mode fusion folds BN into the conv)."""
    for m in qmodel.modules():
        if isinstance(m, ConvBlock):
            torch.ao.quantization.fuse_modules(m, [["conv", "bn", "activation"]], inplace=True)
    return qmodel


def conv_layers(qmodel: nn.Module) -> list[str]:
    """Names of every QLayer (the units sensitivity and fallback work on), in forward order."""
    return [name for name, m in qmodel.named_modules() if isinstance(m, QLayer)]


def layer_conv(layer: QLayer) -> nn.Conv2d:
    """The float Conv2d of a (fused) QLayer: ConvReLU2d's first child, or the conv itself."""
    body = layer.body.conv if isinstance(layer.body, ConvBlock) else layer.body
    return body[0] if isinstance(body, nn.Sequential) else body


def fused_float(
    model: TFSepNet,
    float_layers: Iterable[str] = (),
    float_means: bool = False,
    bias_delta: dict[str, torch.Tensor] | None = None,
    rounded: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> QTFSepNet:
    """The fused float quantization-ready model (no observers), islands set for float_layers,
    the int8 convs' weights replaced by `rounded` (name -> (weight on its int8 grid, scales)) and
    `bias_delta` subtracted from their biases (bias correction)."""
    qm = fuse(QTFSepNet(model)).eval()
    float_layers = tuple(float_layers)
    for name, (weight, _scales) in (rounded or {}).items():
        if name not in float_layers:
            layer_conv(qm.get_submodule(name)).weight = nn.Parameter(weight.clone(), requires_grad=False)
    for name, delta in (bias_delta or {}).items():
        if name in float_layers:
            continue
        conv = layer_conv(qm.get_submodule(name))
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)
        conv.bias = nn.Parameter(bias - delta, requires_grad=False)
    for m in qm.modules():
        if isinstance(m, AxisMean):
            m.float_island = float_means
    names = set(conv_layers(qm))
    for name in float_layers:
        if name not in names:
            raise TfsepError(f"float layer '{name}': no such conv layer (known: {', '.join(sorted(names))[:200]}...)")
        qm.get_submodule(name).float_island = True
    return qm
