"""Where listen's results go: JSON lines or plain lines on stdout, the timeline CSV (appended row
by row), the terminal's status line or one-line notices on stderr, and the run's summary."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tfsep_edge.core.config import LABELS
from tfsep_edge.core.fileio import AppendOnlyTable
from tfsep_edge.runtime.classifier import csv_row
from tfsep_edge.runtime.scoring import Result, Tally


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
