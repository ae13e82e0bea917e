"""TF-SepNet (Cai et al., DCASE 2023 Task 1), module for module as the authors' reference code.

The module names and parameter shapes are those of the reference implementation, so a
`state_dict` saved by it loads here unchanged (keys `feature.N...`, `classifier...`).
Two things are written differently, with identical results:
- the channel shuffle uses unflatten/transpose/flatten instead of `x.data.size()`, so traced
  and exported graphs keep the batch dimension dynamic;
- AdaResNorm keeps `eps` as a float instead of re-assigning a tensor attribute in `forward`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from tfsep_edge.core.config import NUM_CLASSES
from tfsep_edge.core.errors import TfsepError

# Stage layout of TF-SepNet-18 (reference `defaultcfg[18]`): 'CONV' is the 5x5 stride-2 stem,
# 'N' an AdaResNorm, 'M' a 2x2 max-pool, a number a TF-SepConv block with that many times C
# output channels (the stem outputs 2C).
LAYOUT: tuple = ("CONV", "N", 1, 1, "N", "M", 1.5, 1.5, "N", "M", 2, 2, "N", 2.5, 2.5, 2.5, "N")
STEM_MULTIPLIER = 2


# The norm after the stem and after each stage: the report's AdaResNorm, or ResNorm (its Table 3
# ablation "TF-SepNet, C=40 + ResNorm", 53.19 K params: AdaResNorm's rho/gamma/beta removed).
NORMS = ("adaresnorm", "resnorm")
FAMILY = "tfsepnet"


@dataclass(frozen=True)
class ModelConfig:
    width: int = 12
    shuffle_groups: int | None = None  # None: width // 4, as the report sets it
    dropout: float = 0.2
    num_classes: int = NUM_CLASSES
    norm: str = "adaresnorm"

    @property
    def groups(self) -> int:
        return self.shuffle_groups if self.shuffle_groups is not None else max(1, self.width // 4)

    @property
    def family(self) -> str:
        return FAMILY

    def to_dict(self) -> dict:
        values = asdict(self)
        values["shuffle_groups"] = self.groups
        values["family"] = FAMILY
        return values


def channels(width: int, multiplier: float) -> int:
    # Python's round (banker's rounding) exactly as the reference code uses it.
    return round(multiplier * width)


def block_channels(width: int) -> list[int]:
    """Output channels of every TF-SepConv block, in order."""
    return [channels(width, v) for v in LAYOUT if not isinstance(v, str)]


def check_width(width: int, shuffle_groups: int | None = None) -> None:
    """Raise TfsepError unless every block's channels split into halves and shuffle groups."""
    groups = shuffle_groups if shuffle_groups is not None else max(1, width // 4)
    if width < 1 or groups < 1:
        raise TfsepError(f"width {width} / shuffle groups {groups}: both must be positive")
    bad = [c for c in sorted(set(block_channels(width))) if c % 2 or c % groups]
    if bad:
        hint = "with the default shuffle groups (width // 4) the valid widths are multiples of 4"
        raise TfsepError(
            f"width {width} with {groups} shuffle groups does not fit TF-SepNet: block channels "
            f"{bad} must be even and divisible by {groups}; {hint} (e.g. 12, 20, 40, 60, 160)"
        )


def valid_widths(lo: int, hi: int) -> list[int]:
    out = []
    for w in range(lo, hi + 1):
        try:
            check_width(w)
        except TfsepError:
            continue
        out.append(w)
    return out


class ChannelShuffle(nn.Module):
    """ShuffleNet channel shuffle, the reference's (c/g, g) -> (g, c/g) transpose."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(1, (-1, self.groups)).transpose(1, 2).flatten(1, 2)


def freq_instance_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """FreqIN: each (example, frequency bin) normalised over channels and time, with the unbiased
    variance, as the reference code does (`x.var((1, 3))`)."""
    mean = x.mean((1, 3), keepdim=True)
    var = x.var((1, 3), keepdim=True)
    return (x - mean) / (var + eps).sqrt()


class AdaResNorm(nn.Module):
    """Adaptive residual normalisation: gamma * (rho * x + (1 - rho) * FreqIN(x)) + beta."""

    def __init__(self, num_channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.rho = nn.Parameter(torch.full((1, num_channels, 1, 1), 0.5))
        self.gamma = nn.Parameter(torch.ones(1, num_channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, num_channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res_norm = self.rho * x + (1 - self.rho) * freq_instance_norm(x, self.eps)
        return self.gamma * res_norm + self.beta


class ResNorm(AdaResNorm):
    """Residual normalisation (Kim et al. 2021; the report's Eq. 3): lam * x + FreqIN(x), lam fixed.

    lam = 0.1 as the authors' easy_dcase_task1 `ResNorm` (their BC-ResNet and TF-SepNet-64) and
    QTI's ResNorm. No parameters and no state_dict entries, as there. (The 2023 code's
    `AdaResNorm(grad=False)` is another thing: 0.5 * x + 0.5 * FreqIN.)

    It is an AdaResNorm with constant rho = lam / (1 + lam), gamma = 1 + lam, beta = 0 (the same
    function), held as non-persistent buffers: quantization and the ONNX/TFLite writers, which
    fold AdaResNorm's constants, take it unchanged, while torchinfo counts 0 parameters.
    """

    def __init__(self, num_channels: int, lam: float = 0.1, eps: float = 1e-5):
        nn.Module.__init__(self)  # not AdaResNorm.__init__: its rho/gamma/beta are Parameters
        self.eps = eps
        self.lam = lam
        shape = (1, num_channels, 1, 1)
        self.register_buffer("rho", torch.full(shape, lam / (1 + lam)), persistent=False)
        self.register_buffer("gamma", torch.full(shape, 1 + lam), persistent=False)
        self.register_buffer("beta", torch.zeros(shape), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lam * x + freq_instance_norm(x, self.eps)


def make_norm(norm: str, num_channels: int) -> AdaResNorm:
    if norm not in NORMS:
        raise TfsepError(f"--norm {norm!r}: TF-SepNet takes {' | '.join(NORMS)}")
    return AdaResNorm(num_channels) if norm == "adaresnorm" else ResNorm(num_channels)


class ConvBlock(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> ReLU, the names `fuse_modules` expects."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size, padding=0, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, padding=padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.bn(self.conv(x)))


class TimeFreqSepConvs(nn.Module):
    """TF-SepConv block: [1x1 transition] -> shuffle -> split -> (freq path | time path) -> concat."""

    def __init__(self, in_ch: int, out_ch: int, dropout: float, shuffle_groups: int):
        super().__init__()
        self.transition = in_ch != out_ch
        self.half = out_ch // 2
        half = self.half
        if self.transition:
            self.trans_conv = ConvBlock(in_ch, out_ch, 1)
        self.freq_dw_conv = ConvBlock(half, half, (3, 1), padding=(1, 0), groups=half)
        self.temp_dw_conv = ConvBlock(half, half, (1, 3), padding=(0, 1), groups=half)
        self.freq_pw_conv = ConvBlock(half, half, 1)
        self.temp_pw_conv = ConvBlock(half, half, 1)
        self.dropout = nn.Dropout(dropout)
        self.shuffle_layer = ChannelShuffle(shuffle_groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.transition:
            x = self.trans_conv(x)
        x = self.shuffle_layer(x)
        x1, x2 = torch.split(x, self.half, dim=1)
        # Frequency path: depthwise (3,1) conv, mean over frequency, pointwise, residual.
        y1 = self.freq_dw_conv(x1).mean(2, keepdim=True)
        y1 = self.dropout(self.freq_pw_conv(y1)) + x1
        # Time path: depthwise (1,3) conv, mean over time, pointwise, residual.
        y2 = self.temp_dw_conv(x2).mean(3, keepdim=True)
        y2 = self.dropout(self.temp_pw_conv(y2)) + x2
        return torch.cat((y1, y2), dim=1)


class TFSepNet(nn.Module):
    def __init__(
        self,
        width: int = 12,
        shuffle_groups: int | None = None,
        dropout: float = 0.2,
        num_classes: int = NUM_CLASSES,
        norm: str = "adaresnorm",
    ):
        super().__init__()
        self.config = ModelConfig(width, shuffle_groups, dropout, num_classes, norm)
        check_width(width, self.config.groups)
        groups = self.config.groups
        layers: list[nn.Module] = []
        current = STEM_MULTIPLIER
        for v in LAYOUT:
            if v == "CONV":
                layers.append(nn.Conv2d(1, channels(width, current), 5, stride=2, padding=2, bias=False))
            elif v == "N":
                layers.append(make_norm(norm, channels(width, current)))
            elif v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers.append(TimeFreqSepConvs(channels(width, current), channels(width, v), dropout, groups))
                current = v
        self.feature = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(channels(width, current), num_classes, 1, bias=True)

    @property
    def width(self) -> int:
        return self.config.width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.classifier(self.feature(x))
        return y.mean((-1, -2))


def random_model(width: int = 12, seed: int = 0, norm: str = "adaresnorm") -> TFSepNet:
    """Untrained TF-SepNet (eval mode) with randomised BatchNorm and AdaResNorm statistics, so BN
    folding and the norm algebra do real work: for latency benchmarks (latency does not depend
    on the weights) and for export/runtime tests."""
    torch.manual_seed(seed)
    return randomise_statistics(TFSepNet(width, norm=norm).eval())


def randomise_statistics(model: nn.Module) -> nn.Module:
    """Every BatchNorm's statistics and affine parameters and every AdaResNorm's rho, gamma, beta
    drawn at random (from torch's current seed), in place: an untrained model of any family whose
    folding and norm algebra do real work."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                if m.affine:
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.3, 0.3)
            elif type(m) is AdaResNorm:  # ResNorm's constants are fixed
                m.rho.uniform_(0, 1)
                m.gamma.uniform_(0.5, 1.5)
                m.beta.uniform_(-0.3, 0.3)
    return model
