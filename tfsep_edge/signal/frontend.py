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

import threading
from functools import lru_cache

import numpy as np

from tfsep_edge.core.config import DEFAULT_FRONTEND, FrontendConfig


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


def _frames(
    wave: np.ndarray, cfg: FrontendConfig, buf: np.ndarray | None = None, out: np.ndarray | None = None
) -> np.ndarray:
    """Pre-emphasised, reflect-padded, windowed frames: (..., n_frames, n_fft).

    Written into one padded buffer and framed by a strided view: no np.pad, no copies
    besides the windowing product (half the time of the obvious version at batch 1).
    `buf` (..., n - 1 + 2 * (n_fft // 2)) and `out` are optional preallocated buffers.
    """
    n = wave.shape[-1] - 1  # samples after pre-emphasis
    pad = cfg.n_fft // 2
    if n < pad + 2:
        raise ValueError(f"{n + 1} samples: too short for a centred {cfg.n_fft}-point STFT (reflect padding)")
    lead = wave.shape[:-1]
    if buf is None:
        buf = np.empty(lead + (n + 2 * pad,), dtype=wave.dtype)
    body = buf[..., pad : pad + n]
    np.multiply(wave[..., :-1], -cfg.preemphasis, out=body)
    body += wave[..., 1:]
    buf[..., :pad] = body[..., pad:0:-1]  # reflect: x[pad], ..., x[1]
    buf[..., pad + n :] = body[..., n - 2 : n - 2 - pad : -1]  # x[n-2], ..., x[n-1-pad]
    n_frames = 1 + n // cfg.hop_length
    step = buf.strides[-1]
    frames = np.lib.stride_tricks.as_strided(
        buf, lead + (n_frames, cfg.n_fft), buf.strides[:-1] + (cfg.hop_length * step, step), writeable=False
    )
    window = hann_window(cfg.win_length)
    if cfg.win_length != cfg.n_fft:  # torch centres a shorter window inside n_fft
        offset = (cfg.n_fft - cfg.win_length) // 2
        window = np.pad(window, (offset, cfg.n_fft - cfg.win_length - offset))
    return np.multiply(frames, window.astype(frames.dtype), out=out)


# Per-thread buffers reused by log_mel across calls of one input shape. Allocating the
# temporaries on every call costs page faults and glibc mmap/trim churn, which slowed the front
# end when other work (another model, the reference front end) ran in between.
_WORKSPACE = threading.local()
_RFFT_HAS_OUT = np.lib.NumpyVersion(np.__version__) >= "2.0.0"
# numpy's rfft gets much slower per frame from 64 frames (2048 points) up: a batch is
# transformed in pieces of at most this many frames (a 1-s clip has 44).
_FFT_ROWS = 48


def _workspace(shape: tuple, cfg: FrontendConfig) -> tuple[np.ndarray, ...]:
    key = (shape, cfg)
    cached = getattr(_WORKSPACE, "buffers", None)
    if cached is None or cached[0] != key:
        lead, n = shape[:-1], shape[-1] - 1
        n_frames, bins = 1 + n // cfg.hop_length, cfg.n_fft // 2 + 1
        cached = (
            key,
            np.empty(lead + (n + 2 * (cfg.n_fft // 2),), np.float32),
            np.empty(lead + (n_frames, cfg.n_fft), np.float32),
            np.empty(lead + (n_frames, bins), np.complex64),
            np.empty(lead + (n_frames, bins), np.float32),
        )
        _WORKSPACE.buffers = cached
    return cached[1:]


def rfft_frames(frames: np.ndarray, spectrum: np.ndarray) -> np.ndarray:
    """float32 frames (..., n_fft) -> complex64 spectrum (..., n_fft // 2 + 1), written in place.

    log_mel's FFT step, on its own so the benchmark can time the FFT alone (numpy >= 2.0).
    """
    rows = frames.reshape(-1, frames.shape[-1])
    out = spectrum.reshape(-1, spectrum.shape[-1])
    for r in range(0, len(rows), _FFT_ROWS):
        np.fft.rfft(rows[r : r + _FFT_ROWS], axis=-1, out=out[r : r + _FFT_ROWS])
    return spectrum


def _normalize(mel_power: np.ndarray, cfg: FrontendConfig) -> np.ndarray:
    return (np.log(mel_power + cfg.log_offset) + cfg.norm_shift) / cfg.norm_scale


def log_mel(wave: np.ndarray, cfg: FrontendConfig = DEFAULT_FRONTEND) -> np.ndarray:
    """Waveform(s) (..., n_samples) at cfg.sample_rate -> log-mel (..., n_mels, n_frames) float32.

    float32 FFT and a block-banded mel product: the fast path of the light runtime.
    """
    wave = np.asarray(wave, dtype=np.float32)
    if _RFFT_HAS_OUT:
        buf, frames, spectrum, power = _workspace(wave.shape, cfg)
        rfft_frames(_frames(wave, cfg, buf, frames), spectrum)
        np.abs(spectrum, out=power)
    else:  # numpy 1.x: no `out` for the FFT
        spectrum = np.fft.rfft(_frames(wave, cfg), axis=-1)
        power = np.abs(spectrum)
    power *= power  # (..., frames, bins); |z| squared in place beats re^2 + im^2
    mel = np.empty(power.shape[:-1] + (cfg.n_mels,), dtype=np.float32)
    for r0, r1, b0, b1, weights in _mel_blocks(cfg):
        np.matmul(power[..., b0:b1], weights, out=mel[..., r0:r1])
    # _normalize in place: (log(mel + offset) + shift) / scale
    mel += np.float32(cfg.log_offset)
    np.log(mel, out=mel)
    mel += np.float32(cfg.norm_shift)
    mel /= np.float32(cfg.norm_scale)
    return mel.swapaxes(-1, -2)


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
