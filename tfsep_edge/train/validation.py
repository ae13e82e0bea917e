"""Logits of a whole split and the validation figures of an epoch."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from tfsep_edge.core.config import FrontendConfig
from tfsep_edge.datasets.cache import SplitData
from tfsep_edge.signal.frontend import log_mel_torch


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module, split: SplitData, device: torch.device, cfg: FrontendConfig, batch: int = 128
) -> np.ndarray:
    """(N, 10) logits of a split's clips: cached waveform -> log_mel_torch(cfg) -> model (eval mode)."""
    model.eval()
    out = []
    for i in range(0, len(split), batch):
        waves = torch.from_numpy(split.waves.get(np.arange(i, min(i + batch, len(split))))).to(device)
        out.append(model(log_mel_torch(waves, cfg)).float().cpu())
    return torch.cat(out).numpy()


def validate(
    model: torch.nn.Module, val_set: SplitData, device: torch.device, cfg: FrontendConfig
) -> tuple[float, float]:
    """(accuracy, cross-entropy) of `model` on the validation split, on the features of `cfg`."""
    val_logits = predict_logits(model, val_set, device, cfg)
    val_acc = float(np.mean(val_logits.argmax(1) == val_set.labels))
    val_loss = float(F.cross_entropy(torch.from_numpy(val_logits), torch.from_numpy(val_set.labels)))
    return val_acc, val_loss
