"""Audio in, 1-s windows out: a source's blocks conditioned to the front end's rate and mono,
held in a ring buffer, cut into one window every hop, each with what is wrong with it. No torch.

    source blocks (sources.py: native rate and channels)
      -> Conditioner: audio.downmix + audio.StreamResampler (the project's one audio path)
      -> WindowStream: a fixed ring buffer (one window plus one hop); a window ends every hop

Memory is the ring buffer and the resampler's state, whatever the length of the stream.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from tfsep_edge.core.config import DEFAULT_FRONTEND, FrontendConfig
from tfsep_edge.core.errors import TfsepError
from tfsep_edge.signal.audio import StreamResampler, downmix

DEFAULT_HOP = 0.5  # seconds between windows, listen's and predict --timeline's default
# Output samples around a non-finite input sample that its zeroed replacement disturbs (the
# resampler's filter rings for a few hundred samples on each side of a step).
BAD_SPAN_MARGIN = 512


def check_hop(hop: float, cfg: FrontendConfig = DEFAULT_FRONTEND) -> int:
    """--hop in seconds -> samples at the front end's rate; TfsepError unless 0 < hop <= 1 window."""
    if not 0 < hop <= cfg.clip_seconds:  # also refuses NaN
        raise TfsepError(f"--hop {hop}: must be more than 0 and at most {cfg.clip_seconds:g} (seconds between windows)")
    samples = round(hop * cfg.sample_rate)
    if samples < 1:
        raise TfsepError(f"--hop {hop}: shorter than one sample at {cfg.sample_rate} Hz")
    return samples


class Conditioner:
    """Source blocks -> mono float32 at the front end's rate, and where non-finite input was.

    Non-finite samples are replaced by zeros before the resampler (a NaN would otherwise spread
    through its filter); the output span they touched is returned so that the windows over it are
    reported and skipped instead of classified.
    """

    def __init__(self, rate: int, cfg: FrontendConfig = DEFAULT_FRONTEND):
        self.resampler = StreamResampler(rate, cfg.sample_rate)
        self.ratio = cfg.sample_rate / rate
        self.consumed = 0  # input frames so far

    def process(self, block: np.ndarray, last: bool = False) -> tuple[np.ndarray, tuple[int, int] | None]:
        mono = downmix(block) if len(block) else np.zeros(0, np.float32)
        bad = None
        finite = np.isfinite(mono)
        if not finite.all():
            where = np.flatnonzero(~finite)
            first, past = self.consumed + int(where[0]), self.consumed + int(where[-1]) + 1
            bad = (math.floor(first * self.ratio) - BAD_SPAN_MARGIN, math.ceil(past * self.ratio) + BAD_SPAN_MARGIN)
            mono = np.where(finite, mono, np.float32(0))
        self.consumed += len(mono)
        return self.resampler.process(mono, last=last), bad


class RingBuffer:
    """The last `capacity` samples of an endless stream, in a fixed array, and how many came in all."""

    def __init__(self, capacity: int):
        self._data = np.zeros(capacity, np.float32)
        self.total = 0

    @property
    def capacity(self) -> int:
        return len(self._data)

    def write(self, samples: np.ndarray) -> None:
        cap, n = self.capacity, len(samples)
        keep = samples[-cap:]  # a write longer than the buffer leaves only its tail
        start = (self.total + n - len(keep)) % cap
        first = min(len(keep), cap - start)
        self._data[start : start + first] = keep[:first]
        self._data[: len(keep) - first] = keep[first:]
        self.total += n

    def read(self, end: int, length: int) -> np.ndarray:
        """A copy of samples [end - length, end) of the stream; they must still be held."""
        if not (end <= self.total and end - length >= self.total - self.capacity and length <= self.capacity):
            raise IndexError(f"samples [{end - length}, {end}) not held (written {self.total}, held {self.capacity})")
        start = (end - length) % self.capacity
        if start + length <= self.capacity:
            return self._data[start : start + length].copy()
        return np.concatenate([self._data[start:], self._data[: start + length - self.capacity]])


@dataclass
class Window:
    end: int  # sample index (front-end rate) one past the window's last sample
    samples: np.ndarray
    problem: str | None  # why it is not classified, or None


class WindowStream:
    """Samples in; a 1-s window every hop out, with what is wrong with it, if anything.

    The ring holds one window plus one hop: enough, because windows are taken either in order
    right after each write of at most one hop (pull), or the newest due one at once (live).
    """

    def __init__(self, hop: int, cfg: FrontendConfig = DEFAULT_FRONTEND):
        self.cfg, self.hop, self.clip = cfg, hop, cfg.clip_samples
        self.ring = RingBuffer(self.clip + hop)
        self.next_end = self.clip
        self._bad: deque[tuple[int, int]] = deque()

    @property
    def total(self) -> int:
        return self.ring.total

    def write(self, samples: np.ndarray, bad: tuple[int, int] | None = None) -> None:
        if bad is not None:
            self._bad.append(bad)
        self.ring.write(samples)
        while self._bad and self._bad[0][1] <= self.total - self.ring.capacity:
            self._bad.popleft()  # spans no held window can touch any more

    def due(self) -> bool:
        return self.next_end <= self.total

    def pop(self) -> Window:
        """The next due window, in order (pull mode)."""
        end = self.next_end
        self.next_end += self.hop
        samples = self.ring.read(end, self.clip)
        return Window(end, samples, self._problem(end, samples))

    def pop_newest(self) -> tuple[Window, int]:
        """The newest due window and how many older due windows it skips (live mode: dropped)."""
        skipped = (self.total - self.next_end) // self.hop
        self.next_end += skipped * self.hop
        return self.pop(), skipped

    def _problem(self, end: int, samples: np.ndarray) -> str | None:
        start = end - self.clip
        if any(lo < end and hi > start for lo, hi in self._bad):
            return "NaN or infinite samples"
        if not samples.any():
            return "digital silence (all samples zero)"
        return None


def pieces(samples: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for i in range(0, len(samples), size):
        yield samples[i : i + size]
