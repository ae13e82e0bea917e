"""The named front ends (core.config.FRONTENDS): stored configs, numpy = torch per preset, and each
preset against an independent float64 implementation of its authors' recipe."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from tfsep_edge.core.config import DEFAULT_FRONTEND, FRONTENDS, FrontendConfig, frontend_preset, preset_name
from tfsep_edge.core.errors import TfsepError
from tfsep_edge.signal import frontend
from tfsep_edge.signal.audio import load_audio, split_windows
from tfsep_edge.signal.frontend import (
    StreamLogMel,
    hann_window,
    log_mel,
    log_mel_frames,
    log_mel_reference,
    log_mel_torch,
    mel_filterbank,
)

TOL = 1e-4  # the front-end tolerance of tests/test_foundation.py

# FrontendConfig.to_dict() as stored before the presets (checkpoints, .onnx/.tflite metadata).
STORED_BEFORE_PRESETS = {
    "sample_rate": 32000,
    "clip_seconds": 1.0,
    "preemphasis": 0.97,
    "n_fft": 2048,
    "win_length": 2048,
    "hop_length": 744,
    "n_mels": 128,
    "fmin": 0.0,
    "fmax": 16000.0,
    "log_offset": 1e-05,
    "norm_shift": 4.5,
    "norm_scale": 5.0,
}


@pytest.fixture(scope="module")
def real_windows(data_dir) -> np.ndarray:
    """The bundled MicIRP recordings, resampled and cut to 1-s windows (every preset is 32 kHz, 1 s)."""
    waves = [split_windows(load_audio(p))[0] for p in sorted((data_dir / "micirp").glob("*.wav"))]
    assert len(waves) == 4
    return np.stack(waves)


# --- the presets and stored configs -------------------------------------------------------


def test_presets_and_lookup():
    assert frontend_preset("cpjku") == DEFAULT_FRONTEND == FrontendConfig()
    cpmel = frontend_preset("cpmel")
    assert (cpmel.sample_rate, cpmel.n_fft, cpmel.win_length, cpmel.hop_length, cpmel.n_mels) == (
        32_000,
        4096,
        3072,
        500,
        512,
    )
    assert (cpmel.preemphasis, cpmel.fmin, cpmel.fmax, cpmel.window_periodic, cpmel.mel_banks) == (
        0.97,
        0.0,
        16_000.0,
        False,
        "kaldi",
    )
    assert (cpmel.log_offset, cpmel.norm_shift, cpmel.norm_scale) == (1e-5, 4.5, 5.0)
    assert (cpmel.n_mels, cpmel.n_frames) == (512, 64) and (DEFAULT_FRONTEND.n_mels, DEFAULT_FRONTEND.n_frames) == (
        128,
        44,
    )
    assert {preset_name(cfg) for cfg in FRONTENDS.values()} == set(FRONTENDS)
    assert preset_name(FrontendConfig(hop_length=500)) is None
    for bad in ("CpMel", "", None):
        with pytest.raises(TfsepError) as err:
            frontend_preset(bad)
        assert "\n" not in str(err.value) and "cpjku, cpmel" in str(err.value)


def test_stored_configs_load_unchanged():
    # A dict stored before the presets existed is today's front end, exactly.
    assert FrontendConfig.from_dict(STORED_BEFORE_PRESETS) == DEFAULT_FRONTEND
    assert FrontendConfig.from_dict(json.loads(json.dumps(STORED_BEFORE_PRESETS))) == DEFAULT_FRONTEND
    assert FrontendConfig.from_dict({}) == DEFAULT_FRONTEND
    for cfg in FRONTENDS.values():  # what is stored now (JSON, sorted keys as in metadata) loads back
        assert FrontendConfig.from_dict(json.loads(json.dumps(cfg.to_dict(), sort_keys=True))) == cfg
    assert {k: v for k, v in DEFAULT_FRONTEND.to_dict().items() if k in STORED_BEFORE_PRESETS} == STORED_BEFORE_PRESETS


@pytest.mark.parametrize(
    "values",
    [
        {"mel_banks": "htk"},
        {"win_length": 4096},
        {"n_fft": 2047, "win_length": 2000},
        {"hop_length": 0},
        {"fmax": 20_000.0},
    ],
)
def test_front_end_it_cannot_compute_is_one_line_error(values):
    # Rather than silently computing another front end than the model's.
    with pytest.raises(TfsepError) as err:
        FrontendConfig.from_dict({**STORED_BEFORE_PRESETS, **values})
    msg = str(err.value)
    assert "\n" not in msg and next(iter(values)) in msg and "cpjku, cpmel" in msg


# --- numpy = torch, shapes ----------------------------------------------------------------


@pytest.mark.parametrize("name", list(FRONTENDS))
def test_numpy_equals_torch_per_preset(name, real_windows):
    cfg = FRONTENDS[name]
    assert log_mel(real_windows[:1], cfg).shape == (1, cfg.n_mels, cfg.n_frames)
    numpy_out = log_mel(real_windows, cfg)
    torch_out = log_mel_torch(torch.from_numpy(real_windows), cfg)
    assert torch_out.shape == (4, 1, cfg.n_mels, cfg.n_frames)
    torch_out = torch_out.squeeze(1).numpy()
    assert numpy_out.std() > 0.1  # real signal, not a constant floor
    np.testing.assert_allclose(numpy_out, torch_out, atol=TOL, rtol=0)
    np.testing.assert_allclose(numpy_out, log_mel_reference(real_windows, cfg), atol=TOL, rtol=0)


def test_cpmel_is_512_by_64_per_second():
    cfg = frontend_preset("cpmel")
    wave = np.random.default_rng(0).standard_normal(32_000).astype(np.float32) * 0.1
    assert cfg.clip_samples == 32_000
    assert log_mel(wave, cfg).shape == (512, 64)
    assert log_mel_torch(torch.from_numpy(wave[None]), cfg).shape == (1, 1, 512, 64)


@pytest.mark.parametrize("name", list(FRONTENDS))
def test_both_fft_backends_and_streaming_per_preset(name, real_windows):
    cfg = FRONTENDS[name]
    try:
        outs = []
        for backend in frontend.FFT_BACKENDS:
            try:
                frontend.set_fft_backend(backend)
            except ValueError:  # scipy not installed
                continue
            outs.append(log_mel(real_windows[0], cfg))
            cols = np.array([0, 5, cfg.n_frames // 2, cfg.n_frames - 1])
            np.testing.assert_array_equal(log_mel_frames(real_windows[0], cols, cfg), outs[-1][:, cols])
    finally:
        frontend.set_fft_backend(None)
    for out in outs[1:]:
        np.testing.assert_allclose(out, outs[0], atol=TOL, rtol=0)
    # listen's per-window front end equals log_mel of each window, frames reused or not.
    stream = np.concatenate(list(real_windows[:2]))
    lm = StreamLogMel(cfg)
    for end in (cfg.clip_samples, cfg.clip_samples + 10 * cfg.hop_length, 2 * cfg.clip_samples):
        window = stream[end - cfg.clip_samples : end]
        np.testing.assert_array_equal(lm(window, end), log_mel(window, cfg))
    assert lm.reused > 0


def test_periodic_window_option():
    for n in (2048, 3072):
        for periodic in (False, True):  # torch computes the window in float32: ~2e-7 apart
            np.testing.assert_allclose(hann_window(n, periodic), torch.hann_window(n, periodic=periodic), atol=1e-6)
    cfg = FrontendConfig(n_fft=4096, win_length=3072, hop_length=500, n_mels=512, window_periodic=True)
    wave = np.random.default_rng(1).standard_normal((2, 32_000)).astype(np.float32) * 0.1
    out = log_mel(wave, cfg)
    np.testing.assert_allclose(out, log_mel_torch(torch.from_numpy(wave), cfg).squeeze(1).numpy(), atol=TOL, rtol=0)
    np.testing.assert_allclose(out, authors_recipe(wave, cfg, periodic=True), atol=TOL, rtol=0)
    assert np.abs(out - log_mel(wave, frontend_preset("cpmel"))).max() > 1e-3  # the flag changes the output


def test_bands_with_no_bins_are_the_floor():
    # n_fft 64: the lowest 21 bands fall between bins 0 and 1, so a whole block of 16 bands is empty.
    cfg = FrontendConfig(n_fft=64, win_length=64, hop_length=32, n_mels=128)
    assert not mel_filterbank(cfg)[:16].any()
    wave = np.random.default_rng(2).standard_normal((2, 32_000)).astype(np.float32)
    log_mel(np.ones((1, 32_000), np.float32) * 1e3, cfg)  # leaves large values in the reused buffers
    out = log_mel(wave, cfg)
    np.testing.assert_allclose(out, log_mel_reference(wave, cfg), atol=TOL, rtol=0)
    np.testing.assert_allclose(out[:, :16], (math.log(1e-5) + 4.5) / 5, atol=1e-6)


# --- the authors' recipe, written out independently ----------------------------------------


def kaldi_mel_banks(n_mels: int, n_fft: int, sample_rate: float, fmin: float, fmax: float) -> np.ndarray:
    """torchaudio.compliance.kaldi.get_mel_banks(n_mels, n_fft, sample_rate, fmin, fmax, 100, -500, 1.0)
    in float64, one band at a time: (n_mels, n_fft // 2), no Nyquist column."""

    def mel(hz):
        return 1127.0 * np.log(1.0 + np.asarray(hz, np.float64) / 700.0)

    step = (mel(fmax) - mel(fmin)) / (n_mels + 1)
    bin_mel = mel(np.arange(n_fft // 2) * (sample_rate / n_fft))
    banks = np.zeros((n_mels, n_fft // 2))
    for m in range(n_mels):
        left, centre, right = mel(fmin) + m * step, mel(fmin) + (m + 1) * step, mel(fmin) + (m + 2) * step
        rising, falling = (bin_mel - left) / (centre - left), (right - bin_mel) / (right - centre)
        banks[m] = np.clip(np.minimum(rising, falling), 0.0, None)
    return banks


def authors_recipe(waves: np.ndarray, cfg: FrontendConfig, periodic: bool = False) -> np.ndarray:
    """CpMel.forward (easy_dcase_task1, module util.spec_extractor), step by step in float64:
    (B, samples) -> (B, n_mels, frames)."""
    x = np.asarray(waves, np.float64).reshape(-1, waves.shape[-1])
    # conv1d with the kernel [-0.97, 1] (a cross-correlation): one sample fewer.
    x = -cfg.preemphasis * x[:, :-1] + 1.0 * x[:, 1:]
    # torch.stft(center=True): reflect padding of n_fft // 2 at both ends ...
    half = cfg.n_fft // 2
    x = np.pad(x, ((0, 0), (half, half)), mode="reflect")
    # ... and a win_length window zero-padded to n_fft, centred.
    n = cfg.win_length
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / (n if periodic else n - 1))
    window = np.zeros(cfg.n_fft)
    start = (cfg.n_fft - n) // 2
    window[start : start + n] = hann
    n_frames = 1 + (x.shape[1] - cfg.n_fft) // cfg.hop_length
    frames = np.stack([x[:, t * cfg.hop_length : t * cfg.hop_length + cfg.n_fft] for t in range(n_frames)], axis=1)
    spectrum = np.fft.rfft(frames * window, axis=-1)  # (B, T, n_fft // 2 + 1)
    power = spectrum.real**2 + spectrum.imag**2  # view_as_real, squared, summed
    banks = kaldi_mel_banks(cfg.n_mels, cfg.n_fft, cfg.sample_rate, cfg.fmin, cfg.fmax)
    banks = np.pad(banks, ((0, 0), (0, 1)))  # the zero column for the Nyquist bin
    mel = np.einsum("mf,btf->bmt", banks, power)
    out = (np.log(mel + cfg.log_offset) + cfg.norm_shift) / cfg.norm_scale
    return out.reshape(waves.shape[:-1] + out.shape[1:])


def torchaudio_mel_banks_float32(n_mels: int, n_fft: int, sample_rate: float, fmin: float, fmax: float):
    """get_mel_banks as torchaudio computes it (torch float32 tensors, python-float end points)."""
    mel_lo, mel_hi = (1127.0 * math.log(1.0 + f / 700.0) for f in (fmin, fmax))
    delta = (mel_hi - mel_lo) / (n_mels + 1)
    band = torch.arange(n_mels).unsqueeze(1)
    left, centre, right = (mel_lo + (band + k) * delta for k in (0.0, 1.0, 2.0))
    bins = 1127.0 * (1.0 + (sample_rate / n_fft) * torch.arange(n_fft / 2) / 700.0).log()
    up, down = (bins - left) / (centre - left), (right - bins) / (right - centre)
    return torch.max(torch.zeros(1), torch.min(up, down)).numpy()


@pytest.mark.parametrize("name", list(FRONTENDS))
def test_filterbank_is_kaldis(name):
    cfg = FRONTENDS[name]
    fb = mel_filterbank(cfg)
    assert fb.shape == (cfg.n_mels, cfg.n_fft // 2 + 1) and fb.dtype == np.float32 and not fb[:, -1].any()
    exact = kaldi_mel_banks(cfg.n_mels, cfg.n_fft, cfg.sample_rate, cfg.fmin, cfg.fmax)
    np.testing.assert_allclose(fb[:, :-1], exact, atol=1e-7, rtol=0)
    # torchaudio's float32 arithmetic moves weights a little; the float64 bank is the exact one.
    ta = torchaudio_mel_banks_float32(cfg.n_mels, cfg.n_fft, cfg.sample_rate, cfg.fmin, cfg.fmax)
    assert ta.shape == exact.shape and np.abs(ta - exact).max() < 2e-4
    assert fb.any(axis=1).all()  # no empty band in either preset


@pytest.mark.parametrize("name", list(FRONTENDS))
def test_preset_equals_the_authors_recipe(name, real_windows):
    cfg = FRONTENDS[name]
    expected = authors_recipe(real_windows, cfg)
    assert expected.shape == (4, cfg.n_mels, cfg.n_frames)
    np.testing.assert_allclose(log_mel(real_windows, cfg), expected, atol=TOL, rtol=0)
    got = log_mel_torch(torch.from_numpy(real_windows), cfg).squeeze(1).numpy()
    np.testing.assert_allclose(got, expected, atol=TOL, rtol=0)


def test_alternating_presets_keep_their_buffers(real_windows):
    # A process feeding two models of different front ends must not reallocate on every switch.
    first = {name: log_mel(real_windows[0], cfg) for name, cfg in FRONTENDS.items()}
    backend = frontend.fft_backend()
    kept = {name: frontend._workspace(cfg.clip_samples, cfg, backend) for name, cfg in FRONTENDS.items()}
    for _ in range(2):
        for name, cfg in FRONTENDS.items():
            np.testing.assert_array_equal(log_mel(real_windows[0], cfg), first[name])
            assert frontend._workspace(cfg.clip_samples, cfg, backend) is kept[name]
    assert kept["cpjku"].frames.shape == (44, 2048) and kept["cpmel"].frames.shape == (64, 4096)
