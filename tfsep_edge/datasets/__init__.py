"""Beside the model: the TAU22 layout, synthetic scenes, calibration sets, the waveform cache."""
