"""What an exported model takes and is, as its metadata (or, failing that, its graph) says, and
the interface every runtime's classifier shares (runtime/classifier.py, tflite_classifier.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfsep_edge.core import config
from tfsep_edge.core.config import LABELS, FrontendConfig
from tfsep_edge.core.errors import TfsepError
from tfsep_edge.core.rounding import quantize_affine
from tfsep_edge.signal.audio import load_audio, split_windows
from tfsep_edge.signal.frontend import log_mel


@dataclass
class ModelInfo:
    """What the metadata (or, failing that, the graph) says about a model."""

    input_kind: str
    labels: tuple[str, ...]
    frontend: FrontendConfig
    precision: str
    width: int | None
    budget: dict
    fixed_batch: int | None  # a static batch size baked into the graph (None: dynamic)


def labels_budget_width(path: Path, meta: dict[str, str]) -> tuple[tuple[str, ...], dict, str | None]:
    """The labels (which must be the ten TAU22 scenes in DCASE order; absent: those), the budget
    figures ({} if absent or unreadable) and the width string of an exported model's metadata."""
    try:
        labels = tuple(json.loads(meta[config.META_LABELS]))
    except (KeyError, ValueError, TypeError):
        labels = LABELS
    if labels != LABELS:
        raise TfsepError(f"{path}: labels {list(labels)[:3]}... are not the ten TAU22 scenes in DCASE order")
    try:
        budget = json.loads(meta.get(config.META_BUDGET, "{}"))
    except ValueError:
        budget = {}
    return labels, budget, meta.get(config.META_WIDTH)


def quantize_int8(x: np.ndarray, point: tuple[float, int]) -> np.ndarray:
    """Float log-mels to an int8 input tensor at (scale, zero point), as the float-input file's
    QUANTIZE in TFLite's reference kernels and TFLite Micro (core/rounding.py: ties away from zero)."""
    return quantize_affine(x, point, np.int8)


def dequantize_int8(q: np.ndarray, point: tuple[float, int]) -> np.ndarray:
    s, z = point
    return (q.astype(np.float32) - z) * np.float32(s)


def io_points(meta: dict[str, str], path: Path) -> tuple[tuple[float, int], tuple[float, int]] | None:
    """The int8 input's and output's (scale, zero point) of an --io int8 file (META_IO), or None."""
    if config.META_IO not in meta:
        return None
    try:
        io = json.loads(meta[config.META_IO])
        return tuple((float(io[k]["scale"]), int(io[k]["zero_point"])) for k in ("input", "output"))
    except (ValueError, KeyError, TypeError):
        raise TfsepError(f"{path}: its int8 input/output metadata cannot be read; export it again") from None


def session_logits(session, path: Path):
    """x (float log-mels or waveforms) -> float logits of an onnxruntime `session` of `path`:
    through its int8 input and output where the file has them (--io int8, META_IO)."""
    name_in, name_out = session.get_inputs()[0].name, session.get_outputs()[0].name
    points = io_points(dict(session.get_modelmeta().custom_metadata_map or {}), path)
    if points is None:
        return lambda x: session.run([name_out], {name_in: x})[0]
    (q_in, q_out) = points
    return lambda x: dequantize_int8(session.run([name_out], {name_in: quantize_int8(x, q_in)})[0], q_out)


class Classifier:
    """What predict, listen, bench and evaluate call, whatever the runtime. A subclass sets `path`
    and `info` and runs one batch in `_infer` (the model's own input -> (B, 10) logits)."""

    path: Path
    info: ModelInfo

    def _infer(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @property
    def input_kind(self) -> str:
        return self.info.input_kind

    @property
    def labels(self) -> tuple[str, ...]:
        return self.info.labels

    @property
    def frontend(self) -> FrontendConfig:
        return self.info.frontend

    @property
    def precision(self) -> str:
        return self.info.precision

    @property
    def width(self) -> int | None:
        return self.info.width

    def run(self, x: np.ndarray) -> np.ndarray:
        """Feed the model's own input as is -> (B, 10) logits. A model with a baked-in batch size
        (some exporters do that) is fed that many rows at a time."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        step = self.info.fixed_batch
        if step is None or len(x) == step:
            return self._infer(x)
        if len(x) % step:
            raise TfsepError(f"{self.path}: takes batches of exactly {step}; got {len(x)} (use --batch {step})")
        return np.concatenate([self._infer(x[i : i + step]) for i in range(0, len(x), step)])

    def logits_from_logmel(self, x: np.ndarray) -> np.ndarray:
        """(B, 1, n_mels, frames) log-mel -> (B, 10) logits."""
        if self.input_kind != "logmel":
            raise TfsepError(f"{self.path}: takes waveforms (front end inside the model), not log-mels")
        return self.run(x)

    def model_input(self, windows: np.ndarray) -> np.ndarray:
        """What `run` takes for (B, clip_samples) windows: the waveform itself or its numpy log-mel."""
        windows = np.asarray(windows, dtype=np.float32)
        if self.input_kind == "waveform":
            return windows
        return np.ascontiguousarray(log_mel(windows, self.frontend)[:, None])  # runtimes take contiguous input

    def logits_from_waveforms(self, windows: np.ndarray) -> np.ndarray:
        """(B, clip_samples) waveforms at the front end's rate -> (B, 10) logits."""
        return self.run(self.model_input(windows))

    def predict_file(self, path: str | Path) -> np.ndarray:
        """(10,) logits of one audio file: the mean of its 1-s window logits."""
        windows = split_windows(load_audio(path, self.frontend), self.frontend)
        return self.logits_from_waveforms(windows).mean(axis=0)
