"""The options of `tfsep-edge train`, with the report's values as defaults, their one-line checks,
and how a resumed run's stored options combine with the ones given."""

from __future__ import annotations

from dataclasses import dataclass, fields

from tfsep_edge.core.errors import TfsepError, check_at_least_one
from tfsep_edge.model.families import build_model, make_config

DEVSIM_MODES = ("offline", "online", "none")


@dataclass
class TrainOptions:
    model: str = "tfsepnet"  # a family of model/families.py
    width: int | None = None  # None: the family's default (TF-SepNet 12, BC-ResNet 40, TF-SepNet-64 64)
    norm: str | None = None  # tfsepnet: adaresnorm (None) | resnorm
    depth: int | None = None  # tfsepnet-v2: 16 | 17 (None: 17)
    epochs: int = 200
    batch_size: int = 32
    lr: float = 0.01
    warmup_epochs: float = 10
    device: str = "cpu"
    teacher: str | None = None
    kd_lambda: float = 20.0
    kd_temperature: float = 5.0
    mixup_alpha: float = 0.3  # 0 turns Mixup off
    mixstyle_p: float = 0.5  # 0 turns Freq-MixStyle off
    mixstyle_alpha: float = 0.3
    dropout: float = 0.2
    devsim: str = "offline"  # offline | online | none
    devsim_p: float = 0.5  # online: probability a device-A clip is convolved
    devsim_irs: int = 32  # offline: responses used
    devsim_clips: int | None = None  # offline: device-A clips per response; None: the report's proportion
    ir_dir: str | None = None  # default: the 66 MicIRP responses shipped as package data
    seed: int = 0
    workers: int = 0
    threads: int | None = None
    cache_dir: str | None = None
    val_split: str = "evaluate"
    train_split: str | None = None  # a DCASE subset list (split25.csv ...) of fold1_train.csv

    def check(self) -> None:
        """Every user-facing value, validated with a one-line error."""
        build_model(self.model_config())  # the family's own checks of --model/--norm/--depth/--width
        positive = {"--epochs": self.epochs, "--batch-size": self.batch_size, "--lr": self.lr}
        for name, v in positive.items():
            if not v > 0:
                raise TfsepError(f"{name} {v}: must be positive")
        if self.batch_size < 2:
            raise TfsepError(f"--batch-size {self.batch_size}: BatchNorm needs at least 2")
        unit = {"--mixstyle-p": self.mixstyle_p, "--devsim-p": self.devsim_p, "--dropout": self.dropout}
        for name, v in unit.items():
            if not 0 <= v <= 1:
                raise TfsepError(f"{name} {v}: must be in [0, 1]")
        nonneg = {
            "--warmup-epochs": self.warmup_epochs,
            "--mixup-alpha": self.mixup_alpha,
            "--mixstyle-alpha": self.mixstyle_alpha,
            "--kd-lambda": self.kd_lambda,
            "--workers": self.workers,
        }
        for name, v in nonneg.items():
            if v < 0:
                raise TfsepError(f"{name} {v}: must be >= 0")
        if self.mixstyle_p > 0 and self.mixstyle_alpha <= 0:
            raise TfsepError(f"--mixstyle-alpha {self.mixstyle_alpha}: must be > 0 (or --mixstyle-p 0)")
        if self.kd_temperature <= 0:
            raise TfsepError(f"--kd-temperature {self.kd_temperature}: must be positive")
        if self.devsim not in DEVSIM_MODES:
            raise TfsepError(f"--devsim {self.devsim}: choose one of {', '.join(DEVSIM_MODES)}")
        if self.devsim_irs < 1:
            raise TfsepError(f"--devsim-irs {self.devsim_irs}: must be at least 1")
        if self.devsim_clips is not None and self.devsim_clips < 1:
            raise TfsepError(
                f"--devsim-clips {self.devsim_clips}: must be at least 1 (leave it out for the report's proportion)"
            )
        if self.device not in ("cpu", "cuda"):
            raise TfsepError(f"--device {self.device}: choose cpu or cuda")
        check_at_least_one("--threads", self.threads)

    def model_config(self):
        """The config of the network to train (its family, width, norm or depth, dropout)."""
        return make_config(self.model, self.width, self.norm, self.depth, dropout=self.dropout)

    @classmethod
    def resolve(cls, given: dict, stored: dict | None = None) -> TrainOptions:
        """Options given explicitly > options of the run being resumed > the report's defaults."""
        known = {f.name for f in fields(cls)}
        unknown = set(given) - known
        if unknown:
            raise TfsepError(f"unknown training options: {', '.join(sorted(unknown))}")
        values = {k: v for k, v in (stored or {}).items() if k in known}
        values.update({k: v for k, v in given.items() if v is not None})
        return cls(**values)
