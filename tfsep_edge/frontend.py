"""The log-mel front end, defined once.

CP-JKU's DCASE22 set-up, as the TF-SepNet report uses it: pre-emphasis (x[n+1] - 0.97 x[n]),
centred STFT (reflect padding) with a symmetric 2048-sample Hann window, hop 744, power
spectrum, 128 Kaldi-style mel bands (triangles on the 1127 ln(1 + f/700) scale, 0-16 kHz,
Nyquist bin zero), log(x + 1e-5), then (x + 4.5) / 5.

`mel_filterbank` and `hann_window` are the single source of the constants; `log_mel` (numpy,
for the torch-free runtime) and `log_mel_torch` (training, calibration, ONNX export) both use
them and are tested equal. `log_mel_reference` is the straightforward float64 version, kept as
the yardstick for correctness tests and the front-end benchmark.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .config import DEFAULT_FRONTEND, FrontendConfig


def _kaldi_mel(freq: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log1p(freq / 700.0)


@lru_cache(maxsize=8)
def mel_filterbank(cfg: FrontendConfig = DEFAULT_FRONTEND) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) float32 Kaldi mel filterbank (as torchaudio's get_mel_banks,
    padded with a zero column for the Nyquist bin)."""
    n_bins = cfg.n_fft // 2
    mel_lo, mel_hi = _kaldi_mel(np.float64(cfg.fmin)), _kaldi_mel(np.float64(cfg.fmax))
    delta = (mel_hi - mel_lo) / (cfg.n_mels + 1)
    idx = np.arange(cfg.n_mels, dtype=np.float64)[:, None]
    left, center, right = mel_lo + idx * delta, mel_lo + (idx + 1) * delta, mel_lo + (idx + 2) * delta
    mel = _kaldi_mel(cfg.sample_rate / cfg.n_fft * np.arange(n_bins, dtype=np.float64))[None, :]
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    banks = np.maximum(0.0, np.minimum(up, down))
    out = np.zeros((cfg.n_mels, n_bins + 1), dtype=np.float32)
    out[:, :n_bins] = banks
    out.setflags(write=False)
    return out


@lru_cache(maxsize=8)
def hann_window(length: int) -> np.ndarray:
    """Symmetric Hann window (torch.hann_window(periodic=False))."""
    w = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / (length - 1))).astype(np.float32)
    w.setflags(write=False)
    return w


@lru_cache(maxsize=8)
def _mel_blocks(cfg: FrontendConfig, rows_per_block: int = 16) -> tuple:
    """Split the filterbank into row blocks, each with the bin range its triangles cover.

    The triangles are banded, so 8 small dense products touch ~1/7 of the dense matrix.
    """
    fb = mel_filterbank(cfg)
    blocks = []
    for r0 in range(0, fb.shape[0], rows_per_block):
        r1 = min(r0 + rows_per_block, fb.shape[0])
        nz = np.nonzero(fb[r0:r1].any(axis=0))[0]
        if nz.size == 0:
            continue
        b0, b1 = int(nz[0]), int(nz[-1]) + 1
        blocks.append((r0, r1, b0, b1, np.ascontiguousarray(fb[r0:r1, b0:b1].T)))
    return tuple(blocks)


def _frames(wave: np.ndarray, cfg: FrontendConfig) -> np.ndarray:
    """Pre-emphasised, reflect-padded, windowed frames: (..., n_frames, n_fft)."""
    emphasized = wave[..., 1:] - cfg.preemphasis * wave[..., :-1]
    pad = cfg.n_fft // 2
    padded = np.pad(emphasized, [(0, 0)] * (wave.ndim - 1) + [(pad, pad)], mode="reflect")
    n_frames = 1 + emphasized.shape[-1] // cfg.hop_length
    view = np.lib.stride_tricks.sliding_window_view(padded, cfg.n_fft, axis=-1)
    frames = view[..., : (n_frames - 1) * cfg.hop_length + 1 : cfg.hop_length, :]
    window = hann_window(cfg.win_length)
    if cfg.win_length != cfg.n_fft:  # torch centres a shorter window inside n_fft
        offset = (cfg.n_fft - cfg.win_length) // 2
        window = np.pad(window, (offset, cfg.n_fft - cfg.win_length - offset))
    return frames * window.astype(frames.dtype)


def _normalize(mel_power: np.ndarray, cfg: FrontendConfig) -> np.ndarray:
    return (np.log(mel_power + cfg.log_offset) + cfg.norm_shift) / cfg.norm_scale


def log_mel(wave: np.ndarray, cfg: FrontendConfig = DEFAULT_FRONTEND) -> np.ndarray:
    """Waveform(s) (..., n_samples) at cfg.sample_rate -> log-mel (..., n_mels, n_frames) float32.

    float32 FFT and a block-banded mel product: the fast path of the light runtime.
    """
    wave = np.asarray(wave, dtype=np.float32)
    spectrum = np.fft.rfft(_frames(wave, cfg), axis=-1)  # complex64 for float32 input
    pairs = spectrum.view(np.float32)
    power = pairs[..., 0::2] ** 2 + pairs[..., 1::2] ** 2  # (..., frames, bins)
    mel = np.empty(power.shape[:-1] + (cfg.n_mels,), dtype=np.float32)
    for r0, r1, b0, b1, weights in _mel_blocks(cfg):
        np.matmul(power[..., b0:b1], weights, out=mel[..., r0:r1])
    return _normalize(mel, cfg).swapaxes(-1, -2).astype(np.float32, copy=False)


def log_mel_reference(wave: np.ndarray, cfg: FrontendConfig = DEFAULT_FRONTEND) -> np.ndarray:
    """The straightforward version: float64 FFT and the dense filterbank (yardstick only)."""
    wave = np.asarray(wave, dtype=np.float64)
    spectrum = np.fft.rfft(_frames(wave, cfg), axis=-1)
    power = np.abs(spectrum) ** 2
    mel = mel_filterbank(cfg).astype(np.float64) @ power.swapaxes(-1, -2)
    return _normalize(mel, cfg).astype(np.float32)


def log_mel_torch(wave, cfg: FrontendConfig = DEFAULT_FRONTEND):
    """torch version (training, calibration): (B, n_samples) -> (B, 1, n_mels, T).

    Uses the same filterbank and window arrays as the numpy version.
    """
    import torch

    fb = torch.from_numpy(np.array(mel_filterbank(cfg))).to(wave.device)
    window = torch.from_numpy(np.array(hann_window(cfg.win_length))).to(wave.device)
    x = wave[:, 1:] - cfg.preemphasis * wave[:, :-1]
    spec = torch.stft(
        x,
        cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        window=window,
        center=True,
        pad_mode="reflect",
        normalized=False,
        onesided=True,
        return_complex=True,
    )
    power = spec.real.square() + spec.imag.square()  # (B, bins, frames)
    mel = torch.matmul(fb, power)
    out = (torch.log(mel + cfg.log_offset) + cfg.norm_shift) / cfg.norm_scale
    return out.unsqueeze(1)
