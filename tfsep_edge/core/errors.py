"""The one exception type for errors a user can cause (bad files, bad options)."""


class TfsepError(Exception):
    """A user-facing error: the message names the file or value and the fix.

    The CLI prints it as one line on stderr and exits with code 2.
    """


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """An exception's message reduced to its first line (at most `limit` characters), or the
    exception's type name when it has no message: the reason part of a one-line error."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


def check_at_least_one(option: str, value: int | None) -> None:
    """One-line error for a count option below 1 (`--threads 0`); None means "not given"."""
    if value is not None and value < 1:
        raise TfsepError(f"{option} {value}: must be at least 1")
