"""The report's augmentations (sections 2.3, 2.4): Mixup, Freq-MixStyle, device simulation.

Mixup and Freq-MixStyle act on log-mel batches (B, 1, F, T); device simulation acts on
waveforms (B, S) at the front end's rate, before the log-mel. Every function takes an
explicit torch.Generator so a training run is repeatable (and resumable) from its seed.

Impulse responses (MicIRP) are prepared once by `prepare_ir`: resampled to 32 kHz with
audio.resample, the silence before the onset cut, the tail cut where 99.9% of the energy is
reached, and scaled to unit energy (sum h^2 = 1). Unit energy keeps the broadband power of a
white-ish input unchanged, so the simulated device changes the spectral colour, not the
level: the MicIRP files' raw peak gains differ by orders of magnitude, and a level change is
not what a different microphone mostly does (the log-mel is level-sensitive).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tfsep_edge.core.config import DEFAULT_FRONTEND, FrontendConfig
from tfsep_edge.core.errors import TfsepError
from tfsep_edge.signal.audio import load_audio

IR_ENERGY_KEPT = 0.999  # tail cut: keep the shortest prefix holding this share of the energy
IR_MAX_SECONDS = 0.5  # longest response kept (a few MicIRP files ring for seconds)
IR_ONSET_DB = -40.0  # onset: first sample within 40 dB of the peak


# --- Mixup -----------------------------------------------------------------------------------


def mixup(
    x: torch.Tensor, targets: torch.Tensor, alpha: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mix each example with a random partner: x' = lam x + (1 - lam) x[perm], same lam for targets.

    `targets` are (B, K) probability rows (one-hot labels or soft teacher targets). lam ~
    Beta(alpha, alpha) per example. Returns (x', targets', lam (B,), perm (B,)).
    """
    b = x.shape[0]
    lam = _beta(alpha, b, generator).to(x.device, x.dtype)
    perm = torch.randperm(b, generator=generator).to(x.device)
    shape = (b,) + (1,) * (x.dim() - 1)
    x_mixed = lam.view(shape) * x + (1 - lam.view(shape)) * x[perm]
    t_mixed = lam[:, None] * targets + (1 - lam[:, None]) * targets[perm]
    return x_mixed, t_mixed, lam, perm


def _beta(alpha: float, n: int, generator: torch.Generator) -> torch.Tensor:
    """Beta(alpha, alpha) samples drawn from `generator` (torch.distributions has no generator)."""
    # Beta(a, a) = G1 / (G1 + G2) with Gamma(a) draws; torch._standard_gamma takes no generator,
    # so draw through numpy seeded from the torch generator: deterministic for the run's seed.
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    return torch.from_numpy(np.random.default_rng(seed).beta(alpha, alpha, n).astype(np.float32))


# --- Freq-MixStyle ---------------------------------------------------------------------------


def freq_mixstyle(
    x: torch.Tensor, alpha: float, p: float, generator: torch.Generator, eps: float = 1e-6
) -> torch.Tensor:
    """With probability p (per batch), normalise each example's frequency bands (mean and std over
    channels and time) and give them a mix of its own and a random partner's statistics.

    The per-frequency statistics carry the device's colouration; mixing them makes new
    "devices" while keeping the content. Shape is unchanged.
    """
    if p <= 0 or float(torch.rand(1, generator=generator)) >= p:
        return x
    b = x.shape[0]
    mu = x.mean(dim=(1, 3), keepdim=True).detach()
    sig = (x.var(dim=(1, 3), keepdim=True) + eps).sqrt().detach()
    lam = _beta(alpha, b, generator).to(x.device, x.dtype).view(b, 1, 1, 1)
    perm = torch.randperm(b, generator=generator).to(x.device)
    mu_mix = lam * mu + (1 - lam) * mu[perm]
    sig_mix = lam * sig + (1 - lam) * sig[perm]
    return (x - mu) / sig * sig_mix + mu_mix


# --- device simulation -----------------------------------------------------------------------


def prepare_ir(ir: np.ndarray, cfg: FrontendConfig = DEFAULT_FRONTEND) -> np.ndarray:
    """An impulse response at cfg.sample_rate -> onset-aligned, tail-cut, unit-energy float32."""
    ir = np.asarray(ir, dtype=np.float64)
    peak = np.max(np.abs(ir))
    if not np.isfinite(peak) or peak == 0:
        raise ValueError("impulse response is silent or not finite")
    onset = int(np.argmax(np.abs(ir) >= peak * 10 ** (IR_ONSET_DB / 20)))
    ir = ir[onset : onset + int(IR_MAX_SECONDS * cfg.sample_rate)]
    energy = np.cumsum(ir**2)
    ir = ir[: int(np.searchsorted(energy, IR_ENERGY_KEPT * energy[-1])) + 1]
    return (ir / np.sqrt(np.sum(ir**2))).astype(np.float32)


def load_irs(folder: str | Path, cfg: FrontendConfig = DEFAULT_FRONTEND) -> tuple[list[str], list[np.ndarray]]:
    """(names, prepared responses) of every WAV in `folder`, sorted by name."""
    folder = Path(folder)
    files = sorted(folder.glob("*.wav")) if folder.is_dir() else []
    if not files:
        raise TfsepError(
            f"{folder}: no impulse-response WAVs; point --dir-path at the MicIRP folder or use --devsim none"
        )
    names, irs = [], []
    for f in files:
        try:
            irs.append(prepare_ir(load_audio(f, cfg), cfg))
        except ValueError as exc:
            raise TfsepError(f"{f}: unusable impulse response ({exc}); remove it from {folder}") from None
        names.append(f.stem)
    return names, irs


def convolve(waves: torch.Tensor, irs: list[torch.Tensor]) -> torch.Tensor:
    """Each row of `waves` (B, S) convolved (linear, causal) with its response, cut to S samples."""
    s = waves.shape[-1]
    n = s + max(len(h) for h in irs) - 1
    n_fft = 1 << (n - 1).bit_length()
    h = torch.zeros(len(irs), n_fft, dtype=waves.dtype, device=waves.device)
    for i, ir in enumerate(irs):
        h[i, : len(ir)] = ir
    y = torch.fft.irfft(torch.fft.rfft(waves, n_fft) * torch.fft.rfft(h, n_fft), n_fft)
    return y[:, :s]


def simulate_devices(
    waves: torch.Tensor,
    is_device_a: torch.Tensor,
    irs: list[torch.Tensor],
    p: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """On-the-fly device simulation: each device-A row, with probability p, is convolved with a
    random impulse response. Other rows pass unchanged."""
    if p <= 0 or not irs:
        return waves
    pick = (torch.rand(len(waves), generator=generator) < p) & is_device_a.cpu()
    choice = torch.randint(0, len(irs), (len(waves),), generator=generator)
    rows = torch.nonzero(pick).flatten().tolist()
    if not rows:
        return waves
    out = waves.clone()
    out[rows] = convolve(waves[rows], [irs[int(choice[r])] for r in rows])
    return out
