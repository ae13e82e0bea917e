"""Stage 0: what every stage shares and nothing imports upward from: constants and labels, the
one error type, atomic file writes, progress bars, what kind of artifact a path holds, assets."""
