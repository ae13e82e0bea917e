"""Listen: classify a live or long audio stream window by window, at constant memory. No torch.

    source blocks (sources.py: a file, stdin, a PortAudio device; native rate and channels)
      -> Conditioner: audio.downmix + audio.StreamResampler (the project's one audio path)
      -> WindowStream: a fixed ring buffer; a 1-s window ends every --hop seconds
      -> the classifier (numpy log-mel + onnxruntime or LiteRT), batch 1 -> Smoother (--smooth N)
      -> sinks: JSON lines, the timeline CSV, plain lines, the terminal's status line; a Tally

Two ways to drive it. Pull (a file as fast as it reads, stdin by default): the source waits for
the classifier, every window is classified. Live (a microphone, `--realtime`): the source never
waits; a producer thread (PortAudio's callback, or a reader) writes into the ring buffer and the
classifier takes the newest due window, so windows it had no time for are dropped and counted.
Memory is the ring buffer (one window plus one hop), the resampler's state and the last N
probabilities, whatever the length of the stream.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tfsep_edge.core.config import DEFAULT_FRONTEND, LABELS, NUM_CLASSES, FrontendConfig
from tfsep_edge.core.errors import TfsepError, check_at_least_one
from tfsep_edge.core.fileio import AppendOnlyTable, check_output_file
from tfsep_edge.runtime.classifier import audio_entries, csv_row, open_classifier, softmax, top_line
from tfsep_edge.runtime.sources import DeviceSource, FileSource, import_sounddevice, list_input_devices, open_source
from tfsep_edge.signal.audio import StreamResampler, downmix

DEFAULT_HOP = 0.5
# Output samples around a non-finite input sample that its zeroed replacement disturbs (the
# resampler's filter rings for a few hundred samples on each side of a step).
BAD_SPAN_MARGIN = 512
NO_AUDIO_TIMEOUT_S = 10.0  # a live source that delivers nothing for this long is an error


# --- options -------------------------------------------------------------------------------


def check_hop(hop: float, cfg: FrontendConfig = DEFAULT_FRONTEND) -> int:
    """--hop in seconds -> samples at the front end's rate; TfsepError unless 0 < hop <= 1 window."""
    if not 0 < hop <= cfg.clip_seconds:  # also refuses NaN
        raise TfsepError(f"--hop {hop}: must be more than 0 and at most {cfg.clip_seconds:g} (seconds between windows)")
    samples = round(hop * cfg.sample_rate)
    if samples < 1:
        raise TfsepError(f"--hop {hop}: shorter than one sample at {cfg.sample_rate} Hz")
    return samples


# --- conditioning and windowing ------------------------------------------------------------


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


# --- classification ------------------------------------------------------------------------


class Smoother:
    """The mean probabilities of the last N classified windows (N = 1: the window's own)."""

    def __init__(self, n: int):
        check_at_least_one("--smooth", n)
        self._last: deque[np.ndarray] = deque(maxlen=n)

    def add(self, probs: np.ndarray) -> np.ndarray:
        self._last.append(probs)
        return probs if len(self._last) == 1 else np.mean(self._last, axis=0)


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


def level_dbfs(samples: np.ndarray) -> float:
    rms = math.sqrt(float(np.dot(samples, samples)) / max(1, len(samples)))
    return 20 * math.log10(rms) if rms > 0 else -math.inf


class WindowClassifier:
    """Window -> Result with the classifier, the smoother and a running tally."""

    def __init__(self, clf, smooth: int, cfg: FrontendConfig):
        self.clf, self.cfg = clf, cfg
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
        probs = softmax(self.clf.logits_from_waveforms(window.samples[None]))[0]  # batch 1, as predict --timeline
        seconds = time.perf_counter() - start
        result = Result(t, self.smoother.add(probs), 1000 * seconds, dropped=tally.dropped)
        result.level_dbfs = level_dbfs(window.samples)
        tally.count(result, seconds)
        return result


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


# --- sinks ---------------------------------------------------------------------------------


def result_json(result: Result) -> str:
    if result.skipped is not None:
        return json.dumps({"t": round(result.t, 3), "skipped": result.skipped, "dropped": result.dropped})
    record = {
        "t": round(result.t, 3),
        "label": result.label,
        "prob": round(result.prob, 6),
        "probs": [round(float(p), 6) for p in result.probs],
        "latency_ms": round(result.latency_ms, 3),
        "dropped": result.dropped,
    }
    return json.dumps(record)


def result_text(result: Result) -> str:
    if result.skipped is not None:
        return f"{result.t:.3f}\tskipped: {result.skipped}"
    return f"{result.t:.3f}\t{result.label} {result.prob:.3f}\t{result.latency_ms:.1f} ms"


def timeline_header() -> str:
    return "\t".join(["filename", "t", "scene_label", *LABELS]) + "\n"


def timeline_row(name: str, result: Result) -> str:
    """A row of the DCASE output columns with the window's end time after the file name."""
    return csv_row(f"{name}\t{result.t:.3f}", result.probs)


class StatusLine:
    """The terminal's one updating line (stderr, only on a terminal)."""

    def __init__(self, stream, hop_seconds: float):
        self.stream, self.hop_seconds = stream, hop_seconds

    def show(self, result: Result, overflows: int) -> None:
        if result.skipped is not None:
            text = f"t {result.t:8.1f} s  skipped: {result.skipped}"
        else:
            rtf = result.latency_ms / 1000 / self.hop_seconds
            text = (
                f"t {result.t:8.1f} s  {result.label:<17} {result.prob:.2f}  {result.latency_ms:6.1f} ms  "
                f"rtf {rtf:.3f}  level {result.level_dbfs:6.1f} dBFS"
            )
        text += f"  dropped {result.dropped}" + (f"  overflows {overflows}" if overflows else "")
        self.stream.write("\r\x1b[2K" + text)
        self.stream.flush()

    def clear(self) -> None:
        self.stream.write("\r\x1b[2K")
        self.stream.flush()


class ProblemNotices:
    """One stderr line when windows start being skipped for a reason, one when that run ends."""

    def __init__(self, stream):
        self.stream = stream
        self.reason: str | None = None
        self.count, self.since = 0, 0.0

    def see(self, result: Result) -> None:
        if result.skipped == self.reason:
            self.count += result.skipped is not None
            return
        self.close()
        if result.skipped is not None:
            self.reason, self.count, self.since = result.skipped, 1, result.t
            print(f"t={result.t:.2f} s: {result.skipped}; skipping windows until it ends", file=self.stream)

    def close(self) -> None:
        if self.reason is not None:
            print(f"{self.reason} from t={self.since:.2f} s: {self.count} windows skipped", file=self.stream)
        self.reason, self.count = None, 0


class Sinks:
    """Where each Result goes: stdout (JSON lines or plain lines), the CSV, the status line."""

    def __init__(self, name: str, hop_seconds: float, as_json: bool, csv: Path | None, out=None, err=None):
        self.name, self.as_json = name, as_json
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        terminal_out = _isatty(self.out)
        self.lines = as_json or not terminal_out  # a terminal gets the status line instead
        show_status = _isatty(self.err) and not (as_json and terminal_out)  # JSON on the same terminal: no
        self.status = StatusLine(self.err, hop_seconds) if show_status else None
        self.notices = ProblemNotices(self.err)
        self.table = None
        if csv is not None:
            self.table = AppendOnlyTable(csv, timeline_header())

    def write(self, result: Result, overflows: int = 0) -> None:
        if self.lines:
            self.out.write((result_json(result) if self.as_json else result_text(result)) + "\n")
            self.out.flush()
        if self.table is not None and result.skipped is None:
            self.table.append(timeline_row(self.name, result))
        if self.status is not None:
            self.status.show(result, overflows)
        elif result.skipped is not None or self.notices.reason is not None:
            self.notices.see(result)

    def close(self, complete: bool = True) -> None:
        if self.status is not None:
            self.status.clear()
        self.notices.close()
        if self.table is not None:
            self.table.close(complete)


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


# --- the two drivers -----------------------------------------------------------------------


def run_pull(source, windows: WindowStream, handle: Callable[[Window, int], None]) -> None:
    """Every window of `source`, in order: the source waits while a window is classified."""
    conditioner = Conditioner(source.rate, windows.cfg)

    def feed(samples: np.ndarray, bad) -> None:
        for piece in pieces(samples, windows.hop):  # at most one hop per write: see WindowStream
            windows.write(piece, bad)
            bad = None
            while windows.due():
                handle(windows.pop(), 0)

    for block in source.blocks():
        feed(*conditioner.process(block))
    feed(*conditioner.process(np.zeros((0, source.channels), np.float32), last=True))
    source.check_end()


class LiveFeed:
    """The producer side of live mode: a thread-safe WindowStream that the source writes into."""

    def __init__(self, windows: WindowStream, rate: int):
        self.windows = windows
        self.conditioner = Conditioner(rate, windows.cfg)  # used by the producer thread only
        self.cond = threading.Condition()
        self.ended = False
        self.error: BaseException | None = None

    def push(self, block: np.ndarray) -> None:
        samples, bad = self.conditioner.process(block)
        with self.cond:
            self.windows.write(samples, bad)
            self.cond.notify()

    def finish(self, error: BaseException | None = None) -> None:
        with self.cond:
            self.ended, self.error = True, self.error or error
            self.cond.notify()

    def next_window(self, timeout: float) -> tuple[Window | None, int, bool]:
        """(newest due window or None, windows it skips, whether the stream has ended)."""
        with self.cond:
            self.cond.wait_for(lambda: self.windows.due() or self.ended, timeout)
            if self.error is not None:
                raise self.error
            if not self.windows.due():
                return None, 0, self.ended
            window, skipped = self.windows.pop_newest()
            return window, skipped, False


def read_source_into(source, feed: LiveFeed, paced: bool) -> None:
    """Producer thread for file and stdin sources; `paced` holds each block until its time has
    come, as a microphone would deliver it."""
    start, frames = time.monotonic(), 0
    try:
        for block in source.blocks():
            frames += len(block)
            if paced:
                time.sleep(max(0.0, start + frames / source.rate - time.monotonic()))
            feed.push(block)
        samples, _ = feed.conditioner.process(np.zeros((0, source.channels), np.float32), last=True)
        with feed.cond:
            feed.windows.write(samples)
        source.check_end()
        feed.finish()
    except BaseException as exc:  # noqa: BLE001 -- handed to the consumer, which raises it
        feed.finish(exc)


def run_live(source, windows: WindowStream, handle: Callable[[Window, int], None], paced: bool = False) -> None:
    """The newest due window each time the classifier is free; older ones are dropped (counted).

    `source` is a DeviceSource (PortAudio pushes from its own thread) or a file/stdin source read
    by a producer thread here.
    """
    feed = LiveFeed(windows, source.rate)
    if isinstance(source, DeviceSource):
        source.start(feed.push, feed.finish)
    else:
        threading.Thread(target=read_source_into, args=(source, feed, paced), daemon=True, name="listen-source").start()
    last_audio = time.monotonic()
    seen = 0
    try:
        while True:
            window, skipped, ended = feed.next_window(timeout=0.5)
            if window is not None:
                handle(window, skipped)
            elif ended:
                return
            if feed.windows.total != seen:  # read without the lock: an int, only compared
                seen, last_audio = feed.windows.total, time.monotonic()
            elif isinstance(source, DeviceSource) and (
                not source.alive() or time.monotonic() - last_audio > NO_AUDIO_TIMEOUT_S
            ):
                raise TfsepError(
                    f"--device {source.spec} ({source.name}): delivered no audio for "
                    f"{time.monotonic() - last_audio:.0f} s (unplugged, or held by another program?)"
                )
    finally:
        if isinstance(source, DeviceSource):
            source.stop()


# --- commands ------------------------------------------------------------------------------


def list_devices_command() -> int:
    devices = list_input_devices(import_sounddevice())
    if not devices:
        print("no input devices (PortAudio sees none): plug in a microphone and check `arecord -l`")
    for d in devices:
        mark = "*" if d["default"] else " "
        print(f"{mark} {d['index']:3d}  {d['name']}  ({d['channels']} in, {d['rate']} Hz)")
    return 0


def listen_command(
    model: Path,
    device: str | None = None,
    input_: str | None = None,
    hop: float = DEFAULT_HOP,
    smooth: int = 1,
    threads: int = 1,
    as_json: bool = False,
    csv: Path | None = None,
    realtime: bool = False,
    rate: int | None = None,
    channels: int | None = None,
    pcm_format: str = "s16le",
) -> int:
    """`tfsep-edge listen`: every check before the model loads, then windows until the stream
    ends or Ctrl-C/SIGTERM; the summary on stderr (and as the last JSON line with --json)."""
    check_hop(hop)
    check_at_least_one("--smooth", smooth)
    check_at_least_one("--threads", threads)
    if csv is not None:
        check_output_file(csv)
    source = open_source(device, input_, rate, channels, pcm_format)
    clf = open_classifier(model, threads=threads)
    cfg = clf.frontend
    hop_samples = check_hop(hop, cfg)
    live = realtime or isinstance(source, DeviceSource)
    classify = WindowClassifier(clf, smooth, cfg)
    windows = WindowStream(hop_samples, cfg)
    sinks = Sinks(source.name, hop_samples / cfg.sample_rate, as_json, csv)
    tally = classify.tally
    stopper = stop_on_signals()

    def handle(window: Window, dropped_before: int) -> None:
        with stopper.deferred():  # a window is counted and written whole, or not at all
            if not tally.windows:  # said once audio flows: an error before it stays one line
                print(describe(source, cfg, live), file=sys.stderr, flush=True)
            sinks.write(classify(window, dropped_before), getattr(source, "overflows", 0))

    with stopper:
        failed = True
        try:
            if live:
                run_live(source, windows, handle, paced=realtime and isinstance(source, FileSource))
            else:
                run_pull(source, windows, handle)
            failed = False
        except StopListening as stop:
            tally.stopped_by, failed = stop.reason, False
        except BrokenPipeError:  # `listen ... | head`: the reader is gone
            tally.stopped_by, failed = "stdout closed", False
            silence_stdout()
        finally:
            stopper.ignore()  # the summary is written whatever signal comes now
            tally.audio_seconds = windows.total / cfg.sample_rate
            tally.overflows = getattr(source, "overflows", 0)
            sinks.close(complete=not failed)
            if tally.windows or not failed:  # an error before any window stays a one-line error
                report(tally, hop_samples / cfg.sample_rate, as_json and tally.stopped_by != "stdout closed", csv)
    return 0


def describe(source, cfg: FrontendConfig, live: bool) -> str:
    mode = "live: windows the classifier has no time for are dropped" if live else "every window"
    return (
        f"listening to {source.name} ({source.rate} Hz, {source.channels} ch -> {cfg.sample_rate} Hz mono; "
        f"{mode}); Ctrl-C to stop"
    )


def report(tally: Tally, hop_seconds: float, as_json: bool, csv: Path | None) -> None:
    line = tally.summary_line(hop_seconds)
    if tally.stopped_by:
        line = f"stopped ({tally.stopped_by}): " + line
    print(line + (f"; wrote {csv}" if csv is not None else ""), file=sys.stderr, flush=True)
    if as_json:
        try:
            print(json.dumps({"summary": tally.as_dict(hop_seconds)}), flush=True)
        except BrokenPipeError:
            pass


class StopListening(Exception):
    """Ctrl-C or SIGTERM: the run ends cleanly, with its summary."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class stop_on_signals:
    """SIGINT and SIGTERM raise StopListening in the main thread, so that a blocking read or wait
    is interrupted too; inside `deferred()` (one window being classified and written) the stop
    waits for the block to end. After the first signal, or `ignore()`, signals are ignored."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self._depth = 0
        self._pending: str | None = None
        self._saved: dict = {}

    def __enter__(self):
        self._saved = {sig: signal.getsignal(sig) for sig in self.SIGNALS}
        for sig in self.SIGNALS:
            signal.signal(sig, self._on_signal)
        return self

    def _on_signal(self, signum, frame):
        self.ignore()
        self._pending = signal.Signals(signum).name
        if self._depth == 0:
            raise StopListening(self._pending)

    def ignore(self) -> None:
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_IGN)

    @contextlib.contextmanager
    def deferred(self):
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if self._pending and self._depth == 0:
            raise StopListening(self._pending)

    def __exit__(self, exc_type, exc, tb):
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        return False


def silence_stdout() -> None:
    """Point stdout at /dev/null, so that Python's flush at exit does not fail a second time."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


# --- predict --timeline --------------------------------------------------------------------


def timeline_command(model: Path, audio: list[Path], csv: Path | None, hop: float, top: int, threads: int) -> int:
    """`tfsep-edge predict --timeline`: each file streamed through listen's pull path (batch 1,
    no smoothing), so its rows equal `listen --input FILE --hop H`. Returns 0, or 1 if a file
    could not be classified (reported and skipped)."""
    check_at_least_one("--threads", threads)
    if not 1 <= top <= NUM_CLASSES:
        raise TfsepError(f"--top {top}: must be between 1 and {NUM_CLASSES}")
    check_hop(hop)
    if csv is not None:
        check_output_file(csv)
    entries = audio_entries(audio)
    if not entries:
        raise TfsepError("no audio files given; pass WAV files or folders")
    clf = open_classifier(model, threads=threads)
    hop_samples = check_hop(hop, clf.frontend)
    table = AppendOnlyTable(csv, timeline_header()) if csv is not None else None
    errors: list[str] = []
    try:
        for path, name in entries:
            try:
                file_timeline(clf, path, name, hop_samples, top, table)
            except TfsepError as exc:
                errors.append(str(exc))
                if len(entries) > 1:  # a lone file's error becomes the one-line exit-2 error below
                    print(f"error: {exc}; skipped", file=sys.stderr)
    finally:
        if table is not None:
            table.close(complete=len(errors) < len(entries))
    if len(errors) == len(entries):
        raise TfsepError(errors[0] if len(entries) == 1 else f"none of the {len(entries)} audio files could be read")
    done = len(entries) - len(errors)
    summary = f"timeline of {done} of {len(entries)} files" + (f", {len(errors)} failed" if errors else "")
    print(summary + (f"; wrote {csv}" if csv is not None else ""), file=sys.stderr)
    return 1 if errors else 0


def file_timeline(clf, path: Path, name: str, hop_samples: int, top: int, table) -> None:
    """One file's timeline to stdout (and `table`): listen's pull path, batch 1, no smoothing."""
    classify = WindowClassifier(clf, 1, clf.frontend)

    def handle(window: Window, _dropped: int) -> None:
        result = classify(window)
        if result.skipped is not None:
            print(f"{name}\t{result.t:.3f}\tskipped: {result.skipped}")
            return
        print(top_line(f"{name}\t{result.t:.3f}", result.probs, top))
        if table is not None:
            table.append(timeline_row(name, result))

    run_pull(FileSource(path), WindowStream(hop_samples, clf.frontend), handle)
    if classify.tally.windows == 0:
        raise TfsepError(f"{path}: shorter than one {clf.frontend.clip_seconds:g}-s window; no timeline")
