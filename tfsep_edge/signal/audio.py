"""Read any WAV, downmix, resample to the front end's rate, cut/pad into 1-s windows. No torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfsep_edge.core.config import DEFAULT_FRONTEND, FrontendConfig
from tfsep_edge.core.errors import TfsepError, first_line

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


# One quality setting for the whole-file and the streaming resampler: same soxr filter, same output.
RESAMPLE_QUALITY = "HQ"


def resample(wave: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited resampling with soxr (high quality), float32 out."""
    if orig_rate == target_rate:
        return wave.astype(np.float32, copy=False)
    import soxr

    return soxr.resample(wave.astype(np.float32, copy=False), orig_rate, target_rate, quality=RESAMPLE_QUALITY).astype(
        np.float32, copy=False
    )


class StreamResampler:
    """`resample` block by block, for streams that are never whole (a microphone, stdin, a long file).

    soxr's streaming resampler with the same filter as `resample`; it keeps its state between
    blocks and compensates its delay, so the blocks' outputs concatenated are the whole-signal
    output (tests/test_listen.py checks it). Output comes in bursts: a block may give no samples
    and a later one more than its share. `last=True` flushes what the filter still holds.
    """

    def __init__(self, orig_rate: int, target_rate: int):
        self.orig_rate, self.target_rate = orig_rate, target_rate
        self._stream = None
        if orig_rate != target_rate:
            import soxr

            self._stream = soxr.ResampleStream(orig_rate, target_rate, 1, dtype="float32", quality=RESAMPLE_QUALITY)

    def process(self, mono: np.ndarray, last: bool = False) -> np.ndarray:
        mono = mono.astype(np.float32, copy=False)
        if self._stream is None:
            return mono
        return self._stream.resample_chunk(mono, last=last).astype(np.float32, copy=False)


def downmix(data: np.ndarray) -> np.ndarray:
    """(frames, channels) -> (frames,) mono, the mean of the channels (files and streams alike)."""
    return data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]


def check_wav_complete(path: Path) -> None:
    """TfsepError if a RIFF/WAVE file holds fewer audio bytes than its header declares.

    libsndfile silently reads what is there, so a half-copied file would otherwise be classified
    on its first few milliseconds. Sizes of 0 or 0xFFFFFFFF (streaming writers) mean "unknown".
    """
    import struct

    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return  # not RIFF/WAVE (or not a WAV at all): left to soundfile
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"data":
                have = size - pos - 8
                if chunk_size not in (0, 0xFFFFFFFF) and chunk_size > have:
                    raise TfsepError(
                        f"{path}: truncated WAV (header declares {chunk_size} bytes of audio, the file holds "
                        f"{have}); copy or export the file again"
                    )
                return
            pos += 8 + chunk_size + (chunk_size & 1)


def open_audio_file(path: str | Path):
    """An open soundfile.SoundFile; TfsepError (naming the file) if it is missing, truncated or not audio."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise TfsepError(f"{path}: no such audio file")
    check_wav_complete(path)
    try:
        return sf.SoundFile(str(path))
    except Exception as exc:  # soundfile raises several types for broken files
        raise unreadable_audio(path, exc) from None


def unreadable_audio(path: Path, exc: BaseException) -> TfsepError:
    return TfsepError(f"{path}: cannot read as audio ({first_line(exc)}); re-export it as a WAV file")


def load_audio(path: str | Path, cfg: FrontendConfig = DEFAULT_FRONTEND) -> np.ndarray:
    """Mono float32 waveform at cfg.sample_rate; TfsepError (naming the file) on bad audio."""
    path = Path(path)
    with open_audio_file(path) as f:
        try:
            data, rate = f.read(dtype="float32", always_2d=True), f.samplerate
        except Exception as exc:  # a header that opened over data that does not decode
            raise unreadable_audio(path, exc) from None
    if data.shape[0] == 0:
        raise TfsepError(f"{path}: has 0 samples; nothing to classify")
    if not np.isfinite(data).all():
        raise TfsepError(f"{path}: contains NaN or infinite samples; re-export the audio")
    mono = downmix(data)
    if not np.any(mono):
        raise TfsepError(f"{path}: is digital silence (all samples zero); nothing to classify")
    return resample(mono, rate, cfg.sample_rate)


def split_windows(wave: np.ndarray, cfg: FrontendConfig = DEFAULT_FRONTEND) -> np.ndarray:
    """(n_windows, clip_samples): a short clip is zero-padded, a long one cut into 1-s windows.

    A trailing remainder shorter than half a window is dropped (unless it is all there is),
    so a clip of 1.01 s is not judged on a window that is 99% padding.
    """
    n = cfg.clip_samples
    full, rest = divmod(len(wave), n)
    count = full + (1 if rest >= n // 2 or full == 0 else 0)
    out = np.zeros((count, n), dtype=np.float32)
    usable = min(len(wave), count * n)
    out.reshape(-1)[:usable] = wave[:usable]
    return out


def find_audio(paths: list[str | Path]) -> list[Path]:
    """Expand files and folders (recursively) into a sorted list of audio files."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(q for q in p.rglob("*") if q.suffix.lower() in AUDIO_SUFFIXES and q.is_file()))
        elif p.exists():
            found.append(p)
        else:
            raise TfsepError(f"{p}: no such file or folder")
    return found
