"""The quantization-ready model: containers that mark the quantization points
(QTFSepNet/QBlock/QBroadcastBlock/QLayer/FloatIsland/AxisMean wrap the float model's own
modules), and fusion.

Every family quantizes through it: the report's TF-SepNet (`feature`, one stem conv),
TF-SepNet-64 and BC-ResNet (`conv_layers` + `middle_layers`: two Conv-BN-ReLU stem convs, or one
plain 5x5 conv). Their layers are read into the same containers, named `feature.<i>` in one
sequence: the TF-SepConv blocks into QBlock, BC-ResNet's broadcast blocks into QBroadcastBlock
(SiLU a float island; SubSpectralNorm with one sub-band, a BatchNorm folded into its conv), the
norms into float islands, the max-pools as they are."""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn

from tfsep_edge.core.errors import TfsepError
from tfsep_edge.model.easy_blocks import BroadcastBlock, ConvBnRelu, TimeFreqSepConvolutions
from tfsep_edge.model.easy_nets import BCResNet, TFSepNetV2
from tfsep_edge.model.tfsepnet import AdaResNorm, ChannelShuffle, ConvBlock, TFSepNet, TimeFreqSepConvs

QUANTIZABLE_FAMILIES = ("tfsepnet", "tfsepnet-v2", "bcresnet")
# --integer writes AdaResNorm/ResNorm, the means and the global mean in int8 ops; BC-ResNet's
# SiLU has no integer form here.
INTEGER_FAMILIES = ("tfsepnet", "tfsepnet-v2")


def as_conv_block(m: ConvBnRelu) -> ConvBlock:
    """TF-SepNet-64's Conv-BN-ReLU as a ConvBlock (the names fusion and the twin read), sharing
    its conv (stride, padding and groups included) and BatchNorm."""
    if m._bn is None or m._relu is None:
        raise TfsepError("a Conv-BN-ReLU without its BatchNorm or ReLU has no INT8 description")
    conv = m._conv
    block = ConvBlock(conv.in_channels, conv.out_channels, conv.kernel_size, conv.padding, conv.groups)
    block.conv, block.bn = conv, m._bn
    return block.train(m.training)


class ConvBn(nn.Module):
    """Conv2d -> BatchNorm2d with no activation (BC-ResNet's depthwise convs), the names
    `fuse_modules` expects: fusion folds the BatchNorm into the conv."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d):
        super().__init__()
        self.conv, self.bn = conv, bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


def _as_conv(m: nn.Module) -> nn.Module:
    if isinstance(m, ConvBnRelu) and m._relu is None and m._bn is not None:
        return ConvBn(m._conv, m._bn)
    return as_conv_block(m) if isinstance(m, ConvBnRelu) else m


def feature_layers(model: nn.Module) -> tuple[list[nn.Module], nn.Conv2d]:
    """(the layers from the input to the classifier in order, the classifier conv) of a
    quantizable family: what QTFSepNet wraps, and what `feature.<i>` names."""
    if isinstance(model, BCResNet):
        return [model.conv_layers, *model.middle_layers], model.classifier.conv
    if isinstance(model, TFSepNetV2):
        return [*model.conv_layers, *model.middle_layers], model.classifier.conv
    if isinstance(model, TFSepNet):
        return list(model.feature), model.classifier
    raise TfsepError(
        f"a {getattr(model.config, 'family', type(model).__name__)} has no INT8 description "
        f"(quantize takes {' | '.join(QUANTIZABLE_FAMILIES)}); export its FP32 model instead"
    )


def stem_layers(model: nn.Module) -> tuple[str, ...]:
    """The names of the conv layers before the first norm (the report's 5x5 conv; TF-SepNet-64's
    two 3x3 convs): what "a float stem" keeps in float."""
    layers, _ = feature_layers(model)
    names = []
    for i, m in enumerate(layers):
        if not isinstance(m, nn.Conv2d | ConvBnRelu):
            break
        names.append(f"feature.{i}")
    return tuple(names)


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

    def __init__(self, block: TimeFreqSepConvs | TimeFreqSepConvolutions):
        super().__init__()
        self.transition = getattr(block, "trans_conv", None) is not None
        self.half = block.half
        if self.transition:
            self.trans_conv = QLayer(_as_conv(block.trans_conv))
        self.freq_dw_conv = QLayer(_as_conv(block.freq_dw_conv))
        self.temp_dw_conv = QLayer(_as_conv(block.temp_dw_conv))
        self.freq_pw_conv = QLayer(_as_conv(block.freq_pw_conv))
        self.temp_pw_conv = QLayer(_as_conv(block.temp_pw_conv))
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


class QBroadcastBlock(nn.Module):
    """BC-ResNet's BroadcastBlock with each conv a QLayer, SiLU a float island, and the adds as
    FloatFunctionals: the identity + auxiliary add (where the channels stay) on full-size tensors,
    then the broadcast add of the temporal branch with the ReLU fused (add_relu)."""

    def __init__(self, block: BroadcastBlock):
        super().__init__()
        self.transition = block.trans_conv is not None
        if self.transition:
            self.trans_conv = QLayer(_as_conv(block.trans_conv))
        bn = block.ssn.plain_batchnorm("the INT8 model (quantize)")
        self.freq_dw_conv = QLayer(ConvBn(block.freq_dw_conv, bn))
        self.freq_mean = AxisMean(2)
        self.temp_dw_conv = QLayer(_as_conv(block.temp_dw_conv))
        self.swish = FloatIsland(nn.SiLU())
        self.pw_conv = QLayer(block.pw_conv)
        if not self.transition:  # the identity add: only where the channels stay
            self.residual = torch.ao.nn.quantized.FloatFunctional()
        self.broadcast = torch.ao.nn.quantized.FloatFunctional()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        if self.transition:
            x = self.trans_conv(x)
        auxiliary = self.freq_dw_conv(x)
        y = self.pw_conv(self.swish(self.temp_dw_conv(self.freq_mean(auxiliary))))
        # (identity + auxiliary) + y, the float model's order; full-size operand first.
        s = auxiliary if self.transition else self.residual.add(identity, auxiliary)
        return self.broadcast.add_relu(s, y)


class QTFSepNet(nn.Module):
    """A quantizable family's model rebuilt for eager-mode quantization (sharing nothing:
    weights are copied)."""

    def __init__(self, model: TFSepNet | TFSepNetV2 | BCResNet):
        super().__init__()
        model = copy.deepcopy(model).eval()
        self.config = model.config
        self.quant = torch.ao.quantization.QuantStub()
        layers: list[nn.Module] = []
        found, classifier = feature_layers(model)
        for m in found:
            if isinstance(m, TimeFreqSepConvs | TimeFreqSepConvolutions):
                layers.append(QBlock(m))
            elif isinstance(m, BroadcastBlock):
                layers.append(QBroadcastBlock(m))
            elif isinstance(m, AdaResNorm):  # ResNorm too: an AdaResNorm with constants
                layers.append(FloatIsland(m))
            elif isinstance(m, nn.Conv2d | ConvBnRelu):
                layers.append(QLayer(_as_conv(m)))
            elif isinstance(m, nn.MaxPool2d):  # runs on quantized tensors
                layers.append(m)
            else:
                raise TypeError(f"no quantization-ready form of {type(m).__name__}")
        self.feature = nn.Sequential(*layers)
        self.classifier = QLayer(classifier)
        self.dequant = torch.ao.quantization.DeQuantStub()
        self.pool: nn.Module | None = None  # the integer twin's int8 global mean; None: pooled in float

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.feature[0].float_island:  # a float stem takes the float input as it is
            x = self.quant(x)
        y = self.dequant(self.classifier(self.feature(x)))
        return y.mean((-1, -2)) if self.pool is None else self.pool(y)


def float_stem(qmodel: QTFSepNet) -> list[QLayer]:
    """The leading float-island conv layers whose outputs stay float: each feeds another such
    layer or the first norm's float island, so no quantization point sits between them (the
    model input is not quantized either)."""
    layers = list(qmodel.feature)
    stem = []
    for m, after in zip(layers, layers[1:], strict=False):
        if not (isinstance(m, QLayer) and m.float_island):
            break
        if not (isinstance(after, FloatIsland) or (isinstance(after, QLayer) and after.float_island)):
            break
        stem.append(m)
    return stem


def fuse(qmodel: QTFSepNet) -> QTFSepNet:
    """Fuse every ConvBlock's Conv-BN-ReLU and ConvBn's Conv-BN in place (eval-mode fusion folds
    BN into the conv)."""
    for m in qmodel.modules():
        if isinstance(m, ConvBlock):
            torch.ao.quantization.fuse_modules(m, [["conv", "bn", "activation"]], inplace=True)
        elif isinstance(m, ConvBn):
            torch.ao.quantization.fuse_modules(m, [["conv", "bn"]], inplace=True)
    return qmodel


def conv_layers(qmodel: nn.Module) -> list[str]:
    """Names of every QLayer (the units sensitivity and fallback work on), in forward order."""
    return [name for name, m in qmodel.named_modules() if isinstance(m, QLayer)]


def layer_conv(layer: QLayer) -> nn.Conv2d:
    """The float Conv2d of a (fused) QLayer: ConvReLU2d's first child, or the conv itself."""
    body = layer.body.conv if isinstance(layer.body, ConvBlock | ConvBn) else layer.body
    return body[0] if isinstance(body, nn.Sequential) else body


def fused_float(
    model: TFSepNet | TFSepNetV2 | BCResNet,
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
