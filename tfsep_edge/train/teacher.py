"""The teacher of knowledge distillation: a checkpoint, or precomputed logits aligned with
fold1_train.csv (a .npy with a FILE.filenames.txt beside it, or a .pt {"logits": (N, 10),
"filenames": [...]}, as `save_teacher_logits` writes)."""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tfsep_edge.core.config import NUM_CLASSES, FrontendConfig, preset_name
from tfsep_edge.core.errors import TfsepError
from tfsep_edge.core.fileio import write_bytes_atomic
from tfsep_edge.datasets.cache import SplitData, load_split
from tfsep_edge.model.checkpoint import load_checkpoint
from tfsep_edge.train.losses import softened
from tfsep_edge.train.validation import predict_logits


def load_teacher_logits(path: Path, filenames: list[str]) -> np.ndarray:
    """Precomputed teacher logits (N, 10) aligned with `filenames`; TfsepError if they are not."""
    names = None
    if path.suffix == ".npy":
        try:
            logits = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise TfsepError(f"{path}: not a readable .npy of teacher logits ({exc})") from None
        sidecar = path.with_suffix(".filenames.txt")
        if sidecar.is_file():
            names = sidecar.read_text().splitlines()
    else:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        logits, names = (obj, None) if isinstance(obj, torch.Tensor) else (obj["logits"], obj.get("filenames"))
        logits = logits.numpy() if isinstance(logits, torch.Tensor) else np.asarray(logits)
    if logits.ndim != 2 or logits.shape[1] != NUM_CLASSES:
        raise TfsepError(f"{path}: teacher logits of shape {logits.shape}; expected (N, {NUM_CLASSES})")
    if names is not None and len(names) != len(filenames) and set(filenames) <= set(names):
        row_of = {n: i for i, n in enumerate(names)}  # full-split logits, training on a subset of it
        logits, names = logits[[row_of[n] for n in filenames]], list(filenames)
    if len(logits) != len(filenames):
        raise TfsepError(
            f"{path}: {len(logits)} teacher logit rows for {len(filenames)} training files; "
            "recompute them for this data set's fold1_train.csv"
        )
    if names is not None:
        bad = next((i for i, (a, b) in enumerate(zip(names, filenames, strict=False)) if a != b), None)
        if len(names) != len(filenames) or bad is not None:
            where = f"row {bad}: {names[bad]} vs {filenames[bad]}" if bad is not None else "different lengths"
            raise TfsepError(
                f"{path}: teacher logits are not in fold1_train.csv order ({where}); recompute them for this split"
            )
    elif path.suffix == ".npy":
        print(
            f"note: {path}: no {path.with_suffix('.filenames.txt').name}; only the row count was checked",
            file=sys.stderr,
        )
    if not np.isfinite(logits).all():
        raise TfsepError(f"{path}: teacher logits contain NaN or infinity")
    return logits.astype(np.float32)


def is_logits_file(path: Path) -> bool:
    """A .npy, or a .pt holding a (N, 10) tensor or a dict with 'logits' (not a checkpoint)."""
    if path.suffix == ".npy":
        return True
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return False
    return isinstance(obj, torch.Tensor) or (isinstance(obj, dict) and "logits" in obj)


def save_teacher_logits(
    checkpoint: str | Path, data: str | Path, out: str | Path, cache_dir: str | None = None
) -> Path:
    """Precompute a teacher's logits on the train split, in fold1_train.csv order, as a .pt file."""
    model, info = load_checkpoint(checkpoint)
    train = load_split(data, "train", cache_dir)
    logits = predict_logits(model, train, torch.device("cpu"), info["frontend"])  # on its own features
    buf = io.BytesIO()
    torch.save({"logits": torch.from_numpy(logits), "filenames": train.filenames}, buf)
    write_bytes_atomic(out, buf.getvalue())
    return Path(out)


@dataclass
class Teacher:
    """Where a batch's distillation targets come from: a model run on the same augmented batch as
    the student, or precomputed logits by training-set row (mixed with Mixup's lambda as the
    labels are; a simulated clip takes its source clip's row)."""

    temperature: float
    model: torch.nn.Module | None = None
    logits: torch.Tensor | None = None

    def probs_before_mixup(self, rows: torch.Tensor, device: torch.device) -> torch.Tensor | None:
        return None if self.logits is None else softened(self.logits[rows].to(device), self.temperature)

    @torch.no_grad()
    def probs_of_batch(self, x: torch.Tensor) -> torch.Tensor | None:
        return None if self.model is None else softened(self.model(x), self.temperature)


def open_teacher(
    path: str | None,
    temperature: float,
    train_set: SplitData,
    train_filenames: list[str],
    device: torch.device,
    frontend: FrontendConfig,
) -> Teacher | None:
    """The --teacher file as a Teacher (None without one); TfsepError if it is missing or misaligned,
    or a checkpoint trained on other features than the student's `frontend` (it runs on the
    student's augmented log-mel batch)."""
    if not path:
        return None
    tpath = Path(path)
    if not tpath.is_file():
        raise TfsepError(f"{tpath}: no such teacher checkpoint or logits file")
    if is_logits_file(tpath):
        logits = load_teacher_logits(tpath, train_filenames)
        source = train_set.source if len(train_set.source) else np.arange(len(train_filenames))
        return Teacher(temperature, logits=torch.from_numpy(logits[source]))
    model, info = load_checkpoint(tpath)
    if info["frontend"] != frontend:
        theirs, ours = (preset_name(c) or "a custom front end" for c in (info["frontend"], frontend))
        raise TfsepError(
            f"{tpath}: a teacher trained on {theirs} features, the student trains on {ours}; "
            "precompute its logits on its own features (train.teacher.save_teacher_logits) and pass that file"
        )
    return Teacher(temperature, model=model.to(device).eval())
