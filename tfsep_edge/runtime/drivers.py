"""The two ways windows are taken from a source and handed to the classifier. No torch.

Pull (a file as fast as it reads, stdin by default): the source waits for the classifier, every
window is classified. Live (a microphone, `--realtime`): the source never waits; a producer
thread (PortAudio's callback, or a reader) writes into the ring buffer and the classifier takes
the newest due window, so windows it had no time for are dropped and counted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from tfsep_edge.core.errors import TfsepError
from tfsep_edge.runtime.sources import DeviceSource
from tfsep_edge.runtime.stream import Conditioner, Window, WindowStream, pieces

NO_AUDIO_TIMEOUT_S = 10.0  # a live source that delivers nothing for this long is an error


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
