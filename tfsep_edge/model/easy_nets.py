"""BC-ResNet and TF-SepNet-64 as the authors' later toolkit (yqcai888/easy_dcase_task1,
its `backbones` module) defines them: `conv_layers` (stem), `middle_layers` (ResNorm 'N', 2x2
max-pool 'M', or a block of that many times the base channels), `classifier` (1x1 conv + mean).

- BC-ResNet (the report's Table 3 baseline, "BC-ResNet, C=40 + ResNorm"): 5x5 stride-2 stem to
  2C, BC-ResBlocks, kernel 3, dropout 0.1, SubSpectralNorm sub-bands (1 = plain BatchNorm).
- TF-SepNet-64 (DCASE 2024, "tfsepnet-v2" here): two 3x3 stride-2 ConvBnRelu stems (C/2, then a
  grouped conv to 2C), TF-SepConv blocks with kernel 3, dropout 0.1, ResNorm after each stage;
  depth 17 adds a max-pool before the last stage (16 does not: 4x the last stage's MACs).
Block channels are int(multiplier * C), the toolkit's truncation (not the 2023 code's round).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn

from tfsep_edge.core.config import NUM_CLASSES
from tfsep_edge.core.errors import TfsepError
from tfsep_edge.model.easy_blocks import BroadcastBlock, ConvBnRelu, ConvClassifier, TimeFreqSepConvolutions
from tfsep_edge.model.tfsepnet import ResNorm

BCRESNET_LAYOUTS = {15: ("N", 1, 1, "N", "M", 1.5, 1.5, "N", "M", 2, 2, "N", 2.5, 2.5, 2.5, "N")}
TFSEPNET_V2_LAYOUTS = {
    16: ("N", 1, 1, "N", "M", 1.5, 1.5, "N", "M", 2, 2, "N", 2.5, 2.5, 2.5, "N"),
    17: ("N", 1, 1, "N", "M", 1.5, 1.5, "N", "M", 2, 2, "N", "M", 2.5, 2.5, 2.5, "N"),
}


@dataclass(frozen=True)
class BCResNetConfig:
    width: int = 40  # the toolkit's base_channels (C)
    depth: int = 15
    kernel_size: int = 3
    dropout: float = 0.1
    sub_bands: int = 1
    num_classes: int = NUM_CLASSES
    family = "bcresnet"

    def to_dict(self) -> dict:
        return {**asdict(self), "family": self.family}


@dataclass(frozen=True)
class TFSepNetV2Config:
    width: int = 64  # the toolkit's base_channels
    depth: int = 17
    kernel_size: int = 3
    dropout: float = 0.1
    num_classes: int = NUM_CLASSES
    family = "tfsepnet-v2"

    def to_dict(self) -> dict:
        return {**asdict(self), "family": self.family}


def _check(name: str, value: int, allowed, what: str) -> None:
    if value not in allowed:
        raise TfsepError(f"{name} {value}: {what} takes {' | '.join(map(str, allowed))}")


def _check_common(width: int, kernel_size: int, what: str) -> None:
    if not 2 <= width <= 512:
        raise TfsepError(f"--width {width}: {what} needs 2..512 base channels")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise TfsepError(f"kernel_size {kernel_size}: {what} needs an odd kernel (padding keeps the size)")


def middle_layers(layout: tuple, width: int, make_block) -> tuple[nn.Sequential, int]:
    """The toolkit's _make_layers: (the Sequential, channels of its output). Starts at 2C."""
    layers: list[nn.Module] = []
    current = 2 * width
    for v in layout:
        if v == "N":
            layers.append(ResNorm(current))
        elif v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            out = int(v * width)
            layers.append(make_block(current, out))
            current = out
    return nn.Sequential(*layers), current


class BCResNet(nn.Module):
    def __init__(self, config: BCResNetConfig = BCResNetConfig()):
        super().__init__()
        _check("--depth", config.depth, BCRESNET_LAYOUTS, "BC-ResNet")
        _check_common(config.width, config.kernel_size, "BC-ResNet")
        if config.sub_bands < 1:
            raise TfsepError(f"sub_bands {config.sub_bands}: must be 1 (no SubSpectralNorm) or more")
        self.config = config
        self.conv_layers = nn.Conv2d(1, 2 * config.width, 5, stride=2, padding=2, bias=False)

        def block(i: int, o: int) -> nn.Module:
            return BroadcastBlock(i, o, config.kernel_size, config.dropout, config.sub_bands)

        self.middle_layers, last = middle_layers(BCRESNET_LAYOUTS[config.depth], config.width, block)
        self.classifier = ConvClassifier(last, config.num_classes)

    @property
    def width(self) -> int:  # as TFSepNet.width: what reports and metadata name the model by
        return self.config.width

    def forward(self, x):
        return self.classifier(self.middle_layers(self.conv_layers(x)))


class TFSepNetV2(nn.Module):
    def __init__(self, config: TFSepNetV2Config = TFSepNetV2Config()):
        super().__init__()
        _check("--depth", config.depth, TFSEPNET_V2_LAYOUTS, "TF-SepNet-64 (tfsepnet-v2)")
        _check_common(config.width, config.kernel_size, "TF-SepNet-64 (tfsepnet-v2)")
        odd = [int(v * config.width) for v in (1, 1.5, 2, 2.5) if int(v * config.width) % 2]
        if config.width % 2 or odd:
            raise TfsepError(
                f"--width {config.width}: TF-SepNet-64 splits every block's channels in halves; "
                "use a multiple of 4 (e.g. 32, 64)"
            )
        self.config = config
        w = config.width
        self.conv_layers = nn.Sequential(
            ConvBnRelu(1, w // 2, 3, stride=2, padding=1),
            ConvBnRelu(w // 2, 2 * w, 3, stride=2, padding=1, groups=w // 2),
        )

        def block(i: int, o: int) -> nn.Module:
            return TimeFreqSepConvolutions(i, o, config.kernel_size, config.dropout)

        self.middle_layers, last = middle_layers(TFSEPNET_V2_LAYOUTS[config.depth], w, block)
        self.classifier = ConvClassifier(last, config.num_classes)

    @property
    def width(self) -> int:  # as TFSepNet.width: what reports and metadata name the model by
        return self.config.width

    def forward(self, x):
        return self.classifier(self.middle_layers(self.conv_layers(x)))
