"""The foundation: TF-SepNet against the reference, checkpoints, the front end, audio, bad input."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import run_cli

from tfsep_edge import TFSepNet, load_model
from tfsep_edge.core.config import DEFAULT_FRONTEND, LABELS, FrontendConfig
from tfsep_edge.core.errors import TfsepError
from tfsep_edge.model.checkpoint import load_checkpoint, save_checkpoint
from tfsep_edge.model.tfsepnet import AdaResNorm
from tfsep_edge.signal.audio import load_audio, split_windows
from tfsep_edge.signal.frontend import log_mel, log_mel_reference, log_mel_torch, mel_filterbank

SR = DEFAULT_FRONTEND.sample_rate


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics and AdaResNorm parameters, so nothing hides behind 0/1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            elif isinstance(m, AdaResNorm):
                m.rho.copy_(torch.rand(m.rho.shape, generator=g))
                m.gamma.copy_(torch.rand(m.gamma.shape, generator=g) + 0.5)
                m.beta.copy_(torch.randn(m.beta.shape, generator=g) * 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def logmel_input() -> torch.Tensor:
    return torch.randn(2, 1, 128, 44, generator=torch.Generator().manual_seed(1))


# --- the model ---------------------------------------------------------------------------


@pytest.mark.parametrize("width,params", [(12, 6_838), (20, 15_890), (40, 54_270), (60, 115_150), (160, 757_050)])
def test_table3_parameter_counts(width, params):
    assert sum(p.numel() for p in TFSepNet(width).parameters()) == params


def test_reference_vector(data_dir):
    model = load_model(data_dir / "reference_c20_state_dict.pt")
    x = torch.from_numpy(np.load(data_dir / "reference_c20_input.npy"))
    expected = np.load(data_dir / "reference_c20_logits.npy")
    with torch.no_grad():
        got = model(x).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_other_width_and_shuffle_groups_round_trip(tmp_path, logmel_input):
    """A reference-style state_dict of width 40 with 5 shuffle groups (default would be 10)."""
    model = randomize(TFSepNet(40, shuffle_groups=5))
    path = tmp_path / "c40_g5.pt"
    torch.save(model.state_dict(), path)
    with torch.no_grad():
        want = model(logmel_input)
        same = load_model(path, shuffle_groups=5)(logmel_input)
        other = load_model(path)(logmel_input)  # 10 groups: same weights, another network
    torch.testing.assert_close(same, want, atol=1e-6, rtol=0)
    assert (other - want).abs().max() > 1e-3  # the groups matter, so they must be passed


def test_own_checkpoint_round_trip(tmp_path, logmel_input):
    model = randomize(TFSepNet(20, shuffle_groups=10, dropout=0.1), seed=3)
    frontend = FrontendConfig(hop_length=500, n_mels=128, fmax=15_000.0)
    path = tmp_path / "own.pt"
    save_checkpoint(model, path, frontend=frontend, meta={"epochs": 3})
    loaded, info = load_checkpoint(path)
    assert loaded.config == model.config and loaded.config.groups == 10
    assert info["format"] == "tfsep-edge" and info["frontend"] == frontend
    assert info["labels"] == list(LABELS) and info["meta"] == {"epochs": 3}
    assert not loaded.training
    with torch.no_grad():
        torch.testing.assert_close(loaded(logmel_input), model(logmel_input), atol=0, rtol=0)


@pytest.mark.parametrize("wrap", ["state_dict", "model"])
def test_wrapped_state_dict_loads(tmp_path, logmel_input, wrap):
    model = randomize(TFSepNet(12), seed=4)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}  # Lightning-style prefix
    path = tmp_path / f"{wrap}.pt"
    torch.save({wrap: state, "epoch": 7}, path)
    with torch.no_grad():
        torch.testing.assert_close(load_model(path)(logmel_input), model(logmel_input), atol=0, rtol=0)


def test_checkpoint_edge_cases(tmp_path):
    """Failures found while testing: each is one clear TfsepError, not a crash or a wrong model."""
    weird = tmp_path / "weird.pt"  # a TF-SepNet stem next to a non-tensor where a weight belongs
    torch.save({"feature.0.weight": torch.zeros(24, 1, 5, 5), "feature.1.rho": 3}, weird)
    with pytest.raises(TfsepError, match="feature.1.rho: int"):
        load_model(weird)
    with pytest.raises(TfsepError, match="is a folder"):
        load_model(tmp_path)
    noise = tmp_path / "noise.pt"
    noise.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(TfsepError, match="not a readable PyTorch checkpoint") as err:
        load_model(noise)
    assert "pickled Python objects" not in str(err.value)  # only real pickles are called that
    own = tmp_path / "own.pt"
    save_checkpoint(TFSepNet(20, shuffle_groups=10), own)
    assert load_checkpoint(own, shuffle_groups=10)[0].config.groups == 10
    with pytest.raises(TfsepError, match="trained with 10 shuffle groups, not 5"):
        load_checkpoint(own, shuffle_groups=5)


# --- the front end -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_windows(data_dir) -> np.ndarray:
    """The bundled MicIRP recordings (24-bit, 44.1/48 kHz), resampled and cut to 1-s windows."""
    waves = [split_windows(load_audio(p))[0] for p in sorted((data_dir / "micirp").glob("*.wav"))]
    assert len(waves) == 4
    return np.stack(waves)


def test_frontend_shape_and_implementations_agree(real_windows):
    assert log_mel(real_windows[:1]).shape == (1, 128, 44)
    numpy_out = log_mel(real_windows)
    torch_out = log_mel_torch(torch.from_numpy(real_windows)).squeeze(1).numpy()
    reference = log_mel_reference(real_windows)
    assert numpy_out.shape == torch_out.shape == reference.shape == (4, 128, 44)
    assert numpy_out.std() > 0.1  # real signal, not a constant floor
    np.testing.assert_allclose(numpy_out, reference, atol=1e-4, rtol=0)
    np.testing.assert_allclose(torch_out, reference, atol=1e-4, rtol=0)


def test_filterbank_independent_checks():
    cfg = DEFAULT_FRONTEND
    fb = mel_filterbank(cfg).astype(np.float64)
    n_bins = cfg.n_fft // 2 + 1
    assert fb.shape == (cfg.n_mels, n_bins)
    assert fb.min() >= 0 and fb.max() <= 1 and not fb[:, -1].any()  # Nyquist column zero
    # Centres on the Kaldi mel scale, equally spaced between fmin and fmax (computed here, in Hz).
    mel_hi = 1127.0 * np.log(1 + cfg.fmax / 700.0)
    centre_hz = 700.0 * (np.exp(np.arange(1, cfg.n_mels + 1) * mel_hi / (cfg.n_mels + 1) / 1127.0) - 1)
    bin_hz = cfg.sample_rate / cfg.n_fft
    assert np.all(np.abs(fb.argmax(axis=1) - centre_hz / bin_hz) <= 1.0)
    # The sampled peak is within half a bin of the centre: at least 1 - 0.5 / (half-width in bins).
    half_width = (centre_hz - np.concatenate([[cfg.fmin], centre_hz[:-1]])) / bin_hz
    assert np.all(fb.max(axis=1) >= 1 - 0.5 / half_width - 1e-6)
    assert fb[half_width >= 10].max(axis=1).min() > 0.95
    assert fb.any(axis=1).all()  # no empty band
    # Neighbouring triangles share edges, so between the first and last centres they sum to 1.
    inner = np.arange(n_bins)
    inner = inner[(inner > centre_hz[0] / bin_hz) & (inner < centre_hz[-1] / bin_hz)]
    np.testing.assert_allclose(fb[:, inner].sum(axis=0), 1.0, atol=1e-5)
    # A single hand-checked value: band 64 at bin 400 (6250 Hz).
    m = 1127.0 * np.log(1 + 6250.0 / 700.0)
    left, centre = 64 * mel_hi / 129, 65 * mel_hi / 129
    right = 66 * mel_hi / 129
    expected = max(0.0, min((m - left) / (centre - left), (right - m) / (right - centre)))
    assert abs(fb[64, 400] - expected) < 1e-6


# --- audio -------------------------------------------------------------------------------


def sine(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(rate * seconds))) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(wave: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.argmax(spec) * rate / len(wave))


@pytest.mark.parametrize("rate", [44_100, 48_000, 16_000])
def test_resampled_to_32k_with_right_length_and_pitch(tmp_path, rate):
    path = tmp_path / f"tone_{rate}.wav"
    sf.write(path, sine(1000.0, rate, 1.5), rate, subtype="FLOAT")
    wave = load_audio(path)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert len(wave) == int(round(1.5 * SR))
    assert abs(peak_hz(wave, SR) - 1000.0) < 2.0
    assert abs(np.abs(wave[SR // 4 : -SR // 4]).max() - 0.5) < 0.01  # band-limited, not attenuated


def test_stereo_is_downmixed(tmp_path):
    left, right = sine(440.0, SR, 1.0), sine(1000.0, SR, 1.0, amp=0.25)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), SR, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path), (left + right) / 2, atol=1e-6)


@pytest.mark.parametrize("subtype,tol", [("PCM_16", 1 / 2**15), ("PCM_24", 1 / 2**23), ("FLOAT", 1e-7)])
def test_pcm_and_float_wav_read(tmp_path, subtype, tol):
    wave = sine(440.0, SR, 0.5)
    path = tmp_path / f"{subtype}.wav"
    sf.write(path, wave, SR, subtype=subtype)
    assert sf.info(path).subtype == subtype
    np.testing.assert_allclose(load_audio(path), wave, atol=tol)


def test_short_clip_padded_long_clip_cut():
    short = np.ones(SR // 3, dtype=np.float32)
    windows = split_windows(short)
    assert windows.shape == (1, SR)
    assert windows[0, : SR // 3].all() and not windows[0, SR // 3 :].any()
    long = np.arange(int(2.6 * SR), dtype=np.float32)
    windows = split_windows(long)
    assert windows.shape == (3, SR)
    np.testing.assert_array_equal(windows[1], long[SR : 2 * SR])
    assert split_windows(np.ones(int(2.2 * SR), dtype=np.float32)).shape == (2, SR)  # 0.2-s tail dropped


def bad_wavs(folder) -> dict:
    folder.mkdir()
    files = {}
    files["corrupt"] = folder / "corrupt.wav"
    files["corrupt"].write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(64))
    files["empty"] = folder / "empty.wav"
    files["empty"].write_bytes(b"")
    files["zero_samples"] = folder / "zero_samples.wav"
    sf.write(files["zero_samples"], np.zeros(0, dtype=np.float32), SR)
    files["nan"] = folder / "nan.wav"
    wave = sine(440.0, SR, 0.5)
    wave[100] = np.nan
    sf.write(files["nan"], wave, SR, subtype="FLOAT")
    files["inf"] = folder / "inf.wav"
    wave[100] = np.inf
    sf.write(files["inf"], wave, SR, subtype="FLOAT")
    files["silent"] = folder / "silent.wav"
    sf.write(files["silent"], np.zeros(SR, dtype=np.float32), SR, subtype="PCM_16")
    files["missing"] = folder / "missing.wav"
    whole = folder / "whole.wav"
    sf.write(whole, sine(440.0, SR, 1.0), SR, subtype="PCM_16")
    files["truncated"] = folder / "truncated.wav"  # a half-copied file: libsndfile alone reads it
    files["truncated"].write_bytes(whole.read_bytes()[:1000])
    return files


@pytest.mark.parametrize("kind", ["corrupt", "empty", "zero_samples", "nan", "inf", "silent", "missing", "truncated"])
def test_bad_audio_raises_naming_the_file(tmp_path, kind):
    path = bad_wavs(tmp_path / "wavs")[kind]
    with pytest.raises(TfsepError) as err:
        load_audio(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message


# --- bad input through the real CLI --------------------------------------------------------


def bad_checkpoints(folder, data_dir) -> dict:
    folder.mkdir()
    files = {"missing": folder / "missing.pt"}
    files["random_bytes"] = folder / "random.pt"
    files["random_bytes"].write_bytes(os.urandom(4096))
    files["text"] = folder / "notes.pt"
    files["text"].write_text("this is not a checkpoint\n")
    files["empty"] = folder / "empty.pt"
    files["empty"].write_bytes(b"")
    files["other_architecture"] = folder / "linear.pt"
    torch.save(torch.nn.Linear(4, 2).state_dict(), files["other_architecture"])
    files["pickled_module"] = folder / "module.pt"
    torch.save(torch.nn.Linear(4, 2), files["pickled_module"])
    real = (data_dir / "reference_c20_state_dict.pt").read_bytes()
    files["truncated"] = folder / "truncated.pt"
    files["truncated"].write_bytes(real[: len(real) // 2])
    return files


CLI_BAD = [
    ("missing", []),
    ("random_bytes", []),
    ("text", []),
    ("empty", []),
    ("other_architecture", []),
    ("pickled_module", []),
    ("truncated", []),
    ("reference", ["--width", "40"]),  # a width-20 checkpoint checked against --width 40
    (None, ["--width", "14"]),
    (None, ["--dtype", "int4"]),
    (None, ["--n-mels", "6"]),
]


@pytest.mark.parametrize("kind,args", CLI_BAD, ids=[k or a[0] + a[1] for k, a in CLI_BAD])
def test_cli_bad_input_one_line_exit_2(tmp_path, data_dir, kind, args):
    files = bad_checkpoints(tmp_path / "ckpt", data_dir)
    files["reference"] = data_dir / "reference_c20_state_dict.pt"
    target = [files[kind]] if kind else []
    r = run_cli("budget", *target, *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    named = str(files[kind]) if kind else args[1]
    assert named in lines[0]


def test_budget_without_torch_names_the_extra(no_torch):
    r = run_cli("budget", "--width", "12", env=no_torch)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "tfsep-edge[torch]" in lines[0] and "Traceback" not in r.stderr


def test_shuffle_permutation_is_channel_shuffle():
    """The exporters fold the shuffle by model.shuffle's permutation: it must be ChannelShuffle's."""
    from tfsep_edge.model.shuffle import shuffle_positions, shuffle_sources
    from tfsep_edge.model.tfsepnet import ChannelShuffle

    for channels, groups in ((8, 2), (40, 10), (60, 5), (12, 3)):
        x = torch.randn(2, channels, 3, 4)
        sources = shuffle_sources(channels, groups)
        assert torch.equal(ChannelShuffle(groups)(x), x[:, sources])
        assert [sources[p] for p in shuffle_positions(channels, groups)] == list(range(channels))
