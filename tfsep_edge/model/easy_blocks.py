"""Building blocks of the authors' later toolkit (yqcai888/easy_dcase_task1, its `shared` and `classifiers`
modules), written here from its description, for BC-ResNet and TF-SepNet-64.

Attribute names are that toolkit's (`_conv`, `_bn`, `_relu`, `ssn`, `pw_conv`, `classifier.conv`),
so a state_dict it saves loads unchanged once its Lightning prefix `backbone.` is stripped.
ResNorm is tfsepnet.ResNorm (lam 0.1, no state_dict entries), as that toolkit's.
"""

from __future__ import annotations

import torch
from torch import nn

from tfsep_edge.core.errors import TfsepError
from tfsep_edge.model.tfsepnet import ChannelShuffle


class ConvBnRelu(nn.Module):
    """Conv2d -> [BatchNorm2d] -> [ReLU]; BN and ReLU are optional as in the toolkit."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size,
        stride=1,
        padding=0,
        groups: int = 1,
        use_bn: bool = True,
        use_relu: bool = True,
    ):
        super().__init__()
        self._conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, groups=groups, bias=False)
        self._bn = nn.BatchNorm2d(out_ch) if use_bn else None
        self._relu = nn.ReLU(inplace=True) if use_relu else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._conv(x)
        if self._bn is not None:
            x = self._bn(x)
        return self._relu(x) if self._relu is not None else x


class ConvClassifier(nn.Module):
    """1x1 conv to the classes, then the mean over frequency and time."""

    def __init__(self, in_ch: int, num_classes: int):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, num_classes, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean((-1, -2))


class SubSpectralNorm(nn.Module):
    """BatchNorm per frequency sub-band (Chang et al. 2021): sub_bands x channels BN channels.
    sub_bands = 1 is a plain BatchNorm (the toolkit's default for BC-ResNet)."""

    def __init__(self, channels: int, sub_bands: int):
        super().__init__()
        self.sub_bands = sub_bands
        self._bn = nn.BatchNorm2d(channels * sub_bands)

    def plain_batchnorm(self, what: str) -> nn.BatchNorm2d:
        """The BatchNorm a graph folds into the conv before it: only with one sub-band. `what`
        names the graph ("the FP32 ONNX export", "the INT8 model")."""
        if self.sub_bands != 1:
            raise TfsepError(
                f"SubSpectralNorm with {self.sub_bands} sub-bands: {what} folds a plain "
                "BatchNorm (1 sub-band) only; use a BC-ResNet trained without sub-bands"
            )
        return self._bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.sub_bands == 1:
            return self._bn(x)
        n, c, f, t = x.shape
        y = self._bn(x.reshape(n, c * self.sub_bands, f // self.sub_bands, t))
        return y.reshape(n, c, f, t)


class BroadcastBlock(nn.Module):
    """BC-ResNet's block (Kim et al. 2021, broadcasted residual learning):
    [1x1 transition] -> freq depthwise conv -> SSN (= auxiliary) -> mean over frequency ->
    temporal depthwise conv + BN -> SiLU -> 1x1 conv -> dropout, broadcast back over frequency
    and added to the auxiliary (and to the input when the channels stay) -> ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, dropout: float, sub_bands: int):
        super().__init__()
        pad = (kernel_size - 1) // 2
        self.trans_conv = ConvBnRelu(in_ch, out_ch, 1) if in_ch != out_ch else None
        self.freq_dw_conv = nn.Conv2d(out_ch, out_ch, (kernel_size, 1), padding=(pad, 0), groups=out_ch, bias=False)
        self.ssn = SubSpectralNorm(out_ch, sub_bands)
        self.temp_dw_conv = ConvBnRelu(
            out_ch, out_ch, (1, kernel_size), padding=(0, pad), groups=out_ch, use_relu=False
        )
        self.swish = nn.SiLU()
        self.pw_conv = nn.Conv2d(out_ch, out_ch, 1, bias=False)
        self.dropout_layer = nn.Dropout(dropout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        if self.trans_conv is not None:
            x = self.trans_conv(x)
        auxiliary = self.ssn(self.freq_dw_conv(x))
        y = self.temp_dw_conv(auxiliary.mean(2, keepdim=True))
        y = self.dropout_layer(self.pw_conv(self.swish(y)))
        # The identity shortcut only where the channels stay (a transition has no identity).
        y = auxiliary + y if self.trans_conv is not None else identity + auxiliary + y
        return self.relu(y)


class TimeFreqSepConvolutions(nn.Module):
    """TF-SepNet-64's TF-SepConv block: as tfsepnet.TimeFreqSepConvs, with kernel_size as an option
    and the shuffle in groups of half the output channels (the toolkit fixes it so)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, dropout: float):
        super().__init__()
        half = out_ch // 2
        pad = (kernel_size - 1) // 2
        self.half = half
        self.trans_conv = ConvBnRelu(in_ch, out_ch, 1) if in_ch != out_ch else None
        self.freq_dw_conv = ConvBnRelu(half, half, (kernel_size, 1), padding=(pad, 0), groups=half)
        self.freq_pw_conv = ConvBnRelu(half, half, 1)
        self.temp_dw_conv = ConvBnRelu(half, half, (1, kernel_size), padding=(0, pad), groups=half)
        self.temp_pw_conv = ConvBnRelu(half, half, 1)
        self.dropout_layer = nn.Dropout(dropout)
        self.shuffle_layer = ChannelShuffle(half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.trans_conv is not None:
            x = self.trans_conv(x)
        x = self.shuffle_layer(x)
        x1, x2 = torch.split(x, self.half, dim=1)
        y1 = self.freq_dw_conv(x1).mean(2, keepdim=True)
        y1 = self.dropout_layer(self.freq_pw_conv(y1)) + x1
        y2 = self.temp_dw_conv(x2).mean(3, keepdim=True)
        y2 = self.dropout_layer(self.temp_pw_conv(y2)) + x2
        return torch.cat((y1, y2), dim=1)
