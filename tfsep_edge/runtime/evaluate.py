"""Evaluate any model kind on a TAU22 split: accuracy, log loss, per device (Table 3), per class.

One code path for every model: a `logits_fn(batch) -> (B, 10)` where batch is the numpy
log-mel (B, 1, 128, 44) from frontend.log_mel (or the 1-s waveforms, for ONNX models with the
front end inside). `load_logits_fn` builds it from a path:
  *.onnx                        -> runtime.OnnxClassifier (onnxruntime, no torch)
  *.tflite                      -> tflite_runtime.TfliteClassifier (LiteRT + XNNPACK, no torch)
  a `tfsep-edge quantize` output -> quantize.load_quantized (PyTorch INT8)
  anything else                 -> checkpoint.load_checkpoint (FP32 TF-SepNet)
so FP32 and INT8 numbers come from the same features, batches and metrics.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfsep_edge.core.config import DEFAULT_FRONTEND, LABELS, NUM_CLASSES, SEEN_DEVICES, UNSEEN_DEVICES, FrontendConfig
from tfsep_edge.core.errors import TfsepError
from tfsep_edge.core.fileio import atomic_path, write_text_atomic
from tfsep_edge.core.kinds import Kind, artifact_kind
from tfsep_edge.datasets.metrics import metrics
from tfsep_edge.runtime.torch_models import load_torch_model
from tfsep_edge.signal.frontend import log_mel

LogitsFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class ModelFn:
    logits_fn: LogitsFn
    input_kind: str  # "logmel" (B, 1, n_mels, frames) or "waveform" (B, samples)
    kind: str  # checkpoint | quantized | onnx
    frontend: FrontendConfig = DEFAULT_FRONTEND
    description: str = ""


# --- metrics (numpy only; the quantize helper reuses per_device_accuracy) ----------------------


# --- models ----------------------------------------------------------------------------------------


def load_logits_fn(path: str | Path, threads: int = 1) -> ModelFn:
    """A ModelFn for an ONNX file, a quantized model or a checkpoint (detected from the path)."""
    path = Path(path)
    kind = artifact_kind(path)
    if kind in (Kind.ONNX, Kind.TFLITE):
        from tfsep_edge.runtime.classifier import open_classifier

        clf = open_classifier(path, threads=threads)
        desc = f"{'TFLite' if kind is Kind.TFLITE else 'ONNX'} {clf.precision} C={clf.width}"
        return ModelFn(clf.run, clf.input_kind, kind.value, clf.frontend, desc)
    tm = load_torch_model(path, kind, threads)
    desc = f"{'PyTorch INT8' if tm.precision == 'int8' else 'FP32 checkpoint'} C={tm.float_model.width}"
    return ModelFn(tm.logits, "logmel", kind.value, tm.frontend, desc)


def split_logits(model: ModelFn, split, batch: int = 64, progress: bool = True) -> np.ndarray:
    """(N, 10) logits of a data.SplitData through the model's own input (log-mel or waveform)."""
    from tfsep_edge.core.progress import progress_bar

    out = []
    with progress_bar(len(split), "evaluating", "clip", progress) as bar:
        for i in range(0, len(split), batch):
            waves = split.waves.get(np.arange(i, min(i + batch, len(split))))
            x = log_mel(waves, model.frontend)[:, None] if model.input_kind == "logmel" else waves
            logits = np.asarray(model.logits_fn(x))
            if logits.shape != (len(waves), NUM_CLASSES) or not np.isfinite(logits).all():
                raise TfsepError(
                    f"model returned logits of shape {logits.shape} (or non-finite) for a batch of {len(waves)}"
                )
            out.append(logits)
            bar.update(len(waves))
    return np.concatenate(out)


def evaluate(
    model: str | Path | ModelFn,
    data: str | Path,
    split: str = "evaluate",
    batch: int = 64,
    threads: int = 1,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Evaluate MODEL (path or ModelFn) on a labelled split of DATA -> the metrics dict."""
    from tfsep_edge.datasets.cache import is_synthetic, load_split

    if split == "test":
        raise TfsepError("split 'test' has no labels in the TAU22 layout; evaluate on 'evaluate' (or 'train')")
    fn = model if isinstance(model, ModelFn) else load_logits_fn(model, threads)
    # float32 cache: the figures are those of the deployed path, bit for bit (see docs/data.md).
    data_split = load_split(data, split, cache_dir, fn.frontend, progress=progress, dtype="float32")
    logits = split_logits(fn, data_split, batch, progress)
    result = metrics(logits, data_split.labels, data_split.devices)
    result.update(
        model=str(model) if not isinstance(model, ModelFn) else fn.description,
        model_kind=fn.kind,
        model_description=fn.description,
        data=str(data),
        split=split,
        synthetic_data=is_synthetic(data),
    )
    return result


# --- output ------------------------------------------------------------------------------------------


def _pct(v: float | None) -> str:
    return "  -  " if v is None else f"{100 * v:5.1f}"


def format_report(r: dict) -> str:
    tag = "SYNTHETIC data: " if r.get("synthetic_data") else ""
    lines = [
        f"{tag}{r['model_description']} on {r['data']} [{r['split']}], {r['clips']} clips",
        f"accuracy {100 * r['accuracy']:.1f}%   log loss {r['log_loss']:.3f}",
        "",
        "         "
        + " ".join(f"{d.upper():>5}" for d in SEEN_DEVICES)
        + " | "
        + " ".join(f"{d.upper():>5}" for d in UNSEEN_DEVICES)
        + " |  seen unseen",
        "acc %    "
        + " ".join(_pct(r["per_device"][d]) for d in SEEN_DEVICES)
        + " | "
        + " ".join(_pct(r["per_device"][d]) for d in UNSEEN_DEVICES)
        + f" | {_pct(r['seen_accuracy'])} {_pct(r['unseen_accuracy'])}",
        "clips    "
        + " ".join(f"{r['device_counts'][d]:5d}" for d in SEEN_DEVICES)
        + " | "
        + " ".join(f"{r['device_counts'][d]:5d}" for d in UNSEEN_DEVICES),
        "",
        "per class: " + ", ".join(f"{k} {_pct(v).strip()}" for k, v in r["per_class"].items()),
        "",
        "confusion (rows true, columns predicted, DCASE order):",
    ]
    for name, row in zip(LABELS, r["confusion"], strict=True):
        lines.append(f"  {name:>17} " + " ".join(f"{v:4d}" for v in row))
    return "\n".join(lines)


def write_json(r: dict, path: str | Path) -> None:
    write_text_atomic(path, json.dumps(r, indent=2) + "\n")


def plot(r: dict, path: str | Path) -> None:
    """Confusion matrix and per-device bars in one PNG (titled SYNTHETIC when it is)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(r["confusion"], dtype=float)
    cm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5.5), gridspec_kw={"width_ratios": [1.1, 1]})
    im = ax1.imshow(cm, cmap="Blues", vmin=0, vmax=1)
    ax1.set_xticks(range(NUM_CLASSES), LABELS, rotation=60, ha="right", fontsize=8)
    ax1.set_yticks(range(NUM_CLASSES), LABELS, fontsize=8)
    ax1.set_xlabel("predicted")
    ax1.set_ylabel("true")
    ax1.set_title("confusion (row-normalised)")
    fig.colorbar(im, ax=ax1, fraction=0.046)
    devs = [*SEEN_DEVICES, *UNSEEN_DEVICES]
    vals = [100 * (r["per_device"][d] or 0) for d in devs]
    colours = ["tab:blue"] * len(SEEN_DEVICES) + ["tab:orange"] * len(UNSEEN_DEVICES)
    ax2.bar([d.upper() for d in devs], vals, color=colours)
    ax2.axhline(100 * r["accuracy"], color="k", lw=1, ls="--", label=f"overall {100 * r['accuracy']:.1f}%")
    ax2.set_ylim(0, 100)
    ax2.set_ylabel("accuracy %")
    ax2.set_title("per device (blue seen, orange unseen)")
    ax2.legend(loc="lower right")
    tag = "SYNTHETIC DATA - " if r.get("synthetic_data") else ""
    fig.suptitle(f"{tag}{r['model_description']} [{r['split']}], {r['clips']} clips")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
