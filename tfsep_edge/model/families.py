"""The model families, defined once: what `--model`, `--norm`, `--depth` and `--width` mean, how a
family's config is built, stored in a checkpoint and read back, and how a bare state_dict says
which family it is.

| --model      | network                                              | --norm               | --depth |
|--------------|------------------------------------------------------|----------------------|---------|
| tfsepnet     | the report's TF-SepNet (model/tfsepnet.py)           | adaresnorm, resnorm  | -       |
| bcresnet     | BC-ResNet, the report's Table 3 baseline (easy_nets) | - (ResNorm built in) | 15      |
| tfsepnet-v2  | TF-SepNet-64 of easy_dcase_task1 (easy_nets)         | - (ResNorm built in) | 16, 17  |

A checkpoint's "model" dict carries "family"; one without it is a TF-SepNet with AdaResNorm (every
checkpoint written before families existed).

Which features a model takes is decided here too (`model_frontend`): the front end its checkpoint
or artifact records, else its family's preset (tfsepnet, bcresnet: cpjku; tfsepnet-v2: cpmel), and
it must give the family's mel bands.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from tfsep_edge.core.config import FrontendConfig, frontend_preset, preset_name
from tfsep_edge.core.errors import TfsepError
from tfsep_edge.model.easy_nets import (
    TFSEPNET_V2_LAYOUTS,
    BCResNet,
    BCResNetConfig,
    TFSepNetV2,
    TFSepNetV2Config,
)
from tfsep_edge.model.tfsepnet import NORMS, ModelConfig, TFSepNet

DEFAULT_FAMILY = "tfsepnet"


@dataclass(frozen=True)
class Family:
    name: str
    title: str
    config_type: type
    model_type: type
    default_width: int
    norms: tuple[str, ...]  # empty: --norm does not apply
    depths: tuple[int, ...]  # empty: --depth does not apply
    input_shape: tuple[int, int, int]  # (channels, mel bands, frames) of one 1-s clip
    frontend: str  # the preset (core.config.FRONTENDS) it is trained on unless a checkpoint records another
    stem_key: str  # a state_dict key only this family's layout has


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "tfsepnet",
            "TF-SepNet (DCASE 2023 report)",
            ModelConfig,
            TFSepNet,
            12,
            NORMS,
            (),
            (1, 128, 44),
            "cpjku",
            "feature.0.weight",
        ),
        Family(
            "bcresnet",
            "BC-ResNet (report's Table 3 baseline, easy_dcase_task1 BCResNet)",
            BCResNetConfig,
            BCResNet,
            40,
            (),
            (15,),
            (1, 128, 44),
            "cpjku",
            "conv_layers.weight",
        ),
        Family(
            "tfsepnet-v2",
            "TF-SepNet-64 (easy_dcase_task1 TFSepNet, DCASE 2024)",
            TFSepNetV2Config,
            TFSepNetV2,
            64,
            (),
            tuple(TFSEPNET_V2_LAYOUTS),
            (1, 512, 64),
            "cpmel",
            "conv_layers.0._conv.weight",
        ),
    )
}


def get_family(name: str | None) -> Family:
    name = DEFAULT_FAMILY if name is None else name
    if name not in FAMILIES:
        raise TfsepError(f"--model {name!r}: not a model family; use one of {' | '.join(FAMILIES)}")
    return FAMILIES[name]


def check_family_options(family: Family, norm: str | None = None, depth: int | None = None) -> None:
    """--norm / --depth only where the family has them, and only their values."""
    if norm is not None and not family.norms:
        raise TfsepError(
            f"--norm {norm}: {family.name} has no norm choice (its ResNorm is part of the design); drop --norm"
        )
    if norm is not None and norm not in family.norms:
        raise TfsepError(f"--norm {norm!r}: {family.name} takes {' | '.join(family.norms)}")
    if depth is not None and not family.depths:
        raise TfsepError(f"--depth {depth}: {family.name} has no depth choice; drop --depth")
    if depth is not None and depth not in family.depths:
        raise TfsepError(f"--depth {depth}: {family.name} takes {' | '.join(map(str, family.depths))}")


def make_config(
    name: str | None = None,
    width: int | None = None,
    norm: str | None = None,
    depth: int | None = None,
    **extra,
):
    """The config of family `name` from the command-line options (None: the family's default)."""
    family = get_family(name)
    check_family_options(family, norm, depth)
    values = {"width": family.default_width if width is None else width, **extra}
    if norm is not None:
        values["norm"] = norm
    if depth is not None:
        values["depth"] = depth
    known = {f.name for f in fields(family.config_type)}
    return family.config_type(**{k: v for k, v in values.items() if k in known})


def build_model(config):
    """A model of any family from its config."""
    family = get_family(config.family)
    if family.model_type is TFSepNet:  # TF-SepNet takes its options one by one (public API)
        return TFSepNet(config.width, config.shuffle_groups, config.dropout, config.num_classes, config.norm)
    return family.model_type(config)


def config_from_dict(values: dict):
    """A checkpoint's "model" dict -> config; no "family": the TF-SepNet of older checkpoints."""
    family = get_family(values.get("family") or DEFAULT_FAMILY)
    known = {f.name for f in fields(family.config_type)}
    config = family.config_type(**{k: v for k, v in values.items() if k in known and k != "family"})
    if family.name == "tfsepnet" and config.norm not in NORMS:
        raise TfsepError(f"norm {config.norm!r}: TF-SepNet takes {' | '.join(NORMS)}")
    return config


def family_of_state(state: dict) -> Family | None:
    """The family whose layout a bare state_dict has (by its stem's key), or None."""
    for family in FAMILIES.values():
        if family.stem_key in state:
            return family
    return None


def family_frontend(name: str | None) -> FrontendConfig:
    """The front end a family is trained on when nothing records another: its preset."""
    return frontend_preset(get_family(name).frontend)


def model_frontend(family: str | None, recorded: FrontendConfig | dict | None, where, fix: str | None = None):
    """The features a model of `family` takes: `recorded` (what its checkpoint, artifact or file
    stores; None or {} for none) else the family's preset. Every stage that computes features
    asks this, so training, calibration, export and inference cannot disagree.
    TfsepError naming `where` if that front end does not give the family's mel bands."""
    fam = get_family(family)
    if isinstance(recorded, dict):
        recorded = FrontendConfig.from_dict(recorded) if recorded else None
    cfg = recorded or family_frontend(fam.name)
    check_frontend_fits(fam.name, cfg, where, fix)
    return cfg


def check_frontend_fits(family: str | None, cfg: FrontendConfig, where, fix: str | None = None) -> None:
    """TfsepError (one line naming `where` and the fix) unless `cfg` gives the family's mel bands.
    Only the bands are held to the family's input: its layers were built for them, while the
    frames are pooled (a recorded custom hop is the model's own training choice)."""
    fam = get_family(family)
    if cfg.n_mels == fam.input_shape[1]:
        return
    name = preset_name(cfg)
    given = f"the {name} front end" if name else "a custom front end"
    fix = fix or f"train it again with `tfsep-edge train --model {fam.name}`, which uses {fam.frontend}"
    raise TfsepError(
        f"{where}: {given} gives {cfg.n_mels}x{cfg.n_frames} log-mels, but a {fam.name} takes "
        f"{fam.input_shape[1]} mel bands ({fam.frontend}: {'x'.join(map(str, fam.input_shape[1:]))}); {fix}"
    )
