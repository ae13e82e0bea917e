"""Choosing, recording and loading calibration and evaluation sets for `quantize`. No torch.

CALIB may be
- a TAU22 layout (meta.csv + evaluation_setup/fold1_train.csv): a subset of the train split,
  balanced over scene classes and, within each class, over recording devices, seeded;
- a folder of audio files (searched recursively): all of them, or a seeded subset of N;
- a text file listing audio files, one per line ('#' starts a comment; relative paths are
  relative to the list's folder): exactly those, in that order (this is the form the chosen
  list is written in, so a run can be repeated exactly).
Every file goes through the deployed front end: audio.load_audio -> split_windows ->
frontend.log_mel (the numpy code the runtime uses).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfsep_edge.core.config import DEFAULT_FRONTEND, DEFAULT_NUM_CALIB, LABELS, FrontendConfig
from tfsep_edge.core.errors import TfsepError
from tfsep_edge.datasets.tau import device_of, is_tau_layout, read_split, read_train_subset
from tfsep_edge.signal.audio import find_audio, load_audio, split_windows
from tfsep_edge.signal.frontend import log_mel

# Fewer readable files than this cannot stand for the activation ranges of real input; a
# 1-file set is almost always a mistake (a path to one WAV instead of a folder).
MIN_CALIB_FILES = 4
DEFAULT_SEED = 0
LABELS_FILE_NAMES = ("labels.csv", "labels.tsv")


@dataclass(frozen=True)
class AudioSet:
    files: tuple[Path, ...]
    labels: tuple[str | None, ...]  # None where unlabelled
    devices: tuple[str, ...]
    source: str  # "tau", "folder" or "list"
    origin: Path

    @property
    def labelled(self) -> bool:
        return bool(self.files) and all(lab is not None for lab in self.labels)


def _balanced_pick(keys: list[tuple[str, str]], count: int, seed: int) -> list[int]:
    """Indices of `count` items balanced over classes, then devices within a class (seeded).

    Round robin: each round takes one item per class, cycling through that class's devices;
    inside a (class, device) cell the order is a seeded shuffle.
    """
    rng = np.random.default_rng(seed)
    cells: dict[str, dict[str, list[int]]] = {}
    for i, (label, device) in enumerate(keys):
        cells.setdefault(label, {}).setdefault(device, []).append(i)
    for per_dev in cells.values():
        for idx in per_dev.values():
            rng.shuffle(idx)
    classes = sorted(cells)
    cursors = {c: 0 for c in classes}
    chosen: list[int] = []
    while len(chosen) < count:
        progressed = False
        for c in classes:
            devices = [d for d in sorted(cells[c]) if cells[c][d]]
            if not devices or len(chosen) >= count:
                continue
            d = devices[cursors[c] % len(devices)]
            cursors[c] += 1
            chosen.append(cells[c][d].pop())
            progressed = True
        if not progressed:
            break
    return sorted(chosen)


def _read_list(path: Path) -> list[Path]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TfsepError(f"{path}: cannot read the calibration list ({exc})") from None
    files = []
    for line in lines:
        entry = line.split("#", 1)[0].strip()
        if entry:
            p = Path(entry)
            files.append(p if p.is_absolute() else path.parent / p)
    return files


def select_calibration(
    calib: str | Path,
    num: int | None = DEFAULT_NUM_CALIB,
    seed: int = DEFAULT_SEED,
    subset: str | Path | None = None,
) -> AudioSet:
    """The calibration files CALIB names (see module docstring); num=None takes all.

    `subset` (a DCASE training subset list, for a TAU22 layout only) restricts the choice to the
    clips the model was trained on, as the DCASE 2024/2025 rules require.
    """
    calib = Path(calib)
    if num is not None and num < 1:
        raise TfsepError(f"--num-calib {num}: must be at least {MIN_CALIB_FILES}")
    if not calib.exists():
        raise TfsepError(f"{calib}: no such calibration folder, list or TAU data set")
    if calib.is_dir() and is_tau_layout(calib):
        clips = read_split(calib, "train") if subset is None else read_train_subset(calib, subset)
        keys = [(c.label or "", c.device) for c in clips]
        idx = _balanced_pick(keys, len(clips) if num is None else min(num, len(clips)), seed)
        files = tuple(clips[i].path for i in idx)
        return AudioSet(files, tuple(clips[i].label for i in idx), tuple(clips[i].device for i in idx), "tau", calib)
    if subset is not None:
        raise TfsepError(f"--train-split {subset}: needs --calib to be the TAU22 data folder, not {calib}")
    if calib.is_dir():
        found = find_audio([calib])
        if not found:
            raise TfsepError(f"{calib}: no audio files (.wav, .flac, .ogg) in this folder; point --calib at WAVs")
        if num is not None and num < len(found):
            rng = np.random.default_rng(seed)
            found = [found[i] for i in sorted(rng.choice(len(found), size=num, replace=False))]
        return AudioSet(tuple(found), (None,) * len(found), tuple(device_of(p.name) for p in found), "folder", calib)
    if calib.suffix.lower() in (".wav", ".flac", ".ogg"):
        raise TfsepError(
            f"{calib}: a calibration set of 1 file; give a folder or list of at least {MIN_CALIB_FILES} audio files"
        )
    files = _read_list(calib)
    if not files:
        raise TfsepError(f"{calib}: the calibration list names no files; one audio path per line")
    if num is not None:
        files = files[:num]
    return AudioSet(tuple(files), (None,) * len(files), tuple(device_of(p.name) for p in files), "list", calib)


def list_text(audio: AudioSet, note: str = "") -> str:
    """The chosen files (absolute paths), in the form `--calib THIS_FILE` reads back exactly."""
    header = [f"# tfsep-edge calibration list: {len(audio.files)} files from {audio.source} {audio.origin.resolve()}"]
    if note:
        header.append(f"# {note}")
    return "\n".join(header + [str(p.resolve()) for p in audio.files]) + "\n"


def load_windows(
    audio: AudioSet,
    cfg: FrontendConfig = DEFAULT_FRONTEND,
    min_files: int = 1,
    warn: Callable[[str], None] | None = None,
    what: str = "calibration",
) -> tuple[np.ndarray, np.ndarray, AudioSet]:
    """Log-mel windows of every readable file: (windows (N,1,n_mels,T) float32, file index per
    window, the AudioSet of the files that were read). Unreadable files are skipped with one
    warning naming them; fewer than `min_files` readable files is a TfsepError."""
    mels, owners, kept, bad = [], [], [], []
    for i, path in enumerate(audio.files):
        try:
            wave = load_audio(path, cfg)
        except TfsepError as exc:
            bad.append(str(exc))
            continue
        windows = split_windows(wave, cfg)
        mels.append(log_mel(windows, cfg)[:, None])
        owners.extend([len(kept)] * len(windows))
        kept.append(i)
    if len(kept) < min_files:  # the one line says it all: no warning listing the files before it
        first = f"; the first unreadable: {bad[0]}" if bad else ""
        raise TfsepError(
            f"{audio.origin}: only {len(kept)} readable {what} file(s) of {len(audio.files)}; "
            f"need at least {min_files} (add more audio or fix the unreadable files){first}"
        )
    if bad and warn is not None:
        warn(f"skipped {len(bad)} unreadable {what} file(s): " + "; ".join(bad))
    subset = AudioSet(
        tuple(audio.files[i] for i in kept),
        tuple(audio.labels[i] for i in kept),
        tuple(audio.devices[i] for i in kept),
        audio.source,
        audio.origin,
    )
    if not mels:
        shape = (0, 1, cfg.n_mels, cfg.n_frames)
        return np.zeros(shape, np.float32), np.zeros(0, np.int64), subset
    return np.concatenate(mels).astype(np.float32), np.asarray(owners, np.int64), subset


def load_calibration(
    audio: AudioSet, cfg: FrontendConfig = DEFAULT_FRONTEND, warn: Callable[[str], None] | None = None
) -> tuple[np.ndarray, AudioSet]:
    """Calibration windows; at least MIN_CALIB_FILES readable files."""
    if len(audio.files) < MIN_CALIB_FILES:
        raise TfsepError(
            f"{audio.origin}: a calibration set of {len(audio.files)} file(s); "
            f"give at least {MIN_CALIB_FILES} audio files (a few hundred for a good calibration)"
        )
    windows, _, kept = load_windows(audio, cfg, MIN_CALIB_FILES, warn)
    return windows, kept


def _read_labels_file(path: Path) -> dict[str, str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    first = text.splitlines()[0] if text.strip() else ""
    delimiter = "\t" if "\t" in first else ","
    rows = list(csv.reader(text.splitlines(), delimiter=delimiter))
    if rows and rows[0] and rows[0][0].strip().lower() in ("filename", "file", "path"):
        rows = rows[1:]
    return {r[0].strip(): r[1].strip() for r in rows if len(r) >= 2 and r[0].strip()}


def select_eval(data: str | Path) -> AudioSet:
    """Evaluation set: a TAU layout (its 'evaluate' split), or a folder of audio with an optional
    labels.csv (filename, scene_label; filenames relative to the folder). Labels must be the
    ten TAU22 scenes; without a labels file the set is unlabelled (agreement and SQNR only)."""
    data = Path(data)
    if not data.exists():
        raise TfsepError(f"{data}: no such evaluation folder or TAU data set")
    if data.is_dir() and is_tau_layout(data):
        clips = read_split(data, "evaluate")
        return AudioSet(
            tuple(c.path for c in clips), tuple(c.label for c in clips), tuple(c.device for c in clips), "tau", data
        )
    if not data.is_dir():
        raise TfsepError(f"{data}: --eval needs a TAU22 folder or a folder of audio (with labels.csv for accuracy)")
    files = find_audio([data])
    if not files:
        raise TfsepError(f"{data}: no audio files to evaluate on")
    labels: list[str | None] = [None] * len(files)
    label_file = next((data / n for n in LABELS_FILE_NAMES if (data / n).is_file()), None)
    if label_file is not None:
        table = _read_labels_file(label_file)
        labels = [table.get(p.relative_to(data).as_posix(), table.get(p.name)) for p in files]
        missing = [p.name for p, lab in zip(files, labels, strict=True) if lab is None]
        if missing:
            raise TfsepError(f"{label_file}: no label for {len(missing)} audio file(s) (first: {missing[0]})")
        unknown = sorted({str(lab) for lab in labels if lab not in LABELS})
        if unknown:
            raise TfsepError(
                f"{label_file}: labels {', '.join(unknown[:4])} are not the ten TAU22 scenes "
                f"({', '.join(LABELS)}); fix the labels or drop the file for an unlabelled check"
            )
    return AudioSet(tuple(files), tuple(labels), tuple(device_of(p.name) for p in files), "folder", data)
