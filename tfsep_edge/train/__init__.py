"""The report's training recipe: augmentations and the loop (read loop.py top to bottom)."""
