"""Training and evaluation data on the TAU22 layout, decoded once into a memory-mapped waveform cache.

Why it works this way, with the measurements that decided it:
docs/data.md (figures go stale in code, so they live there).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tfsep_edge.core.assets import IMPULSE_RESPONSES
from tfsep_edge.core.config import DEFAULT_FRONTEND, FrontendConfig
from tfsep_edge.core.errors import TfsepError
from tfsep_edge.core.fileio import write_text_atomic
from tfsep_edge.core.progress import progress_bar
from tfsep_edge.datasets.tau import Clip, read_split, read_train_subset
from tfsep_edge.signal.audio import load_audio, split_windows

CACHE_VERSION = 1


def default_ir_dir() -> Path:
    """The 66 MicIRP responses shipped with the package (the report's device-simulation set)."""
    return IMPULSE_RESPONSES


def default_cache_dir(root: Path) -> Path:
    """ROOT/.tfsep-cache when the data folder is writable, else ~/.cache/tfsep-edge."""
    if os.access(root, os.W_OK):
        return root / ".tfsep-cache"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tfsep-edge"


# --- the memory-mapped waveform store ---------------------------------------------------------


CACHE_FILES = {"float16": "waves.f16", "float32": "waves.f32"}  # storage dtype -> file in the cache folder


class WaveStore:
    """Rows of one or more (N_i, S) float16/float32 memmaps seen as one array; picklable (for workers)."""

    def __init__(self, parts: list[tuple[Path, int]], samples: int, dtype: str = "float16"):
        self.parts = [(Path(p), int(n)) for p, n in parts]
        self.samples = samples
        self.dtype = dtype
        self.offsets = np.cumsum([0] + [n for _, n in self.parts])
        self._maps: list[np.memmap] | None = None

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": None}  # each worker maps the files itself

    def _open(self) -> list[np.memmap]:
        if self._maps is None:
            self._maps = [np.memmap(p, dtype=self.dtype, mode="r", shape=(n, self.samples)) for p, n in self.parts]
        return self._maps

    def get(self, rows: np.ndarray) -> np.ndarray:
        """float32 (len(rows), S) for the given global row numbers."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.samples), dtype=np.float32)
        part = np.searchsorted(self.offsets, rows, side="right") - 1
        for k, mm in enumerate(self._open()):
            sel = np.nonzero(part == k)[0]
            if len(sel):
                local = rows[sel] - self.offsets[k]
                order = np.argsort(local)  # sorted reads are kinder to the page cache
                out[sel[order]] = mm[local[order]]
        return out


@dataclass
class SplitData:
    """One split's clips: labels, devices, file names and their cached waveforms."""

    split: str
    filenames: list[str]
    labels: np.ndarray  # int64 (N,), -1 for the unlabelled test split
    devices: list[str]
    waves: WaveStore
    source: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # devsim: source row

    def __len__(self) -> int:
        return len(self.filenames)


def _cache_key(root: Path, split: str, clips: list[Clip], cfg: FrontendConfig) -> str:
    meta = (root / "meta.csv").stat()
    h = hashlib.sha1()
    for part in (
        CACHE_VERSION,
        root.resolve(),
        split,
        meta.st_size,
        meta.st_mtime_ns,
        cfg.sample_rate,
        cfg.clip_samples,
    ):
        h.update(f"{part}\n".encode())
    for c in clips:
        h.update(c.filename.encode() + b"\n")
    return h.hexdigest()[:16]


def _decode(path: Path, cfg: FrontendConfig = DEFAULT_FRONTEND) -> np.ndarray:
    return split_windows(load_audio(path, cfg), cfg)[0]


def _progress(total: int, desc: str, enabled: bool = True):
    return progress_bar(total, desc, "clip", enabled)


def build_store(
    name: str,
    folder: Path,
    rows: int,
    samples: int,
    fill,
    desc: str,
    progress: bool = True,
    dtype: str = "float16",
) -> Path:
    """Write a (rows, samples) memmap of `dtype` at `folder/name` by calling fill(memmap, bar); atomic."""
    itemsize = np.dtype(dtype).itemsize
    final = folder / name
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    made = [p for p in (folder, *folder.parents) if not p.exists()]  # removed again if the build fails
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:  # reserve the space now: a full disk is an error here, not a SIGBUS later
            size = max(rows, 1) * samples * itemsize
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(f.fileno(), 0, size)
            else:
                f.truncate(size)
        arr = np.memmap(tmp, dtype=dtype, mode="r+", shape=(max(rows, 1), samples))
    except OSError as exc:
        if tmp.exists():
            tmp.unlink()
        _remove_empty(made)
        need = rows * samples * itemsize / 1e9
        raise TfsepError(
            f"{folder}: cannot write the audio cache ({exc.strerror or exc}; needs {need:.2f} GB); "
            "pass --cache-dir to a writable folder with room"
        ) from None
    try:
        with _progress(rows, desc, progress) as bar:
            fill(arr, bar)
        arr.flush()
        del arr
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
            _remove_empty(made)  # a clip that failed to decode leaves the data folder as it was
    return final


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders a failed build made (innermost first), those still empty."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def cache_split(
    clips: list[Clip],
    root: Path,
    split: str,
    cache_dir: Path,
    cfg: FrontendConfig = DEFAULT_FRONTEND,
    workers: int = 0,
    progress: bool = True,
    dtype: str = "float16",
) -> WaveStore:
    """The cached waveforms of `clips` (stored as `dtype`), building the cache first if needed."""
    key = _cache_key(root, split, clips, cfg)
    folder = cache_dir / f"{split}-{key}"
    index = folder / "index.json"
    name = CACHE_FILES[dtype]
    if index.is_file():
        try:
            info = json.loads(index.read_text())
        except (OSError, ValueError):
            info = {}  # unreadable index: rebuild
        if info.get("complete") and info.get("rows") == len(clips) and (folder / name).is_file():
            return WaveStore([(folder / name, len(clips))], cfg.clip_samples, dtype)

    def fill(arr: np.ndarray, bar) -> None:
        paths = [c.path for c in clips]
        if workers > 0:
            from functools import partial
            from multiprocessing import get_context

            with get_context("spawn").Pool(workers) as pool:
                for i, wave in enumerate(pool.imap(partial(_decode, cfg=cfg), paths, chunksize=32)):
                    arr[i] = wave
                    bar.update(1)
        else:
            for i, p in enumerate(paths):
                arr[i] = _decode(p, cfg)
                bar.update(1)

    desc = f"caching {split} audio"
    path = build_store(name, folder, len(clips), cfg.clip_samples, fill, desc, progress, dtype)
    info = {"complete": True, "rows": len(clips), "split": split, "root": str(root.resolve()), "key": key}
    info["filenames"] = [c.filename for c in clips]
    write_text_atomic(index, json.dumps(info))
    return WaveStore([(path, len(clips))], cfg.clip_samples, dtype)


def load_split(
    root: str | Path,
    split: str,
    cache_dir: str | Path | None = None,
    cfg: FrontendConfig = DEFAULT_FRONTEND,
    workers: int = 0,
    progress: bool = True,
    dtype: str = "float16",
    subset: str | Path | None = None,
) -> SplitData:
    """Read a split of the TAU22 layout (validated by tau.read_split) and its cached waveforms.

    `subset`: a DCASE subset list (split25.csv ...) restricting the train split to its clips;
    its cache is keyed by the clips it holds, so it never mixes with the full split's.
    """
    root = Path(root)
    clips = read_split(root, split) if subset is None else read_train_subset(root, subset)
    cache = Path(cache_dir) if cache_dir else default_cache_dir(root)
    waves = cache_split(clips, root, split, cache, cfg, workers, progress, dtype)
    labels = np.array([c.label_index for c in clips], dtype=np.int64)
    return SplitData(split, [c.filename for c in clips], labels, [c.device for c in clips], waves)


def is_synthetic(root: str | Path) -> bool:
    """True for a folder written by tfsep-edge synth (its README says SYNTHETIC)."""
    readme = Path(root) / "README.txt"
    return readme.is_file() and "SYNTHETIC" in readme.read_text(errors="replace")[:200]


# --- batches for torch ---------------------------------------------------------------------------
