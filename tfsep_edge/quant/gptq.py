"""Weight rounding that minimises the layer's output error: GPTQ, and bias correction."""

from __future__ import annotations

import torch
from torch import nn

from tfsep_edge.quant.ready import QTFSepNet, conv_layers, layer_conv


def weight_qparams(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel symmetric int8 scales/zero points, by the observer convert uses."""
    obs = torch.ao.quantization.observer.PerChannelMinMaxObserver(
        dtype=torch.qint8, qscheme=torch.per_channel_symmetric
    )
    obs(weight.detach())
    return obs.calculate_qparams()


def run_with_conv_hooks(qm: QTFSepNet, batches: list[torch.Tensor], on_input) -> dict[str, nn.Conv2d]:
    """Run the float model over `batches`, calling on_input(layer name, conv, its input) at every
    conv layer; returns the layers. The hooks are removed whatever happens."""
    layers = {n: layer_conv(qm.get_submodule(n)) for n in conv_layers(qm)}
    hooks = [
        c.register_forward_hook(lambda mod, inputs, _out, n=n: on_input(n, mod, inputs[0])) for n, c in layers.items()
    ]
    try:
        with torch.no_grad():
            for b in batches:
                qm(b)
    finally:
        for h in hooks:
            h.remove()
    return layers


def bias_corrections(
    qm: QTFSepNet, batches: list[torch.Tensor], rounded: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
) -> dict[str, torch.Tensor]:
    """Per conv layer, the mean output shift its int8 weights cause: E[conv(x, Wq - W)] over the
    calibration inputs of the float model, per output channel (empirical bias correction;
    subtracting it removes the systematic part of the weight error). Wq: `rounded` where
    given, else round to nearest."""
    layers = {n: layer_conv(qm.get_submodule(n)) for n in conv_layers(qm)}
    sums = {n: torch.zeros(c.out_channels, dtype=torch.float64) for n, c in layers.items()}
    counts = dict.fromkeys(layers, 0)
    errors = {}
    for n, c in layers.items():
        if rounded and n in rounded:
            wq = rounded[n][0]
        else:
            scale, zp = weight_qparams(c.weight)
            wq = torch.fake_quantize_per_channel_affine(c.weight.detach(), scale, zp.to(torch.int32), 0, -128, 127)
        errors[n] = wq - c.weight.detach()

    def accumulate(n: str, mod: nn.Conv2d, x: torch.Tensor) -> None:
        d = nn.functional.conv2d(x, errors[n], None, mod.stride, mod.padding, mod.dilation, mod.groups)
        sums[n] += d.double().sum((0, 2, 3))
        counts[n] += d.shape[0] * d.shape[2] * d.shape[3]

    run_with_conv_hooks(qm, batches, accumulate)
    return {n: (sums[n] / max(counts[n], 1)).float() for n in layers}


def layer_hessians(qm: QTFSepNet, batches: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per conv layer and group, sum of x x^T over its input patches (float model, calibration
    data): (groups, k, k) with k = in-channels-per-group * kh * kw."""
    sums: dict[str, torch.Tensor] = {}

    def accumulate(n: str, mod: nn.Conv2d, x: torch.Tensor) -> None:
        kh, kw = mod.kernel_size
        u = nn.functional.unfold(x, (kh, kw), padding=mod.padding, stride=mod.stride)  # (B, Cin*k, L)
        u = u.transpose(1, 2).reshape(-1, mod.groups, u.shape[1] // mod.groups).double()  # (B*L, G, k)
        h = torch.einsum("ngi,ngj->gij", u, u)
        sums[n] = sums[n] + h if n in sums else h

    run_with_conv_hooks(qm, batches, accumulate)
    return sums


def gptq_round(weight: torch.Tensor, hessians: torch.Tensor, damp: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """Round a conv weight onto its per-channel symmetric int8 grid column by column, pushing each
    column's rounding error onto the columns not yet rounded through the inverse Hessian of the
    layer's inputs (GPTQ, Frantar et al. 2022). The scales are min/max ones, as round to nearest
    would use. Returns (weight on the grid, scales)."""
    scales, _ = weight_qparams(weight)
    cout = weight.shape[0]
    groups, k, _ = hessians.shape
    per_group = cout // groups
    w_all = weight.detach().reshape(cout, k).double()
    out = torch.empty_like(w_all)
    s_all = scales.double()
    eye = torch.eye(k, dtype=torch.float64)
    for g in range(groups):
        h = hessians[g]
        h = h + damp * max(float(h.diagonal().mean()), 1e-12) * eye
        hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
        rows = slice(g * per_group, (g + 1) * per_group)
        w, s = w_all[rows].clone(), s_all[rows]
        for i in range(k):
            q = torch.clamp(torch.round(w[:, i] / s), -128, 127) * s
            out[rows, i] = q
            err = (w[:, i] - q) / hinv[i, i]
            w[:, i + 1 :] -= err[:, None] * hinv[i, i + 1 :][None, :]
    return out.reshape(weight.shape).float(), scales.float()
