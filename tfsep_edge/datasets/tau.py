"""The TAU Urban Acoustic Scenes 2022 Mobile layout, read without torch.

    ROOT/meta.csv                          filename  scene_label  identifier  source_label
    ROOT/evaluation_setup/fold1_train.csv  filename  scene_label
    ROOT/evaluation_setup/fold1_evaluate.csv
    ROOT/evaluation_setup/fold1_test.csv   filename
    ROOT/audio/<scene>-<city>-<location>-<segment>-<device>.wav

All files are tab-separated with a header row. Used by training, evaluation, calibration.

DCASE 2024/2025 train on subsets of fold1_train.csv: the official lists split5.csv, split10.csv,
split25.csv, split50.csv, split100.csv (same format: filename, scene_label; the 2025 task uses
split25). `read_train_subset` reads one of them against the data set's train split.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from tfsep_edge.core.config import DEVICES, LABELS
from tfsep_edge.core.errors import TfsepError

SPLITS = ("train", "evaluate", "test")


@dataclass(frozen=True)
class Clip:
    filename: str  # as written in the csv, relative to the data root (e.g. audio/x.wav)
    path: Path
    label: str | None  # None for the unlabelled test split
    device: str

    @property
    def label_index(self) -> int:
        return LABELS.index(self.label) if self.label is not None else -1


def device_of(filename: str) -> str:
    """Device from a TAU file name: the last '-' field of the stem (a, b, c, s1..s6)."""
    return Path(filename).stem.rsplit("-", 1)[-1].lower()


def is_tau_layout(root: str | Path) -> bool:
    root = Path(root)
    return (root / "meta.csv").is_file() and (root / "evaluation_setup").is_dir()


def _read_tsv(path: Path) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise TfsepError(f"{path}: cannot read ({exc})") from None
    if rows and "filename" not in rows[0]:
        raise TfsepError(f"{path}: no 'filename' column; expected a tab-separated TAU22 file with a header")
    return rows


def read_split(root: str | Path, split: str = "train", check_files: bool = True) -> list[Clip]:
    """Clips of one split (train / evaluate / test), validated: known labels, files present."""
    root = Path(root)
    if not root.is_dir():
        raise TfsepError(f"{root}: no such data folder")
    if not (root / "meta.csv").is_file():
        raise TfsepError(f"{root}: no meta.csv; expected the TAU22 layout (meta.csv, evaluation_setup/, audio/)")
    if split not in SPLITS:
        raise TfsepError(f"split '{split}' unknown; choose one of {', '.join(SPLITS)}")
    split_file = root / "evaluation_setup" / f"fold1_{split}.csv"
    if not split_file.is_file():
        raise TfsepError(f"{split_file}: missing; the TAU22 layout needs evaluation_setup/fold1_{split}.csv")
    rows = _read_tsv(split_file)
    if not rows:
        raise TfsepError(f"{split_file}: the {split} split is empty")
    labels = {r["filename"]: r.get("scene_label") for r in _read_tsv(root / "meta.csv")}
    clips, unknown, missing = [], [], []
    for r in rows:
        name = r["filename"]
        label = r.get("scene_label") or labels.get(name)
        if split != "test" and label not in LABELS:
            unknown.append(f"{name}:{label}")
            continue
        path = root / name
        if check_files and not path.is_file():
            missing.append(name)
            continue
        clips.append(Clip(name, path, label if label in LABELS else None, device_of(name)))
    if unknown:
        raise TfsepError(
            f"{split_file}: {len(unknown)} rows with labels outside the ten TAU22 scenes "
            f"(first: {', '.join(unknown[:3])}); allowed: {', '.join(LABELS)}"
        )
    if missing:
        raise TfsepError(
            f"{root}: {len(missing)} audio files listed in fold1_{split}.csv are missing "
            f"(first: {', '.join(missing[:3])})"
        )
    return clips


def read_train_subset(root: str | Path, subset_file: str | Path) -> list[Clip]:
    """The train-split clips a DCASE subset list names, in fold1_train.csv order.

    Every name must be a clip of meta.csv and of the train split (a subset of the evaluate
    split would leak the validation data into training).
    """
    subset_file = Path(subset_file)
    if not subset_file.is_file():
        raise TfsepError(f"{subset_file}: no such split file; pass a DCASE subset list such as split25.csv")
    rows = [r for r in _read_tsv(subset_file) if r.get("filename")]
    wanted = [r["filename"] for r in rows]
    if not wanted:
        raise TfsepError(f"{subset_file}: the subset is empty; it needs rows of filename<TAB>scene_label")
    root = Path(root)
    train = read_split(root, "train")
    in_meta = {r["filename"] for r in _read_tsv(root / "meta.csv")}
    in_train = {c.filename for c in train}
    for names, where, fix in (
        ([n for n in wanted if n not in in_meta], "meta.csv", "is it the subset list of another data set?"),
        ([n for n in wanted if n not in in_train], "fold1_train.csv", "a training subset may hold train clips only"),
    ):
        if names:
            raise TfsepError(
                f"{subset_file}: {len(names)} of {len(wanted)} clips are not in {root / where} "
                f"(first: {', '.join(names[:3])}); {fix}"
            )
    label_of = {c.filename: c.label for c in train}
    relabelled = [r["filename"] for r in rows if r.get("scene_label") and r["scene_label"] != label_of[r["filename"]]]
    if relabelled:
        raise TfsepError(
            f"{subset_file}: {len(relabelled)} of {len(wanted)} clips have another scene_label than the data "
            f"set gives them in {root} (fold1_train.csv, else meta.csv; first: {', '.join(relabelled[:3])}); "
            "is it the subset list of another data set?"
        )
    keep = set(wanted)
    return [c for c in train if c.filename in keep]


def device_names() -> tuple[str, ...]:
    return DEVICES
