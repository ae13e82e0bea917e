"""Checkpoints: the project's own format, and state_dicts saved by the reference code.

Own format (a plain dict, loadable with weights_only=True):
    {"format": "tfsep-edge/checkpoint", "version": 1,
     "model": {width, shuffle_groups, dropout, num_classes},
     "labels": [...], "frontend": {...}, "state_dict": {...}, "meta": {...}}
    "model" holds the family's config (model/families.py) with its "family"; without one, the
    checkpoint predates families and is a TF-SepNet with AdaResNorm.
Reference layouts: a bare state_dict of any family (TF-SepNet `feature.N...`, BC-ResNet and
TF-SepNet-64 `conv_layers...`/`middle_layers...`), or a dict that wraps one under `state_dict`
or `model` (prefixes such as `model.`, `net.` or Lightning's `backbone.` are stripped). The
family comes from the keys, the width from the stem's shape; the easy_dcase_task1 toolkit's
Lightning checkpoints take the rest from the run's config.yaml (model/easy_dcase_run.py).
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from tfsep_edge.core.config import LABELS, FrontendConfig
from tfsep_edge.core.errors import TfsepError, first_line
from tfsep_edge.core.fileio import atomic_path
from tfsep_edge.model.easy_dcase_run import find_run_config, merge, read_run_config, weights_config
from tfsep_edge.model.families import (
    FAMILIES,
    Family,
    build_model,
    check_family_options,
    config_from_dict,
    family_frontend,
    family_of_state,
    get_family,
    make_config,
    model_frontend,
)
from tfsep_edge.model.tfsepnet import TFSepNet

FORMAT = "tfsep-edge/checkpoint"
VERSION = 1
STEM_KEY = "feature.0.weight"


def save_checkpoint(
    model,
    path: str | Path,
    frontend: FrontendConfig | None = None,
    meta: dict | None = None,
    extra: dict | None = None,
) -> None:
    """Write the model of any family (weights + the config, with its family, to rebuild it) and the
    front end it was trained on (None: its family's) atomically."""
    frontend = frontend or family_frontend(model.config.family)
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
CHECKPOINT_FIX = (
    "pass a .pt from `tfsep-edge train`, a TF-SepNet/BC-ResNet state_dict saved with torch.save "
    "or an easy_dcase_task1 Lightning checkpoint"
)


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
    if state and any(isinstance(k, str) and k.startswith("backbone.") for k in state):
        # Lightning (easy_dcase_task1): the network is `backbone`; other modules (the spectrogram
        # extractor, a KD teacher) are not part of it.
        state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    for prefix in ("module.", "model.", "net.", "student.", "_orig_mod."):
        if state and all(isinstance(k, str) and k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _looks_like(keys: list) -> str:
    """A few keys of an unrecognised dict, for the error message."""
    shown = ", ".join(map(str, keys[:4]))
    return f"{len(keys)} keys: {shown}{', ...' if len(keys) > 4 else ''}"


def _find_state_dict(obj: dict, path: Path) -> dict:
    if isinstance(obj.get("state_dict"), dict):
        state = _strip_prefix(obj["state_dict"])
        if family_of_state(state) is not None:
            return state
        raise TfsepError(
            f"{path}: its state_dict matches no model family ({_looks_like(list(state))}); " + _family_hint()
        )
    if isinstance(obj.get("model"), dict) and family_of_state(_strip_prefix(obj["model"])):
        return _strip_prefix(obj["model"])
    state = _strip_prefix(obj)
    if family_of_state(state) is not None:
        return state
    raise TfsepError(f"{path}: no weights of a known model family ({_looks_like(list(obj))}); " + _family_hint())


def _family_hint() -> str:
    stems = ", ".join(f"{f.name} '{f.stem_key}'" for f in FAMILIES.values())
    return f"expected a tfsep-edge checkpoint or a state_dict with one of the stems {stems}"


def infer_width(state: dict, path: Path) -> int:
    stem = state.get(STEM_KEY)
    if not isinstance(stem, torch.Tensor) or stem.dim() != 4 or stem.shape[1:] != (1, 5, 5):
        raise TfsepError(f"{path}: '{STEM_KEY}' is not a 5x5 single-channel stem; not a TF-SepNet checkpoint")
    if stem.shape[0] % 2:
        raise TfsepError(f"{path}: stem has {stem.shape[0]} channels (odd); not a TF-SepNet checkpoint")
    return stem.shape[0] // 2


def infer_norm(state: dict) -> str:
    """AdaResNorm has rho/gamma/beta after the stem; ResNorm has no weights at all."""
    return "adaresnorm" if "feature.1.rho" in state else "resnorm"


def _shape(value) -> tuple | str:
    # A non-tensor where a weight belongs (an int, a nested dict) is a mismatch, not a crash.
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


def load_weights(model, state: dict, path: Path, what: str):
    """load_state_dict with every mismatch named in one line; the model in eval mode."""
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
            f"{path}: not a {what}: " + "; ".join(parts) + " (another architecture, width or a truncated checkpoint)"
        )
    model.load_state_dict(state)
    return model.eval()


def model_from_state(
    state: dict, path: Path, width: int, shuffle_groups: int | None, dropout: float = 0.2, norm: str = "adaresnorm"
) -> TFSepNet:
    try:
        model = TFSepNet(width=width, shuffle_groups=shuffle_groups, dropout=dropout, norm=norm)
    except TfsepError as exc:
        raise TfsepError(f"{path}: {exc}") from None
    what = f"TF-SepNet of width {width}" + (" with ResNorm" if norm == "resnorm" else "")
    return load_weights(model, state, path, what)


def _build(config, path: Path):
    try:
        return build_model(config)
    except TfsepError as exc:
        raise TfsepError(f"{path}: {exc}") from None


def _own_model(obj: dict, path: Path, shuffle_groups: int | None):
    """A tfsep-edge checkpoint -> (model, recorded front end dict or None, labels)."""
    cfg = obj.get("model") or {}
    state = obj.get("state_dict")
    if not isinstance(state, dict) or "width" not in cfg:
        raise TfsepError(f"{path}: tfsep-edge checkpoint without weights or model config (corrupt)")
    labels = list(obj.get("labels") or LABELS)
    if labels != list(LABELS):
        raise TfsepError(f"{path}: trained for labels {labels[:3]}..., not the ten TAU22 scenes in DCASE order")
    frontend = obj.get("frontend") or None
    family = get_family(cfg.get("family") or "tfsepnet")
    if family.name != "tfsepnet":
        if shuffle_groups:
            raise TfsepError(f"{path}: a {family.name} has no shuffle-group choice; drop --shuffle-groups")
        config = config_from_dict(cfg)
        model = load_weights(_build(config, path), state, path, f"{family.name} of width {config.width}")
        return model, frontend, labels
    stored = int(cfg.get("shuffle_groups") or 0) or None
    if shuffle_groups and stored and int(shuffle_groups) != stored:
        # The own format records the groups it was trained with; another value is another network.
        raise TfsepError(
            f"{path}: was trained with {stored} shuffle groups, not {shuffle_groups}; drop --shuffle-groups"
        )
    groups = int(shuffle_groups or 0) or stored
    norm = cfg.get("norm") or "adaresnorm"
    model = model_from_state(state, path, int(cfg["width"]), groups, float(cfg.get("dropout", 0.2)), norm)
    return model, frontend, labels


def _reference_model(obj: dict, path: Path, shuffle_groups: int | None, options: dict):
    """A state_dict of the 2023 reference code or of easy_dcase_task1 -> (model, the front end its
    run's config.yaml records or None)."""
    state = _find_state_dict(obj, path)
    family = family_of_state(state)
    asked = options.get("model")
    if asked is not None and get_family(asked).name != family.name:
        raise TfsepError(f"{path}: holds a {family.name} ({family.title}), not --model {asked}; drop --model")
    if family.name != "tfsepnet":
        if shuffle_groups:
            raise TfsepError(f"{path}: a {family.name} has no shuffle-group choice; drop --shuffle-groups")
        return _easy_model(state, path, family, options)
    norm = infer_norm(state)
    if options.get("norm") not in (None, norm):
        raise TfsepError(f"{path}: holds a TF-SepNet with {norm}, not --norm {options['norm']}; drop --norm")
    if options.get("depth") is not None:
        raise TfsepError(f"--depth {options['depth']}: tfsepnet has no depth choice; drop --depth")
    return model_from_state(state, path, infer_width(state, path), shuffle_groups, 0.2, norm), None


def _easy_model(state: dict, path: Path, family: Family, options: dict):
    """BC-ResNet / TF-SepNet-64 weights + (config.yaml beside or above, or the options) -> (model,
    the front end config.yaml records or None)."""
    check_family_options(family, options.get("norm"), options.get("depth"))
    given = {k: options[k] for k in ("width", "depth") if options.get(k) is not None}
    source = "--width/--depth"
    frontend = None
    run_config = find_run_config(path)
    if run_config is not None:
        run = read_run_config(run_config)
        if run["family"] != family.name:
            raise TfsepError(
                f"{run_config}: describes a {run['family']}, but {path} holds a {family.name}; "
                "move the checkpoint out of that run folder or pick its own"
            )
        given = merge(run_config, run["args"], given, "--width/--depth")
        frontend = run["frontend"]
        source = f"{run_config.name} (+ options)"
    values = merge(path, weights_config(family, state, path), given, source)
    config = make_config(family.name, **values)
    model = load_weights(_build(config, path), state, path, f"{family.name} of width {config.width}")
    return model, frontend


def load_checkpoint(
    path: str | Path,
    shuffle_groups: int | None = None,
    expected_width: int | None = None,
    model: str | None = None,
    norm: str | None = None,
    depth: int | None = None,
) -> tuple:
    """Load any supported checkpoint -> (model in eval mode, info dict).

    `shuffle_groups` matters only for reference TF-SepNet state_dicts (the shuffle has no weights,
    so it cannot be inferred); default width // 4 as in the report. `model`/`norm`/`depth` (the
    --model/--norm/--depth options) must agree with what the checkpoint holds; for an
    easy_dcase_task1 checkpoint they stand in for a missing config.yaml. info holds `format`,
    `family`, `frontend` (the FrontendConfig its features come from: families.model_frontend),
    `labels`, `meta`, and the raw payload under `payload`. A recorded front end that does not give
    the family's input shape is a TfsepError naming the file.
    """
    path = Path(path)
    if model is not None:
        get_family(model)  # an unknown --model is an error whatever the file holds
    obj = read_checkpoint(path)
    if obj.get("format") == FORMAT:
        net, frontend, labels = _own_model(obj, path, shuffle_groups)
        _check_options(net, path, model, norm, depth)
        kind = "tfsep-edge"
    else:
        options = {"model": model, "norm": norm, "depth": depth, "width": expected_width}
        net, frontend = _reference_model(obj, path, shuffle_groups, options)
        labels, kind = list(LABELS), "reference"
    if expected_width is not None and net.config.width != expected_width:
        raise TfsepError(
            f"{path}: holds a width-{net.config.width} {net.config.family}, not width {expected_width}; "
            "drop --width or pick the matching checkpoint"
        )
    info = {
        "format": kind,
        "family": net.config.family,
        "frontend": model_frontend(net.config.family, frontend, path),
        "labels": labels,
        "meta": obj.get("meta", {}),
        "payload": obj,
    }
    return net, info


def _check_options(net, path: Path, model: str | None, norm: str | None, depth: int | None) -> None:
    """A tfsep-edge checkpoint records its family: options may only repeat it."""
    family = get_family(net.config.family)
    if model is not None and model != family.name:
        raise TfsepError(f"{path}: holds a {family.name}, not --model {model}; drop --model")
    stored = {"norm": getattr(net.config, "norm", None), "depth": getattr(net.config, "depth", None)}
    for key, value in (("norm", norm), ("depth", depth)):
        if value is not None and stored[key] is None:
            raise TfsepError(f"--{key} {value}: {family.name} has no {key} choice; drop --{key}")
        if value is not None and value != stored[key]:
            raise TfsepError(
                f"{path}: holds a {family.name} with {key} {stored[key]}, not --{key} {value}; drop --{key}"
            )


def load_model(path: str | Path, shuffle_groups: int | None = None, **options):
    """Any supported checkpoint -> its model (TFSepNet, BCResNet or TFSepNetV2) in eval mode.
    options: model=, norm=, depth=, as the command-line options."""
    return load_checkpoint(path, shuffle_groups=shuffle_groups, **options)[0]
