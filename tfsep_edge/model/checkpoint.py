"""Checkpoints: the project's own format, and state_dicts saved by the reference code.

Own format (a plain dict, loadable with weights_only=True):
    {"format": "tfsep-edge/checkpoint", "version": 1,
     "model": {width, shuffle_groups, dropout, num_classes},
     "labels": [...], "frontend": {...}, "state_dict": {...}, "meta": {...}}
Reference layout: a bare state_dict with keys `feature.N...`/`classifier...`, or a dict that
wraps one under `state_dict` or `model` (Lightning-style prefixes such as `model.` or
`net.` are stripped). The width is inferred from the stem's weight shape.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from tfsep_edge.core.config import DEFAULT_FRONTEND, LABELS, FrontendConfig
from tfsep_edge.core.errors import TfsepError, first_line
from tfsep_edge.core.fileio import atomic_path
from tfsep_edge.model.tfsepnet import TFSepNet

FORMAT = "tfsep-edge/checkpoint"
VERSION = 1
STEM_KEY = "feature.0.weight"


def save_checkpoint(
    model: TFSepNet,
    path: str | Path,
    frontend: FrontendConfig = DEFAULT_FRONTEND,
    meta: dict | None = None,
    extra: dict | None = None,
) -> None:
    """Write the model (weights + the config to rebuild it) atomically."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model": model.config.to_dict(),
        "labels": list(LABELS),
        "frontend": frontend.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "meta": meta or {},
    }
    if extra:
        payload.update(extra)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


# What a user should pass instead, appended to every "not a checkpoint" message.
CHECKPOINT_FIX = "pass a .pt from `tfsep-edge train` or a TF-SepNet state_dict saved with torch.save"


def read_checkpoint(path: str | Path) -> dict:
    """torch.load with weights_only=True, turning every failure into one clear TfsepError."""
    path = Path(path)
    if path.is_dir():
        raise TfsepError(f"{path}: is a folder, not a checkpoint file; {CHECKPOINT_FIX}")
    if not path.is_file():
        raise TfsepError(f"{path}: no such checkpoint file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, RuntimeError, ValueError) as exc:
        first = first_line(exc)
        # Only "Unsupported global" means real pickled objects; torch prefixes every weights-only
        # unpickling failure (random bytes too) with "Weights only load failed".
        if "Unsupported global" in str(exc):
            raise TfsepError(
                f"{path}: holds pickled Python objects that tfsep-edge will not unpickle; "
                "save a plain state_dict (torch.save(model.state_dict(), path))"
            ) from None
        if "Weights only load failed" in first or isinstance(exc, pickle.UnpicklingError):
            first = "no pickled tensor data"
        first = first.split(". ")[0]  # torch appends advice meant for its own developers
        raise TfsepError(
            f"{path}: not a readable PyTorch checkpoint (truncated or another format: {first[:120]}); {CHECKPOINT_FIX}"
        ) from None
    except Exception as exc:  # anything else torch.load raises on garbage
        raise TfsepError(f"{path}: not a PyTorch checkpoint ({type(exc).__name__}); {CHECKPOINT_FIX}") from None
    if not isinstance(obj, dict):
        raise TfsepError(f"{path}: holds a {type(obj).__name__}, not a state_dict or checkpoint dict; {CHECKPOINT_FIX}")
    return obj


def _strip_prefix(state: dict) -> dict:
    for prefix in ("module.", "model.", "net.", "student.", "_orig_mod."):
        if state and all(isinstance(k, str) and k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _find_state_dict(obj: dict, path: Path) -> dict:
    if isinstance(obj.get("state_dict"), dict):
        return _strip_prefix(obj["state_dict"])
    if isinstance(obj.get("model"), dict) and STEM_KEY in _strip_prefix(obj["model"]):
        return _strip_prefix(obj["model"])
    state = _strip_prefix(obj)
    if STEM_KEY in state:
        return state
    keys = ", ".join(list(map(str, obj))[:4])
    raise TfsepError(
        f"{path}: no TF-SepNet weights found (keys: {keys}...); expected a tfsep-edge checkpoint "
        f"or a reference-code state_dict with '{STEM_KEY}'"
    )


def infer_width(state: dict, path: Path) -> int:
    stem = state.get(STEM_KEY)
    if not isinstance(stem, torch.Tensor) or stem.dim() != 4 or stem.shape[1:] != (1, 5, 5):
        raise TfsepError(f"{path}: '{STEM_KEY}' is not a 5x5 single-channel stem; not a TF-SepNet checkpoint")
    if stem.shape[0] % 2:
        raise TfsepError(f"{path}: stem has {stem.shape[0]} channels (odd); not a TF-SepNet checkpoint")
    return stem.shape[0] // 2


def _shape(value) -> tuple | str:
    # A non-tensor where a weight belongs (an int, a nested dict) is a mismatch, not a crash.
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


def model_from_state(state: dict, path: Path, width: int, shuffle_groups: int | None, dropout: float = 0.2) -> TFSepNet:
    try:
        model = TFSepNet(width=width, shuffle_groups=shuffle_groups, dropout=dropout)
    except TfsepError as exc:
        raise TfsepError(f"{path}: {exc}") from None
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and _shape(state[k]) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} shape mismatches (e.g. {k}: {_shape(state[k])} vs {tuple(expected[k].shape)})")
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        raise TfsepError(
            f"{path}: not a TF-SepNet of width {width}: "
            + "; ".join(parts)
            + " (another architecture, width or a truncated checkpoint)"
        )
    model.load_state_dict(state)
    return model.eval()


def load_checkpoint(
    path: str | Path, shuffle_groups: int | None = None, expected_width: int | None = None
) -> tuple[TFSepNet, dict]:
    """Load any supported checkpoint -> (model in eval mode, info dict).

    `shuffle_groups` matters only for reference state_dicts (the shuffle has no weights, so it
    cannot be inferred); default width // 4 as in the report. info holds `format`, `frontend`
    (FrontendConfig), `labels`, `meta`, and the raw payload under `payload`.
    """
    path = Path(path)
    obj = read_checkpoint(path)
    if obj.get("format") == FORMAT:
        cfg = obj.get("model") or {}
        state = obj.get("state_dict")
        if not isinstance(state, dict) or "width" not in cfg:
            raise TfsepError(f"{path}: tfsep-edge checkpoint without weights or model config (corrupt)")
        labels = list(obj.get("labels") or LABELS)
        if labels != list(LABELS):
            raise TfsepError(f"{path}: trained for labels {labels[:3]}..., not the ten TAU22 scenes in DCASE order")
        stored = int(cfg.get("shuffle_groups") or 0) or None
        if shuffle_groups and stored and int(shuffle_groups) != stored:
            # The own format records the groups it was trained with; another value is another network.
            raise TfsepError(
                f"{path}: was trained with {stored} shuffle groups, not {shuffle_groups}; drop --shuffle-groups"
            )
        width, groups = int(cfg["width"]), int(shuffle_groups or 0) or stored
        dropout = float(cfg.get("dropout", 0.2))
        frontend = FrontendConfig.from_dict(obj.get("frontend") or {})
        kind = "tfsep-edge"
    else:
        state = _find_state_dict(obj, path)
        width, groups, dropout = infer_width(state, path), shuffle_groups, 0.2
        frontend, labels, kind = DEFAULT_FRONTEND, list(LABELS), "reference"
    if expected_width is not None and width != expected_width:
        raise TfsepError(
            f"{path}: holds a width-{width} TF-SepNet, not width {expected_width}; "
            "drop --width or pick the matching checkpoint"
        )
    model = model_from_state(state, path, width, groups, dropout)
    info = {"format": kind, "frontend": frontend, "labels": labels, "meta": obj.get("meta", {}), "payload": obj}
    return model, info


def load_model(path: str | Path, shuffle_groups: int | None = None) -> TFSepNet:
    """Any supported checkpoint -> TFSepNet in eval mode."""
    return load_checkpoint(path, shuffle_groups=shuffle_groups)[0]
