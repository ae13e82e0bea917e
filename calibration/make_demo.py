"""Regenerate tfsep_edge/assets/calibration/: the small bundled SYNTHETIC calibration set for the demo.

30 one-second clips (3 per scene class), devices cycled over the six training devices
(a, b, c, s1, s2, s3), written as 32 kHz mono 16-bit WAVs (the front end's rate, so no
resampling), file names in the TAU style `<scene>-synthdemo-<i>-<device>.wav`. Deterministic:
clip i is drawn from numpy's default_rng([SEED, i]) through tfsep_edge.datasets.synth.synth_clip.

    .venv/bin/python calibration/make_demo.py
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

from tfsep_edge.core.config import DEFAULT_FRONTEND, LABELS, SEEN_DEVICES
from tfsep_edge.datasets.synth import RATE, synth_clip
from tfsep_edge.signal.audio import resample

SEED = 2023
PER_CLASS = 3
OUT = Path(__file__).resolve().parents[1] / "tfsep_edge" / "assets" / "calibration"  # package data


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir()
    i = 0
    for label in LABELS:
        for _ in range(PER_CLASS):
            device = SEEN_DEVICES[i % len(SEEN_DEVICES)]
            wave = synth_clip(label, device, np.random.default_rng([SEED, i]))
            wave = resample(wave, RATE, DEFAULT_FRONTEND.sample_rate)
            sf.write(OUT / f"{label}-synthdemo-{i}-{device}.wav", wave, DEFAULT_FRONTEND.sample_rate, subtype="PCM_16")
            i += 1
    print(f"wrote {i} SYNTHETIC clips to {OUT}")


if __name__ == "__main__":
    main()
