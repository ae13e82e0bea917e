"""Progress bars, one definition: to stderr, gone when done, and only on a terminal.

Piped into a log file, tqdm's carriage-return redraws turn into thousands of lines; there the
bar stays off and the commands' own summary lines say what happened.
"""

from __future__ import annotations

import sys


def progress_bar(total: int, desc: str | None = None, unit: str = "it", enabled: bool = True):
    """A tqdm bar on stderr, disabled unless `enabled` and stderr is a terminal."""
    from tqdm import tqdm

    return tqdm(
        total=total, desc=desc, unit=unit, file=sys.stderr, disable=not (enabled and _on_terminal()), leave=False
    )


def _on_terminal() -> bool:
    try:
        return bool(sys.stderr and sys.stderr.isatty())
    except (AttributeError, ValueError):  # no stderr, or a closed one
        return False
