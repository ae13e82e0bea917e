"""What every export is validated on and against, whatever its format: the validation audio,
the PyTorch references (float model, fake-quant twin, PyTorch INT8) and the export rule
(rule.py) applied to a runtime's logits."""

from __future__ import annotations

import numpy as np

from tfsep_edge.core.assets import DEMO_CALIBRATION, IMPULSE_RESPONSES
from tfsep_edge.core.config import FrontendConfig
from tfsep_edge.core.errors import TfsepError
from tfsep_edge.export import rule
from tfsep_edge.export.source import Source

N_SYNTHETIC = 12  # synthetic validation clips (on top of the bundled audio)
BUNDLED_AUDIO = {  # package data, real recordings first
    "MicIRP microphone recordings": (IMPULSE_RESPONSES, 4),
    "SYNTHETIC demo calibration clips": (DEMO_CALIBRATION, 8),
}
MAX_BUNDLED = 12


def validation_waves(cfg: FrontendConfig, bundled: int = MAX_BUNDLED, synthetic: int = N_SYNTHETIC) -> np.ndarray:
    """(N, clip_samples) float32: 1-s windows of the bundled audio plus seeded generated clips."""
    return validation_set(cfg, bundled, synthetic)[0]


def validation_set(
    cfg: FrontendConfig, bundled: int = MAX_BUNDLED, synthetic: int = N_SYNTHETIC
) -> tuple[np.ndarray, str]:
    """validation_waves and what they are, e.g. "4 MicIRP microphone recordings, 8 SYNTHETIC demo ...".

    Up to `bundled` clips of the package's audio (four MicIRP microphone recordings, then the
    demo calibration set of synthesised scenes), then `synthetic` generated clips (noise with a
    few tones, chirps and clicks at different levels), which cover levels and spectra the
    bundled audio does not.
    """
    from tfsep_edge.signal.audio import find_audio, load_audio, split_windows

    waves, origin = [], []
    for name, (folder, count) in BUNDLED_AUDIO.items():
        taken = 0
        for f in find_audio([folder]):
            if len(waves) >= bundled or taken >= count:
                break
            try:
                waves.append(split_windows(load_audio(f, cfg), cfg)[0])
            except TfsepError:
                continue
            origin.append(name)
            taken += 1
    rng = np.random.default_rng(0)
    t = np.arange(cfg.clip_samples) / cfg.sample_rate
    for i in range(synthetic):
        level = 10 ** rng.uniform(-3, -0.5)
        x = rng.standard_normal(cfg.clip_samples) * level * rng.uniform(0.05, 1)
        for _ in range(rng.integers(1, 4)):
            f0 = rng.uniform(50, 12000)
            x += level * np.sin(2 * np.pi * (f0 + rng.uniform(-1, 1) * 2000 * t) * t + rng.uniform(0, 6.3))
        if i % 3 == 0:
            x[rng.integers(0, len(x), 20)] += level * 5
        waves.append(x.astype(np.float32))
        origin.append("generated")
    counts = {name: origin.count(name) for name in dict.fromkeys(origin)}
    return np.stack(waves).astype(np.float32), ", ".join(f"{n} {name}" for name, n in counts.items())


def reference_logits(source: Source, waves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log-mel inputs, logits of the PyTorch float model) on `waves`."""
    import torch

    from tfsep_edge.signal.frontend import log_mel_torch

    with torch.no_grad():
        mels = log_mel_torch(torch.from_numpy(waves), source.frontend)
        return mels.numpy(), source.float_model(mels).numpy()


def int8_references(source: Source, mels: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """(fake-quant twin logits, its output step s_out, PyTorch INT8 logits) on log-mel `mels`."""
    import torch

    from tfsep_edge.quant.twin import output_step

    twin_model = source.artifact.fake_quant_model()
    x = torch.from_numpy(mels)
    with torch.no_grad():
        twin = twin_model(x).numpy()
    return twin, output_step(twin_model), source.artifact(x).numpy()


def check_logits(
    source: Source, mels, float_logits, single: np.ndarray, batched: np.ndarray, int8: bool, frontend: bool
) -> dict:
    """The export rule on a runtime's logits, each input alone (`single`) and in one batch: INT8
    against the fake-quant twin, FP32 against the float model (every export, every runtime)."""
    if int8:
        twin, step, pytorch_int8 = int8_references(source, mels)
        return rule.check_int8(single, twin, step, pytorch_int8) | rule.check_batch(
            single, batched, rule.int8_tolerance(step)
        )
    return rule.check_fp32(single, float_logits, frontend) | rule.check_batch(
        single, batched, rule.fp32_tolerance(float_logits, frontend)
    )


def check_float_rounding_logits(source: Source, mels, single: np.ndarray, batched: np.ndarray, exact_miss: str) -> dict:
    """An integer model's logits from a runtime that requantizes in float (onnxruntime on its Q/DQ
    graph), once the exact rule missed: rule.check_float_rounding_integer's bounds. The batch is
    held to the exact bound still: one runtime's kernels at two batch sizes."""
    twin, step, pytorch_int8 = int8_references(source, mels)
    return (
        rule.int8_figures(single, twin, step, pytorch_int8)
        | rule.check_float_rounding_integer(single, twin, step, exact_miss)
        | rule.check_batch(single, batched, rule.int8_tolerance(step))
    )
