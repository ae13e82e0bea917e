"""`tfsep-edge predict --timeline`: each file streamed through listen's pull path (batch 1, no
smoothing), so its rows equal `listen --input FILE --hop H`. No torch."""

from __future__ import annotations

import sys
from pathlib import Path

from tfsep_edge.core.config import NUM_CLASSES
from tfsep_edge.core.errors import TfsepError, check_at_least_one
from tfsep_edge.core.fileio import AppendOnlyTable, check_output_file
from tfsep_edge.runtime.classifier import audio_entries, open_classifier, top_line
from tfsep_edge.runtime.drivers import run_pull
from tfsep_edge.runtime.scoring import WindowClassifier
from tfsep_edge.runtime.sinks import timeline_header, timeline_row
from tfsep_edge.runtime.sources import FileSource
from tfsep_edge.runtime.stream import Window, WindowStream, check_hop


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
