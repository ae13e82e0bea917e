"""Make the models a latency benchmark (or the aarch64 check) needs, with the project's own tools.

Untrained TF-SepNets with randomised BatchNorm and AdaResNorm statistics
(tfsep_edge.model.tfsepnet.random_model): latency does not depend on the weights, and random weights
give every op real (non-degenerate) work. INT8 models come from
`tfsep_edge.quant.quantize` (PyTorch eager INT8, calibrated on noise log-mels) and ONNX files from
`tfsep_edge.export` (FP32 and INT8 QDQ, validated against PyTorch as every export is). A
producer that is missing or fails is reported as a note and its variant is skipped.
"""

from __future__ import annotations

import dataclasses
import traceback
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ModelSet:
    width: int
    checkpoint: Path | None = None
    quantized: Path | None = None  # folder with model_int8.pt
    onnx_fp32: Path | None = None
    onnx_int8: Path | None = None
    onnx_waveform: Path | None = None  # FP32 with the log-mel front end inside the graph
    notes: list[str] = field(default_factory=list)


def noise_logmels(n: int, seed: int = 0):
    """Calibration input: log-mels of coloured noise through the one front end (log_mel_torch)."""
    import numpy as np
    import torch

    from tfsep_edge.signal.frontend import log_mel_torch

    rng = np.random.default_rng(seed)
    white = rng.standard_normal((n, 32_000)).astype(np.float32)
    gains = rng.uniform(0.01, 0.3, size=(n, 1)).astype(np.float32)
    coloured = np.cumsum(white, axis=1) * 0.02 + white  # some low-frequency energy, like scenes
    waves = torch.from_numpy((gains * coloured / np.abs(coloured).max(axis=1, keepdims=True)).astype(np.float32))
    with torch.no_grad():
        return log_mel_torch(waves)


def make_checkpoint(width: int, out: Path, seed: int = 0) -> Path:
    from tfsep_edge.model.checkpoint import save_checkpoint
    from tfsep_edge.model.tfsepnet import random_model

    save_checkpoint(
        random_model(width, seed),
        out,
        meta={"note": "untrained, randomised BN and AdaResNorm statistics (latency only)"},
    )
    return out


def make_quantized(
    checkpoint: Path, folder: Path, calib_clips: int = 64, integer: bool = False, int16_norms: str = "first"
) -> Path:

    from tfsep_edge.model.checkpoint import load_model
    from tfsep_edge.quant.artifact import is_quantized_dir, save_quantized
    from tfsep_edge.quant.calibrate import INTEGER, QuantOptions
    from tfsep_edge.quant.engine import default_engine
    from tfsep_edge.quant.quantize import quantize_model

    model = load_model(checkpoint)
    batches = list(noise_logmels(calib_clips).split(16))
    options = dataclasses.replace(INTEGER if integer else QuantOptions(), engine=default_engine())
    if integer:
        options = dataclasses.replace(options, int16_norms=int16_norms)
    artifact, _ = quantize_model(model, batches, options)
    if folder.exists() and not is_quantized_dir(folder):
        folder.rmdir()  # an empty leftover; save_quantized refuses any non-quantize folder
    save_quantized(artifact, folder)
    return folder


def make_onnx(source: Path, out: Path, int8: bool = False, frontend: bool = False) -> Path:
    from tfsep_edge.export.onnx_export import export

    export(source, out, int8=int8, frontend=frontend, timing=False, echo=lambda _text: None)
    return out


def _try(models: ModelSet, what: str, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except ImportError as exc:
        models.notes.append(f"C={models.width} {what}: skipped, producer not available ({exc})")
    except Exception as exc:  # a producer's failure skips its variant; the rest still runs
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        models.notes.append(f"C={models.width} {what}: skipped, {last[:300]}")
    return None


def make_models(width: int, folder: Path, int8: bool = True, seed: int = 0, waveform: bool = False) -> ModelSet:
    """Checkpoint, PyTorch INT8 folder, ONNX FP32 and ONNX INT8 (and, if asked, the FP32 ONNX
    taking waveforms) of one width, into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    models = ModelSet(width)
    models.checkpoint = _try(models, "checkpoint", make_checkpoint, width, folder / f"tfsep{width}.pt", seed)
    if models.checkpoint is None:
        return models
    models.onnx_fp32 = _try(models, "ONNX FP32", make_onnx, models.checkpoint, folder / f"tfsep{width}_fp32.onnx")
    if waveform:
        out = folder / f"tfsep{width}_fp32_waveform.onnx"
        models.onnx_waveform = _try(models, "ONNX FP32 waveform", make_onnx, models.checkpoint, out, frontend=True)
    if int8:
        qdir = folder / f"tfsep{width}_int8"
        models.quantized = _try(models, "PyTorch INT8", make_quantized, models.checkpoint, qdir)
        if models.quantized is not None:
            out = folder / f"tfsep{width}_int8.onnx"
            models.onnx_int8 = _try(models, "ONNX INT8", make_onnx, models.quantized, out, int8=True)
    return models
