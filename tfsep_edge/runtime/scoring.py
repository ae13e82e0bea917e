"""Window -> Result: classify one window (front end + model, batch 1), smooth the probabilities
over the last N windows, and tally what happened to every window. No torch."""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from tfsep_edge.core.config import LABELS, FrontendConfig
from tfsep_edge.core.errors import check_at_least_one
from tfsep_edge.runtime.classifier import softmax
from tfsep_edge.runtime.stream import Window
from tfsep_edge.signal.frontend import StreamLogMel


@dataclass
class Result:
    """What a sink gets for one window: its classification, or why it was skipped."""

    t: float  # window end, seconds from the start of the stream
    probs: np.ndarray | None = None
    latency_ms: float = 0.0
    skipped: str | None = None
    dropped: int = 0  # windows dropped so far in the run
    level_dbfs: float = -math.inf

    @property
    def label(self) -> str:
        return LABELS[int(np.argmax(self.probs))]

    @property
    def prob(self) -> float:
        return float(np.max(self.probs))


@dataclass
class Tally:
    classified: int = 0
    dropped: int = 0
    skipped: Counter = field(default_factory=Counter)
    scenes: Counter = field(default_factory=Counter)
    compute_seconds: float = 0.0
    audio_seconds: float = 0.0
    overflows: int = 0
    stopped_by: str | None = None  # "SIGINT", "SIGTERM" or "stdout closed" when one ended the run

    @property
    def windows(self) -> int:
        return self.classified + self.dropped + sum(self.skipped.values())

    def count(self, result: Result, seconds: float) -> None:
        self.classified += 1
        self.scenes[result.label] += 1
        self.compute_seconds += seconds

    def as_dict(self, hop_seconds: float) -> dict:
        return {
            "audio_seconds": round(self.audio_seconds, 3),
            "windows": self.windows,
            "classified": self.classified,
            "dropped": self.dropped,
            "skipped": dict(self.skipped),
            "input_overflows": self.overflows,
            "seconds_per_scene": {s: round(n * hop_seconds, 3) for s, n in self.scenes.most_common()},
            "mean_latency_ms": round(1000 * self.compute_seconds / self.classified, 3) if self.classified else None,
            "stopped_by": self.stopped_by,
        }

    def summary_line(self, hop_seconds: float) -> str:
        d = self.as_dict(hop_seconds)
        parts = [f"{d['audio_seconds']:.1f} s of audio", f"{d['windows']} windows", f"{d['classified']} classified"]
        parts.append(f"{d['dropped']} dropped (inference behind)")
        parts += [f"{n} skipped ({why})" for why, n in self.skipped.items()]
        if self.overflows:
            parts.append(f"{self.overflows} input overflows (audio lost before tfsep-edge saw it)")
        line = "listened to " + ", ".join(parts)
        if self.classified:
            total = sum(self.scenes.values())
            scenes = ", ".join(
                f"{s} {n * hop_seconds:.1f} s ({100 * n / total:.0f}%)" for s, n in self.scenes.most_common()
            )
            line += f"; time per scene: {scenes}"
        if self.windows == 0:
            line += "; the stream was shorter than one 1-s window"
        return line


class Smoother:
    """The mean probabilities of the last N classified windows (N = 1: the window's own)."""

    def __init__(self, n: int):
        check_at_least_one("--smooth", n)
        self._last: deque[np.ndarray] = deque(maxlen=n)

    def add(self, probs: np.ndarray) -> np.ndarray:
        self._last.append(probs)
        return probs if len(self._last) == 1 else np.mean(self._last, axis=0)


def level_dbfs(samples: np.ndarray) -> float:
    rms = math.sqrt(float(np.dot(samples, samples)) / max(1, len(samples)))
    return 20 * math.log10(rms) if rms > 0 else -math.inf


def window_probabilities(clf, samples: np.ndarray, frames: StreamLogMel | None = None, end: int = 0) -> np.ndarray:
    """One window's class probabilities: the front end and the model, batch 1 (as predict
    --timeline). With `frames` (the stream's StreamLogMel; `end` the window's last sample + 1),
    only the log-mel frames no earlier window computed are computed: the same log-mel as the whole
    window's. A model with the front end inside takes the samples as they are."""
    if frames is None or getattr(clf, "input_kind", None) != "logmel":  # a wrapper without it: whole window
        return softmax(clf.logits_from_waveforms(samples[None]))[0]
    return softmax(clf.logits_from_logmel(frames(samples, end)[None, None]))[0]


class WindowClassifier:
    """Window -> Result with the classifier, the smoother and a running tally."""

    def __init__(self, clf, smooth: int, cfg: FrontendConfig):
        self.clf, self.cfg = clf, cfg
        self.frames = StreamLogMel(cfg)  # the log-mel frames windows share (hops of whole frame hops)
        self.smoother = Smoother(smooth)
        self.tally = Tally()

    def __call__(self, window: Window, dropped_before: int = 0) -> Result:
        tally = self.tally
        tally.dropped += dropped_before
        t = window.end / self.cfg.sample_rate
        if window.problem is not None:
            tally.skipped[window.problem] += 1
            return Result(t, skipped=window.problem, dropped=tally.dropped)
        start = time.perf_counter()
        probs = window_probabilities(self.clf, window.samples, self.frames, window.end)
        seconds = time.perf_counter() - start
        result = Result(t, self.smoother.add(probs), 1000 * seconds, dropped=tally.dropped)
        result.level_dbfs = level_dbfs(window.samples)
        tally.count(result, seconds)
        return result
