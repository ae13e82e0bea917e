"""The recipe's parts each do what they claim: Mixup, Freq-MixStyle, device simulation, LR, KD."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tfsep_edge.signal.audio import load_audio
from tfsep_edge.train import augment
from tfsep_edge.train.loop import lr_at
from tfsep_edge.train.losses import kd_loss, soft_cross_entropy


def test_mixup_uses_the_same_lambda_for_inputs_and_labels():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 1, 8, 5)
    labels = torch.arange(16) % 10
    y = torch.nn.functional.one_hot(labels, 10).float()
    xm, ym, lam, perm = augment.mixup(x, y, 0.3, g)
    assert xm.shape == x.shape and ym.shape == y.shape
    assert not torch.all((lam == 0) | (lam == 1))  # something was actually mixed
    # Recover each row's lambda from the inputs and check the labels used the same one.
    for i in range(16):
        expected = lam[i] * x[i] + (1 - lam[i]) * x[perm[i]]
        torch.testing.assert_close(xm[i], expected)
        torch.testing.assert_close(ym[i], lam[i] * y[i] + (1 - lam[i]) * y[perm[i]])
    torch.testing.assert_close(ym.sum(1), torch.ones(16))
    # Soft cross-entropy of mixed targets == lambda-weighted CE of the two labels.
    logits = torch.randn(16, 10)
    ce = torch.nn.functional.cross_entropy
    manual = torch.stack(
        [
            lam[i] * ce(logits[i : i + 1], labels[i : i + 1])
            + (1 - lam[i]) * ce(logits[i : i + 1], labels[perm[i]][None])
            for i in range(16)
        ]
    ).mean()
    torch.testing.assert_close(soft_cross_entropy(logits, ym), manual)


def test_freq_mixstyle_keeps_shape_and_changes_per_frequency_statistics():
    g = torch.Generator().manual_seed(1)
    # Each example gets its own per-frequency offset/scale (a "device colour").
    x = torch.randn(8, 1, 128, 44) * torch.rand(8, 1, 128, 1) * 3 + torch.randn(8, 1, 128, 1) * 2
    y = augment.freq_mixstyle(x, alpha=0.3, p=1.0, generator=g)
    assert y.shape == x.shape
    mu_x, mu_y = x.mean((1, 3)), y.mean((1, 3))
    assert (mu_x - mu_y).abs().max() > 0.1  # the per-frequency means moved
    # Within each (example, frequency) the pattern over time is kept (affine per band).
    corr = torch.nn.functional.cosine_similarity(x - x.mean(3, keepdim=True), y - y.mean(3, keepdim=True), dim=3)
    assert corr.min() > 0.999
    # p = 0 leaves the batch alone.
    assert torch.equal(augment.freq_mixstyle(x, 0.3, 0.0, g), x)


def test_device_simulation_changes_the_spectrum_as_the_impulse_response_predicts(data_dir):
    ir = augment.prepare_ir(load_audio(data_dir / "micirp" / "BBCmarconi_B.wav"))
    assert abs(np.sum(ir.astype(np.float64) ** 2) - 1) < 1e-4  # unit energy
    rng = np.random.default_rng(0)
    waves = torch.from_numpy(rng.standard_normal((4, 32000)).astype(np.float32))
    is_a = torch.tensor([True, True, True, False])
    g = torch.Generator().manual_seed(0)
    out = augment.simulate_devices(waves, is_a, [torch.from_numpy(ir)], p=1.0, generator=g)
    assert torch.equal(out[3], waves[3])  # not device A: untouched
    # Welch-style averaged power ratio vs |H|^2 on the same grid, in dB.
    n = 1024
    win = np.hanning(n)

    def psd(x):
        frames = np.lib.stride_tricks.sliding_window_view(x, n)[4096::256] * win  # skip the IR's ramp-in
        return (np.abs(np.fft.rfft(frames, axis=-1)) ** 2).mean(0)

    ratio_db = np.mean([10 * np.log10(psd(out[i].numpy()) / psd(waves[i].numpy())) for i in range(3)], axis=0)
    h_db = 20 * np.log10(np.abs(np.fft.rfft(ir, 8 * n))[::8] + 1e-12)
    f = np.fft.rfftfreq(n, 1 / 32000)
    band = (f > 200) & (f < 12000) & (h_db > h_db.max() - 40)
    err = ratio_db[band] - h_db[band]
    assert np.median(np.abs(err)) < 1.5, np.median(np.abs(err))
    assert np.corrcoef(ratio_db[band], h_db[band])[0, 1] > 0.95
    assert np.ptp(h_db[band]) > 6  # the response really colours (the test would be vacuous otherwise)


def test_lr_schedule_warms_up_to_peak_at_epoch_10_and_anneals_to_zero():
    assert lr_at(0, 0.01, 10, 200) == 0
    assert lr_at(5, 0.01, 10, 200) == pytest.approx(0.005)
    assert lr_at(10, 0.01, 10, 200) == pytest.approx(0.01)
    assert lr_at(105, 0.01, 10, 200) == pytest.approx(0.005)
    assert lr_at(200, 0.01, 10, 200) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(199.99, 0.01, 10, 200) < 1e-8
    values = [lr_at(e, 0.01, 10, 200) for e in np.linspace(10, 200, 50)]
    assert all(a >= b for a, b in zip(values[:-1], values[1:], strict=True))


def test_kd_loss_is_zero_when_student_equals_teacher_and_positive_otherwise():
    logits = torch.randn(8, 10)
    t = 5.0
    teacher = torch.softmax(logits / t, dim=1)
    assert kd_loss(logits, teacher, t).abs() < 1e-6
    assert kd_loss(torch.randn(8, 10) * 5, teacher, t) > 1e-3
