"""`tfsep-edge listen`: classify a live or long audio stream window by window, at constant
memory, until it ends or Ctrl-C/SIGTERM. No torch.

    source blocks (sources.py: a file, stdin, a PortAudio device)
      -> stream.py: conditioned to mono at the front end's rate, a 1-s window every --hop seconds
      -> scoring.py: the classifier (numpy log-mel + onnxruntime or LiteRT), batch 1, --smooth N
      -> sinks.py: JSON lines, the timeline CSV, plain lines, the terminal's status line; a Tally

drivers.py takes the windows: pull (every window; files and stdin) or live (the newest window,
older ones dropped and counted; a microphone, `--realtime`). Memory is the ring buffer (one
window plus one hop), the resampler's state and the last N probabilities.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

from tfsep_edge.core.config import FrontendConfig
from tfsep_edge.core.errors import check_at_least_one
from tfsep_edge.core.fileio import check_output_file
from tfsep_edge.runtime.classifier import open_classifier
from tfsep_edge.runtime.drivers import run_live, run_pull
from tfsep_edge.runtime.scoring import WindowClassifier
from tfsep_edge.runtime.sinks import Sinks, report
from tfsep_edge.runtime.sources import DeviceSource, FileSource, import_sounddevice, list_input_devices, open_source
from tfsep_edge.runtime.stream import DEFAULT_HOP, Window, WindowStream, check_hop


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
