"""Evaluate any model kind on a TAU22 split: accuracy, log loss, per device (Table 3), per class.

One code path for every model: a `logits_fn(batch) -> (B, 10)` where batch is the numpy
log-mel (B, 1, 128, 44) from frontend.log_mel (or the 1-s waveforms, for ONNX models with the
front end inside). `load_logits_fn` builds it from a path:
  *.onnx                        -> runtime.OnnxClassifier (onnxruntime, no torch)
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


def per_device_accuracy(preds: np.ndarray, labels: np.ndarray, devices: list[str]) -> dict:
    """Accuracy per device in the report's Table 3 order, plus seen / unseen averages.

    {"devices": {"a": acc or None, ...}, "counts": {...}, "seen": mean over seen devices present,
    "unseen": mean over unseen devices present}; the averages are over devices (as Table 3),
    not over clips. Devices outside a, b, c, s1..s6 (e.g. simulated) are listed after them.
    """
    preds, labels, devices = np.asarray(preds), np.asarray(labels), np.asarray(devices)
    extra = sorted(set(devices.tolist()) - set(SEEN_DEVICES) - set(UNSEEN_DEVICES))
    accs, counts = {}, {}
    for d in (*SEEN_DEVICES, *UNSEEN_DEVICES, *extra):
        mask = devices == d
        counts[d] = int(mask.sum())
        accs[d] = float(np.mean(preds[mask] == labels[mask])) if mask.any() else None

    def mean(group) -> float | None:
        vals = [accs[d] for d in group if accs[d] is not None]
        return float(np.mean(vals)) if vals else None

    return {"devices": accs, "counts": counts, "seen": mean(SEEN_DEVICES), "unseen": mean(UNSEEN_DEVICES)}


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def metrics(logits: np.ndarray, labels: np.ndarray, devices: list[str]) -> dict:
    """Everything `evaluate` reports, from logits (N, 10), labels (N,) and devices."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    preds = logits.argmax(axis=1)
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(confusion, (labels, preds), 1)
    per_class = {
        name: (float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else None)
        for i, name in enumerate(LABELS)
    }
    dev = per_device_accuracy(preds, labels, devices)
    return {
        "clips": int(len(labels)),
        "accuracy": float(np.mean(preds == labels)),
        "log_loss": float(-np.mean(log_softmax(logits)[np.arange(len(labels)), labels])),
        "per_device": dev["devices"],
        "device_counts": dev["counts"],
        "seen_accuracy": dev["seen"],
        "unseen_accuracy": dev["unseen"],
        "per_class": per_class,
        "labels": list(LABELS),
        "confusion": confusion.tolist(),
    }


# --- models ----------------------------------------------------------------------------------------


def load_logits_fn(path: str | Path, threads: int = 1) -> ModelFn:
    """A ModelFn for an ONNX file, a quantized model or a checkpoint (detected from the path)."""
    path = Path(path)
    if not path.exists():
        raise TfsepError(f"{path}: no such model file or folder")
    if path.suffix.lower() == ".onnx":
        from tfsep_edge.runtime.classifier import OnnxClassifier

        clf = OnnxClassifier(path, threads=threads)
        desc = f"ONNX {clf.precision} C={clf.width}"
        return ModelFn(clf.run, clf.input_kind, "onnx", clf.frontend, desc)
    import torch

    torch.set_num_threads(threads)
    from tfsep_edge.quant.quantize import is_quantized_dir, load_quantized

    if is_quantized_dir(path):
        artifact = load_quantized(path)

        def quantized(x: np.ndarray) -> np.ndarray:
            return artifact(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).float().numpy()

        width = artifact.float_model.width
        return ModelFn(quantized, "logmel", "quantized", artifact.frontend, f"PyTorch INT8 C={width}")
    if path.is_dir():
        raise TfsepError(f"{path}: a folder but not a `tfsep-edge quantize` output; pass a checkpoint or .onnx file")
    from tfsep_edge.model.checkpoint import load_checkpoint

    model, info = load_checkpoint(path)

    @torch.no_grad()
    def fp32(x: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()

    return ModelFn(fp32, "logmel", "checkpoint", info["frontend"], f"FP32 checkpoint C={model.width}")


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
    # float32 cache: the figures are those of the deployed path, bit for bit (see data.py).
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
