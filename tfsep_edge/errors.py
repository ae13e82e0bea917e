"""The one exception type for errors a user can cause (bad files, bad options)."""


class TfsepError(Exception):
    """A user-facing error: the message names the file or value and the fix.

    The CLI prints it as one line on stderr and exits with code 2.
    """
