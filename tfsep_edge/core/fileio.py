"""Atomic writes: every file tfsep-edge produces goes through here."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tfsep_edge.core.errors import TfsepError


def check_writable_dir(target: Path) -> None:
    """Fail early, with a clear message, if `target`'s folder is missing or read-only."""
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise TfsepError(f"{target}: folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise TfsepError(f"{target}: folder {folder} is not writable; choose another output path")


def check_output_file(target: str | Path) -> Path:
    """check_writable_dir, and `target` must not be a folder: a file output is checked before
    any work is done, not found unwritable at the final rename."""
    target = Path(target)
    check_writable_dir(target)
    if target.is_dir():
        raise TfsepError(f"{target}: is a folder; give a file path (e.g. {target / 'out'}{target.suffix})")
    return target


def check_output_folder(target: str | Path) -> Path:
    """A folder output (`synth OUT`, `train -o`, `quantize -o`) checked before any work: `target`
    must not be a file, and a folder must be creatable in the nearest folder above it that
    exists (the missing ones between are made later, as `mkdir -p` would)."""
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise TfsepError(f"{target}: is a file; give a folder path (a new one, e.g. {target}-out)")
    above = target.absolute().parent
    while not above.exists():
        above = above.parent
    if not above.is_dir():
        raise TfsepError(f"{target}: {above} is a file, not a folder; choose another output folder")
    # Tried, not asked: os.access says yes to root on a read-only mount or in /proc.
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".tfsep-probe.", dir=above))
    except OSError as exc:
        reason = exc.strerror or exc
        raise TfsepError(f"{target}: cannot make a folder in {above} ({reason}); choose another one") from None
    return target


def make_folder(target: str | Path) -> Path:
    """check_output_folder, then `mkdir -p target`: what the operating system still refuses
    (/proc, a full or read-only disk) is a one-line error naming the folder, not an OSError."""
    target = check_output_folder(target)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TfsepError(
            f"{target}: cannot create this folder ({exc.strerror or exc}); choose another output folder"
        ) from None
    return target


def default_mode(target: Path, folder: bool = False) -> int:
    """The permission bits a new file (or folder) gets from the umask, or those of the file it replaces.

    mkstemp/mkdtemp make owner-only temporaries; the renamed result should look like any file the
    user creates (or keep the mode of the one it replaces).
    """
    if target.exists():
        return target.stat().st_mode & 0o777
    return (0o777 if folder else 0o666) & ~_umask()


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    # Reading the umask means setting it: done once (at the first output), not per file.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to `target`; rename it onto `target` only if the block succeeds.

    Whatever goes wrong inside the block (an exception, a failed validation), nothing is left at
    `target` and the temporary file is removed. The file is fsynced before the rename.
    """
    target = check_output_file(target)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=suffix or ".tmp", dir=target.parent if str(target.parent) else "."
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, default_mode(target))
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_folder(target: str | Path) -> Iterator[Path]:
    """Yield a new, empty temporary folder next to `target` to fill; when the block succeeds its
    files are fsynced and it is renamed onto `target`, replacing what was there (the caller
    decides first whether that may be replaced). Whatever goes wrong, `target` stays as it was
    and the temporary folder is removed. Missing folders above `target` are made (`mkdir -p`)."""
    target = check_output_folder(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as exc:
        raise TfsepError(
            f"{target}: cannot write in {target.parent} ({exc.strerror or exc}); choose another output folder"
        ) from None
    try:
        yield tmp
        for path in tmp.rglob("*"):
            if path.is_file():
                with open(path, "rb") as f:
                    os.fsync(f.fileno())
        os.chmod(tmp, default_mode(target, folder=True))  # mkdtemp's folder is owner-only (its files got the umask)
        if target.exists():  # replace an earlier output: move it aside first, then drop it
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, old / target.name)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_bytes_atomic(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(target: str | Path, text: str) -> None:
    write_bytes_atomic(target, text.encode("utf-8"))


class AppendOnlyTable:
    """A text table that is complete up to its last row at every moment: for outputs of streams.

    A stream's timeline (`listen --csv`, `predict --timeline --csv`) may run for days and end by
    SIGTERM, SIGKILL or a power cut, so the atomic rename at the end that every other output gets
    would leave nothing visible until then, and nothing at all if the end never comes. Instead, at
    the first row, the header goes through `atomic_path` (an earlier file is replaced at once by a
    valid table, never truncated in place; a run that fails before its first row leaves it alone),
    then each row is appended whole, one write and flush per row, so a killed process leaves whole
    rows only and the file can be read (or `tail -f`-ed) while it grows. Rows are not fsynced one
    by one (an SD card would pay for it); `close` fsyncs.
    """

    def __init__(self, target: str | Path, header: str):
        self.path = check_output_file(target)
        self.header = header
        self.rows = 0
        self._file = None

    def append(self, row: str) -> None:
        if self._file is None:
            write_text_atomic(self.path, self.header)
            self._file = open(self.path, "a", encoding="utf-8", newline="")
        self._file.write(row)
        self._file.flush()
        self.rows += 1

    def close(self, complete: bool = True) -> None:
        """Flush and fsync; a run that ended well without a row still leaves its (empty) table."""
        if self._file is None:
            if complete:
                write_text_atomic(self.path, self.header)
            return
        if not self._file.closed:
            os.fsync(self._file.fileno())
            self._file.close()
