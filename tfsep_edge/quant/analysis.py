"""Measurements of a quantized model against its float source: SQNR per layer, batched runs."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from tfsep_edge.core.config import NUM_CLASSES
from tfsep_edge.quant.artifact import QuantizedArtifact
from tfsep_edge.quant.ready import AxisMean, FloatIsland, QBlock, QBroadcastBlock, QLayer

# --- measurements ------------------------------------------------------------------------------


def sqnr_db(reference: torch.Tensor, test: torch.Tensor) -> float:
    """10 log10(signal power / error power) in dB (inf when identical)."""
    noise = (reference - test).double().pow(2).sum().item()
    signal = reference.double().pow(2).sum().item()
    if noise == 0:
        return float("inf")
    return 10.0 * float(np.log10(max(signal, 1e-30) / noise))


def _point_modules(qm: nn.Module) -> list[str]:
    """Named units whose outputs are compared: every conv unit, norm island, block, mean."""
    kinds = (QLayer, FloatIsland, QBlock, QBroadcastBlock, AxisMean)
    return [n for n, m in qm.named_modules() if isinstance(m, kinds)]


def _capture(model: nn.Module, names: list[str], x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    outs: dict[str, torch.Tensor] = {}
    hooks = []
    for name in names:

        def hook(_m, _i, out, name=name):
            outs[name] = out.dequantize() if out.is_quantized else out.detach().clone()

        hooks.append(model.get_submodule(name).register_forward_hook(hook))
    try:
        with torch.no_grad():
            y = model(x)
    finally:
        for h in hooks:
            h.remove()
    return y, outs


def layer_sqnr(artifact: QuantizedArtifact, x: torch.Tensor) -> dict[str, float]:
    """SQNR (dB) of every unit's INT8 output against the fused float model's, on input x.

    Cumulative: each figure includes the error of everything upstream, as a deployed model has.
    INT8 in exact int8 arithmetic (the fake-quant twin, as run_exact_int8): the same on every CPU.
    """
    float_qm = artifact.fused_float_model()
    names = _point_modules(float_qm)
    _, ref = _capture(float_qm, names, x)
    _, got = _capture(artifact.fake_quant_model(), names, x)
    return {n: sqnr_db(ref[n], got[n]) for n in names}


def run_int8(artifact: QuantizedArtifact, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    return torch.cat([artifact(b) for b in x.split(batch)]) if len(x) else torch.zeros(0, NUM_CLASSES)


def run_exact_int8(artifact: QuantizedArtifact, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """The INT8 model in exact int8 arithmetic: its fake-quant twin, which every export reproduces
    (and is validated against). PyTorch's x86 INT8 kernels saturate 16-bit pair sums on CPUs
    without VNNI, so figures from run_int8 there would describe the kernels, not the model."""
    return run_float(artifact.fake_quant_model(), x, batch)


def run_float(model: nn.Module, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(b) for b in x.split(batch)]) if len(x) else torch.zeros(0, NUM_CLASSES)


def point_sensitivity(artifact: QuantizedArtifact, x: torch.Tensor) -> tuple[float, list[dict]]:
    """(logit SQNR of the twin against the fused float model, then per activation quantization
    point of the twin, worst first: the SQNR gain when that point alone is removed). Where a
    model's int8 loss is spread over many points, this finds the ones that cost most; the
    per-layer sensitivity scan keeps each conv's output point and so cannot."""
    from tfsep_edge.quant.twin import FakeQuant

    reference = run_float(artifact.fused_float_model(), x)
    twin = artifact.fake_quant_model()
    base = sqnr_db(reference, run_float(twin, x))
    rows = []
    for name, point in [(n, m) for n, m in twin.named_modules() if isinstance(m, FakeQuant)]:
        parent_name, _, attr = name.rpartition(".")
        parent = twin.get_submodule(parent_name)
        setattr(parent, attr, nn.Identity())
        try:
            rows.append({"point": name, "sqnr_gain_db": sqnr_db(reference, run_float(twin, x)) - base})
        finally:
            setattr(parent, attr, point)
    return base, sorted(rows, key=lambda r: -r["sqnr_gain_db"])
