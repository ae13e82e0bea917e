"""DCASE Task 1 metrics on labelled predictions: accuracy overall and per device (seen/unseen),
log loss. numpy only: evaluate and the quantize report both use them."""

from __future__ import annotations

import numpy as np

from tfsep_edge.core.config import LABELS, NUM_CLASSES, SEEN_DEVICES, UNSEEN_DEVICES


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
