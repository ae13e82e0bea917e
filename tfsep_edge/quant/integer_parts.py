"""Where an integer model (QuantOptions.integer) loses: its fake-quant twin with one integer part
computed in float, for the sensitivity scan of `quantize --integer` (the per-layer float
fallback of the default model does not apply: an integer model has no float layers to add).

The parts: the input's QUANTIZE, each AdaResNorm's int8 statistics and arithmetic (in float,
quantized only at its output point), the blocks' int8 means, and the int8 global mean. A part
whose float version raises agreement and logit SQNR most is where the integers cost.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from torch import nn

from tfsep_edge.quant.integer_norm import IntegerMean, IntegerNorm, IntegerQuantize, norm_values
from tfsep_edge.quant.twin import FakeQuantConv


class FloatNormAtPoint(nn.Module):
    """AdaResNorm in float, quantized to the integer norm's output point."""

    def __init__(self, norm: IntegerNorm):
        super().__init__()
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.norm
        y = norm_values(x, n.rho, n.gamma, n.beta, n.eps)["out"]
        return torch.fake_quantize_per_tensor_affine(y, n.out_point[0], n.out_point[1], -128, 127)


class FloatMeanAtPoint(nn.Module):
    """The mean in float, quantized to the int8 mean's output point."""

    def __init__(self, mean: IntegerMean):
        super().__init__()
        self.mean = mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.mean
        y = x.mean(m.dims, keepdim=m.keepdim)
        return torch.fake_quantize_per_tensor_affine(y, m.out[0], m.out[1], -128, 127)


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    owner = root.get_submodule(parent) if parent else root
    if isinstance(owner, nn.Sequential):
        owner[int(attr)] = new
    else:
        setattr(owner, attr, new)


def float_variants(twin: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """(part, a copy of the integer twin with that part in float), for every integer part."""
    modules = dict(twin.named_modules())
    if isinstance(modules.get("quant"), IntegerQuantize):
        variant = copy.deepcopy(twin)
        variant.quant = nn.Identity()
        stem = next(m for m in variant.modules() if isinstance(m, FakeQuantConv))
        stem.exact = False  # an exact conv would round its float input onto the input's grid again
        yield "input QUANTIZE", variant
    for name, m in modules.items():
        if isinstance(m, IntegerNorm):
            variant = copy.deepcopy(twin)
            _replace(variant, name, FloatNormAtPoint(variant.get_submodule(name)))
            yield f"{name} ({m.kind})", variant
    block_means = [n for n, m in modules.items() if isinstance(m, IntegerMean) and n != "pool"]
    if block_means:
        variant = copy.deepcopy(twin)
        for name in block_means:
            _replace(variant, name, FloatMeanAtPoint(variant.get_submodule(name)))
        yield f"the blocks' {len(block_means)} means", variant
    if isinstance(modules.get("pool"), IntegerMean):
        variant = copy.deepcopy(twin)
        variant.pool = FloatMeanAtPoint(variant.pool)
        yield "global mean", variant
