"""What a run of the authors' later toolkit (yqcai888/easy_dcase_task1) leaves, read into a family
config: its Lightning checkpoint holds only weights (`state_dict` keys `backbone.<key>`), and its
LightningCLI keeps the constructor arguments in the run's `config.yaml`, beside the checkpoint
or one folder above `checkpoints/` (`log/NAME/version_N/{config.yaml,checkpoints/*.ckpt}`).

The weights give the base channels (the stem's shape) and BC-ResNet's sub-bands (SubSpectralNorm's
BatchNorm size); TF-SepNet-64's depth shows only in the key indices (depth 17 has a max-pool more
in `middle_layers`, so the last stage's blocks sit one index later): it is read from them and
checked against config.yaml or --depth where given.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from tfsep_edge.core.config import FrontendConfig, frontend_preset
from tfsep_edge.core.errors import TfsepError
from tfsep_edge.model.families import FAMILIES, Family

RUN_CONFIG = "config.yaml"
# Backbone classes of the toolkit's `backbones` module -> our family names.
BACKBONES = {"BCResNet": "bcresnet", "TFSepNet": "tfsepnet-v2"}
# Constructor arguments of those classes -> our config fields.
ARGUMENTS = {
    "base_channels": "width",
    "depth": "depth",
    "kernel_size": "kernel_size",
    "dropout": "dropout",
    "sub_bands": "sub_bands",
    "num_classes": "num_classes",
}


def find_run_config(checkpoint: Path) -> Path | None:
    """config.yaml beside the checkpoint, or in the run folder above its `checkpoints/`."""
    checkpoint = Path(checkpoint)
    for folder in (checkpoint.parent, checkpoint.parent.parent):
        if (folder / RUN_CONFIG).is_file():
            return folder / RUN_CONFIG
    return None


# Spectrogram extractors of the toolkit's `util` module -> our presets (core.config.FRONTENDS).
EXTRACTORS = {"CpMel": "cpmel"}


def read_run_config(path: Path) -> dict:
    """config.yaml -> {"family": name, "args": {our field: value}, "frontend": FrontendConfig | None}."""
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text())
        backbone = doc["model"]["init_args"]["backbone"]
        class_path = str(backbone["class_path"])
        init_args = dict(backbone.get("init_args") or {})
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise TfsepError(
            f"{path}: not a LightningCLI run config with model.init_args.backbone "
            f"({type(exc).__name__}); fix it or pass --model/--width/--depth and move it away"
        ) from None
    name = class_path.rsplit(".", 1)[-1]
    if name not in BACKBONES:
        raise TfsepError(f"{path}: backbone {class_path} is not one tfsep-edge builds; it reads {', '.join(BACKBONES)}")
    if int(init_args.get("in_channels", 1)) != 1:
        raise TfsepError(f"{path}: in_channels {init_args['in_channels']}; tfsep-edge models take one log-mel channel")
    args = {ours: init_args[theirs] for theirs, ours in ARGUMENTS.items() if theirs in init_args}
    return {"family": BACKBONES[name], "args": args, "frontend": run_frontend(doc["model"]["init_args"], path)}


def run_frontend(model_args: dict, path: Path) -> FrontendConfig | None:
    """The front end of the run's `spec_extractor` (None if it names none): its preset, with the
    run's n_mels (the argument its TF-SepNet-64 configs set; CpMel's others are the preset's)."""
    extractor = model_args.get("spec_extractor") if isinstance(model_args, dict) else None
    if not isinstance(extractor, dict) or "class_path" not in extractor:
        return None
    name = str(extractor["class_path"]).rsplit(".", 1)[-1]
    if name not in EXTRACTORS:
        raise TfsepError(
            f"{path}: spec_extractor {extractor['class_path']} is not a front end tfsep-edge computes "
            f"(it reads {', '.join(EXTRACTORS)}); a model trained on it would get other features"
        )
    cfg = frontend_preset(EXTRACTORS[name])
    n_mels = (extractor.get("init_args") or {}).get("n_mels")
    return cfg if n_mels is None else replace(cfg, n_mels=int(n_mels))


def _tensor(state: dict, key: str, path: Path) -> torch.Tensor:
    value = state.get(key)
    if not isinstance(value, torch.Tensor):
        raise TfsepError(f"{path}: '{key}' is missing or not a tensor; a truncated or edited checkpoint")
    return value


def weights_config(family: Family, state: dict, path: Path) -> dict:
    """What the weights themselves say: base channels (and sub-bands, depth where readable)."""
    if family.name == "bcresnet":
        stem = _tensor(state, "conv_layers.weight", path)  # 2C x 1 x 5 x 5
        width = stem.shape[0] // 2
        ssn = _tensor(state, "middle_layers.1.ssn._bn.weight", path)  # C x sub_bands
        return {"width": width, "sub_bands": ssn.shape[0] // width}
    stem = _tensor(state, "conv_layers.0._conv.weight", path)  # C/2 x 1 x 3 x 3
    return {"width": stem.shape[0] * 2, "depth": depth_from_keys(state, path)}


def depth_from_keys(state: dict, path: Path) -> int:
    """TF-SepNet-64's depth from where its blocks sit in `middle_layers`."""
    from tfsep_edge.model.easy_nets import TFSepNetV2, TFSepNetV2Config

    keys = set(state)
    for depth in FAMILIES["tfsepnet-v2"].depths:
        layout = set(TFSepNetV2(TFSepNetV2Config(width=4, depth=depth)).state_dict())
        if keys == layout:
            return depth
    raise TfsepError(
        f"{path}: TF-SepNet-64 keys match neither depth 16 nor 17 (another layout or a truncated checkpoint)"
    )


def merge(path: Path, found: dict, given: dict, source: str) -> dict:
    """found (what `path` says) joined with given (from `source`); any disagreement is an error."""
    for key, value in given.items():
        if key in found and found[key] != value:
            flag = {"width": "--width", "depth": "--depth"}.get(key, key)
            raise TfsepError(
                f"{path}: says {key} {found[key]}, {source} says {value}; drop {flag} or pick the matching checkpoint"
            )
    return {**given, **found}
