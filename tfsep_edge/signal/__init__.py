"""Stage 1: audio in (read, mono, resample, 1-s windows) and the one log-mel front end (numpy;
the torch twin lazily). No torch at import."""
