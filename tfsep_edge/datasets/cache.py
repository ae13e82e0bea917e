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
    """Rows of one or more (N_i, S) float16/float32 files seen as one array; picklable (for workers).

    Rows are read with pread into the caller's batch, not through a memory map: a mapped page
    that has been read stays in the reader's RSS, so a process that reads a whole cache (an
    epoch, an evaluation) would show the whole cache as its resident memory. Read this way,
    a batch costs its own size and the page cache (not the process) holds the rest.
    """

    def __init__(self, parts: list[tuple[Path, int]], samples: int, dtype: str = "float16"):
        self.parts = [(Path(p), int(n)) for p, n in parts]
        self.samples = samples
        self.dtype = dtype
        self.offsets = np.cumsum([0] + [n for _, n in self.parts])
        self._fds: list[int] | None = None
        self._pid = 0

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fds": None}  # each worker opens the files itself

    def __del__(self):
        if getattr(self, "_fds", None) and self._pid == os.getpid():
            for fd in self._fds:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _open(self) -> list[int]:
        if self._fds is None or self._pid != os.getpid():  # a forked worker opens its own descriptors
            self._fds = [os.open(p, os.O_RDONLY) for p, _ in self.parts]
            self._pid = os.getpid()
        return self._fds

    def get(self, rows: np.ndarray) -> np.ndarray:
        """float32 (len(rows), S) for the given global row numbers."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.samples), dtype=np.float32)
        if not len(rows):
            return out
        row_bytes = self.samples * np.dtype(self.dtype).itemsize
        buf = out if self.dtype == "float32" else np.empty((len(rows), self.samples), dtype=self.dtype)
        part = np.searchsorted(self.offsets, rows, side="right") - 1
        fds = self._open()
        for i in np.argsort(rows, kind="stable"):  # ascending offsets are kinder to the page cache
            k = int(part[i])
            if not 0 <= k < len(fds):
                raise IndexError(f"row {rows[i]} outside the store's {len(self)} rows")
            offset = int(rows[i] - self.offsets[k]) * row_bytes
            if os.preadv(fds[k], [memoryview(buf[i]).cast("B")], offset) != row_bytes:
                raise TfsepError(f"{self.parts[k][0]}: the cache file is shorter than its index says; delete it")
        if buf is not out:
            out[:] = buf
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


class RowWriter:
    """`arr[i] = row` / `arr[a:b] = rows` into a (rows, samples) file of `dtype`, by pwrite.

    Not a writable memory map: its dirty pages count in the writer's RSS until written back,
    so building a cache of G gigabytes would show up to G gigabytes resident.
    """

    def __init__(self, fd: int, rows: int, samples: int, dtype: str):
        self.fd, self.rows, self.samples, self.dtype = fd, rows, samples, np.dtype(dtype)

    def __setitem__(self, key, value) -> None:
        start = (key.start or 0) if isinstance(key, slice) else int(key)
        block = np.ascontiguousarray(value, dtype=self.dtype).reshape(-1, self.samples)
        if start < 0 or start + len(block) > self.rows:
            raise IndexError(f"rows {start}..{start + len(block)} outside {self.rows}")
        data = memoryview(block).cast("B")
        offset = start * self.samples * self.dtype.itemsize
        while len(data):
            written = os.pwrite(self.fd, data, offset)
            data, offset = data[written:], offset + written


def _remove_stale_temporaries(folder: Path, name: str) -> None:
    """Temporaries of earlier builds whose process is gone (a build killed by SIGKILL, a power
    cut): each is as large as the cache, so a few restarts would fill the disk."""
    for tmp in folder.glob(f".{name}.*.tmp"):
        try:
            pid = int(tmp.name.split(".")[-2])
            os.kill(pid, 0)  # still running (another rank's build): leave it
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                tmp.unlink()
        except (ValueError, PermissionError):
            continue


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
    """Write a (rows, samples) file of `dtype` at `folder/name` by calling fill(writer, bar),
    where writer takes `writer[i] = row` and `writer[a:b] = rows`; atomic: a temporary file,
    fsynced, then renamed. Temporaries that killed builds left behind are removed first."""
    itemsize = np.dtype(dtype).itemsize
    final = folder / name
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    made = [p for p in (folder, *folder.parents) if not p.exists()]  # removed again if the build fails
    fd = -1
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(folder, name)
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        # reserve the space now: a full disk is an error here, not halfway through the build
        size = max(rows, 1) * samples * itemsize
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(fd, 0, size)
        else:
            os.ftruncate(fd, size)
    except OSError as exc:
        if fd >= 0:
            os.close(fd)
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
            fill(RowWriter(fd, max(rows, 1), samples, dtype), bar)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, final)
    finally:
        if fd >= 0:
            os.close(fd)
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
