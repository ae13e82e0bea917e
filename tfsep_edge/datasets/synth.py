"""A small SYNTHETIC data set in the TAU22 layout, for the demo and the tests. No torch.

Ten scene classes (the TAU22 labels) are synthetic sound textures built from a handful of
ingredients (coloured noise, engine hums, babble, tonal events, clicks, chirps). Each class
mixes its own ingredients with a random amount of another class's texture and a random
spectral tilt, so classes overlap a little and accuracy is informative rather than 100%.
Devices are fixed filters (and a little noise) applied after synthesis: device a is flat,
b, c and s1..s6 colour the spectrum differently; s4..s6 appear only in the evaluate split.

Everything is deterministic for a seed: clip i is drawn from `default_rng([seed, i])`.
Nothing about it is real data; the folder's README.txt and meta.csv say so.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from tfsep_edge.core.config import DEVICES, LABELS, SEEN_DEVICES
from tfsep_edge.core.errors import TfsepError

RATE = 44_100  # TAU22 audio rate; the front end resamples to 32 kHz
SAMPLES = RATE  # 1-s clips
CITIES = ("synthA", "synthB", "synthC", "synthD")  # fictional: file names say synthetic
TRAIN_DEVICE_SHARE = {"a": 0.5, "b": 0.1, "c": 0.1, "s1": 0.1, "s2": 0.1, "s3": 0.1}
EVAL_FRACTION = 0.4  # of each class's clips go to the evaluate split
DEFAULT_OVERLAP = 0.45  # max weight of another class's texture mixed into a clip
# Named difficulties (`synth --preset`): how much of another class's texture a clip may carry.
# "easy" keeps wide margins (the demo and tests); "tau-like" overlaps scenes until a C=12 trained
# 30 epochs lands in TAU22's range (docs/quantization.md, "Data as hard as TAU22"): low-margin
# models are where a quantization scheme shows what it costs.
PRESETS = {"easy": DEFAULT_OVERLAP, "tau-like": 0.8}
MARKER = "SYNTHETIC"

Rng = np.random.Generator


# --- ingredients -----------------------------------------------------------------------------


def _coloured_noise(rng: Rng, exponent: float) -> np.ndarray:
    """Noise with power ~ 1/f^exponent (0 white, 1 pink, 2 brown), unit RMS."""
    spec = rng.standard_normal(SAMPLES // 2 + 1) + 1j * rng.standard_normal(SAMPLES // 2 + 1)
    f = np.maximum(np.fft.rfftfreq(SAMPLES, 1 / RATE), 20.0)
    x = np.fft.irfft(spec * f ** (-exponent / 2), n=SAMPLES)
    return x / (np.std(x) + 1e-12)


def _band_noise(rng: Rng, lo: float, hi: float) -> np.ndarray:
    spec = rng.standard_normal(SAMPLES // 2 + 1) + 1j * rng.standard_normal(SAMPLES // 2 + 1)
    f = np.fft.rfftfreq(SAMPLES, 1 / RATE)
    spec[(f < lo) | (f > hi)] = 0
    x = np.fft.irfft(spec, n=SAMPLES)
    return x / (np.std(x) + 1e-12)


def _t() -> np.ndarray:
    return np.arange(SAMPLES) / RATE


def _harmonic(f0: float, n_harm: int, decay: float, rng: Rng) -> np.ndarray:
    t = _t()
    x = sum(decay**k * np.sin(2 * np.pi * f0 * (k + 1) * t + rng.uniform(0, 2 * np.pi)) for k in range(n_harm))
    return x / (np.std(x) + 1e-12)


def _am(rng: Rng, rate: float, depth: float) -> np.ndarray:
    return 1.0 + depth * np.sin(2 * np.pi * rate * _t() + rng.uniform(0, 2 * np.pi))


def _events(rng: Rng, count: float, make: Callable[[Rng], np.ndarray]) -> np.ndarray:
    """Poisson-many short events at random times."""
    out = np.zeros(SAMPLES)
    for _ in range(rng.poisson(count)):
        ev = make(rng)
        start = rng.integers(0, SAMPLES)
        n = min(len(ev), SAMPLES - start)
        out[start : start + n] += ev[:n]
    return out


def _click(rng: Rng) -> np.ndarray:
    n = int(RATE * rng.uniform(0.005, 0.02))
    return rng.standard_normal(n) * np.exp(-np.arange(n) / (n / 4)) * 3


def _chirp(rng: Rng) -> np.ndarray:  # bird-like fast FM sweep
    n = int(RATE * rng.uniform(0.04, 0.12))
    t = np.arange(n) / RATE
    f = rng.uniform(2500, 6000) + rng.uniform(-2000, 2000) * t / t[-1]
    return np.sin(2 * np.pi * np.cumsum(f) / RATE) * np.hanning(n) * 3


def _beep(rng: Rng) -> np.ndarray:  # chime / bell: a few decaying harmonics
    n = int(RATE * rng.uniform(0.2, 0.5))
    t = np.arange(n) / RATE
    f0 = rng.uniform(500, 1200)
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 2, 3))
    return x * np.exp(-t * rng.uniform(4, 10)) * 2


def _step(rng: Rng) -> np.ndarray:  # footstep: low thud
    n = int(RATE * 0.06)
    t = np.arange(n) / RATE
    return np.sin(2 * np.pi * rng.uniform(80, 200) * t) * np.exp(-t * 60) * 3


def _babble(rng: Rng) -> np.ndarray:
    """Speech-like: band noise modulated at syllable rate, plus a wandering voiced tone."""
    env = np.clip(_am(rng, rng.uniform(3, 6), 0.9) * _am(rng, rng.uniform(0.5, 1.5), 0.5), 0, None)
    voiced = _harmonic(rng.uniform(110, 220), 6, 0.6, rng)
    return env * (_band_noise(rng, 300, 3500) + 0.5 * voiced)


def _sweep_tone(rng: Rng, lo: float, hi: float) -> np.ndarray:
    f = np.linspace(rng.uniform(lo, hi), rng.uniform(lo, hi), SAMPLES)
    return np.sin(2 * np.pi * np.cumsum(f) / RATE)


# --- the ten scene textures (same order as LABELS) --------------------------------------------


def _airport(rng: Rng) -> np.ndarray:
    return _coloured_noise(rng, 1.0) * _am(rng, 0.3, 0.3) + 0.7 * _babble(rng) + _events(rng, 0.8, _beep)


def _bus(rng: Rng) -> np.ndarray:
    engine = _harmonic(rng.uniform(50, 90), 8, 0.7, rng) * _am(rng, rng.uniform(0.5, 2), 0.4)
    return 0.8 * _coloured_noise(rng, 2.0) + 0.9 * engine + 0.3 * _babble(rng)


def _metro(rng: Rng) -> np.ndarray:
    whine = _sweep_tone(rng, 800, 2500) * 0.5
    clacks = _events(rng, 6, _click)
    return _coloured_noise(rng, 1.6) + whine + clacks


def _metro_station(rng: Rng) -> np.ndarray:
    return _coloured_noise(rng, 1.2) + 0.6 * _babble(rng) + _events(rng, 2, _click) + _events(rng, 0.5, _beep)


def _park(rng: Rng) -> np.ndarray:
    wind = _coloured_noise(rng, 1.0) * _am(rng, rng.uniform(0.2, 0.8), 0.7)
    return 0.5 * wind + _events(rng, 5, _chirp) + 0.2 * _band_noise(rng, 4000, 12000)


def _public_square(rng: Rng) -> np.ndarray:
    return 0.7 * _coloured_noise(rng, 1.3) + 0.8 * _babble(rng) + _events(rng, 3, _step) + _events(rng, 1, _chirp)


def _shopping_mall(rng: Rng) -> np.ndarray:
    music = sum(_harmonic(f, 4, 0.5, rng) for f in rng.choice([262, 330, 392, 440, 523], 3, replace=False))
    return 0.5 * _coloured_noise(rng, 0.8) + _babble(rng) + 0.25 * music


def _street_pedestrian(rng: Rng) -> np.ndarray:
    traffic = _band_noise(rng, 60, 1500) * _am(rng, rng.uniform(0.1, 0.4), 0.6)
    return 0.6 * traffic + 0.8 * _babble(rng) + _events(rng, 6, _step)


def _street_traffic(rng: Rng) -> np.ndarray:
    passing = _band_noise(rng, 80, rng.uniform(1500, 4000)) * _am(rng, rng.uniform(0.3, 1.0), 0.9)
    horn = _events(rng, 0.4, lambda r: _harmonic(r.uniform(350, 500), 5, 0.7, r)[: int(RATE * 0.3)] * 0.8)
    return _coloured_noise(rng, 1.8) + passing + horn


def _tram(rng: Rng) -> np.ndarray:
    hum = _harmonic(rng.uniform(90, 140), 5, 0.6, rng)
    squeal = _sweep_tone(rng, 3000, 5000) * 0.3 * _am(rng, rng.uniform(0.5, 2), 1.0)
    return _coloured_noise(rng, 1.5) + 0.7 * hum + squeal + _events(rng, 0.6, _beep)


TEXTURES: dict[str, Callable[[Rng], np.ndarray]] = dict(
    zip(
        LABELS,
        (
            _airport,
            _bus,
            _metro,
            _metro_station,
            _park,
            _public_square,
            _shopping_mall,
            _street_pedestrian,
            _street_traffic,
            _tram,
        ),
        strict=True,
    )
)


# --- devices --------------------------------------------------------------------------------

# Per device: (high-pass Hz, low-pass Hz, peak (Hz, gain dB) or None, tilt dB/octave, noise floor).
DEVICE_COLOURS: dict[str, tuple] = {
    "a": (0, 0, None, 0.0, 0.0),
    "b": (200, 9000, (2500, 6), -0.5, 0.002),
    "c": (120, 12000, (900, -6), 1.0, 0.004),
    "s1": (300, 7000, None, -1.0, 0.003),
    "s2": (80, 14000, (4000, 8), 0.5, 0.002),
    "s3": (400, 10000, (1500, 5), -1.5, 0.005),
    "s4": (250, 6000, (3000, -8), 1.5, 0.004),
    "s5": (150, 8000, (600, 8), -2.0, 0.006),
    "s6": (500, 11000, (5000, 6), 0.0, 0.003),
}


def device_response(device: str) -> np.ndarray:
    """Magnitude response of a device on the rfft grid of a 1-s clip (device a: all ones)."""
    hp, lp, peak, tilt, _ = DEVICE_COLOURS[device]
    f = np.maximum(np.fft.rfftfreq(SAMPLES, 1 / RATE), 1.0)
    gain_db = tilt * np.log2(f / 1000.0)
    if peak is not None:
        fc, g = peak
        gain_db += g * np.exp(-0.5 * (np.log2(f / fc) / 0.5) ** 2)
    mag = 10 ** (gain_db / 20)
    if hp:
        mag /= np.sqrt(1 + (hp / f) ** 4)  # 2nd-order Butterworth-like slopes
    if lp:
        mag /= np.sqrt(1 + (f / lp) ** 8)  # 4th order
    return mag


def apply_device(wave: np.ndarray, device: str, rng: Rng) -> np.ndarray:
    if device == "a":
        return wave
    y = np.fft.irfft(np.fft.rfft(wave) * device_response(device), n=SAMPLES)
    y = y / (np.std(y) + 1e-12) * np.std(wave)
    return y + DEVICE_COLOURS[device][4] * rng.standard_normal(SAMPLES) * 10 * np.std(wave)


# --- one clip and the whole folder -------------------------------------------------------------


def synth_clip(label: str, device: str, rng: Rng, overlap: float = DEFAULT_OVERLAP) -> np.ndarray:
    """One 1-s clip of `label` recorded by `device`, float32 in [-1, 1]."""
    x = TEXTURES[label](rng)
    x = x / (np.std(x) + 1e-12)
    other = LABELS[(LABELS.index(label) + rng.integers(1, len(LABELS))) % len(LABELS)]
    y = TEXTURES[other](rng)
    x = x + rng.uniform(0, overlap) * y / (np.std(y) + 1e-12)  # a little of another scene
    # A random spectral tilt (room, distance): confuses classes that differ mainly in colour.
    spec = np.fft.rfft(x) * np.maximum(np.fft.rfftfreq(SAMPLES, 1 / RATE), 50.0) ** (rng.uniform(-0.25, 0.25))
    x = np.fft.irfft(spec, n=SAMPLES)
    x = apply_device(x, device, rng)
    x = x / (np.max(np.abs(x)) + 1e-12) * rng.uniform(0.1, 0.8)
    return x.astype(np.float32)


def _plan(clips_per_class: int, seed: int) -> list[tuple[str, str, str, str, str]]:
    """(split, label, city, location, device) for every clip, in a fixed order."""
    rng = np.random.default_rng([seed, 7_777])
    train_devices = list(TRAIN_DEVICE_SHARE)
    share = np.array(list(TRAIN_DEVICE_SHARE.values()))
    plan = []
    n_eval = max(1, int(round(clips_per_class * EVAL_FRACTION))) if clips_per_class > 1 else 0
    for label in LABELS:
        for k in range(clips_per_class):
            city = CITIES[k % len(CITIES)]
            location = str(k % 3)
            if k < n_eval:  # evaluate: every device in turn, so s4..s6 always appear
                split, device = "evaluate", DEVICES[(k + LABELS.index(label)) % len(DEVICES)]
            else:
                split, device = "train", str(rng.choice(train_devices, p=share / share.sum()))
            plan.append((split, label, city, location, device))
    assert all(d in SEEN_DEVICES for s, _, _, _, d in plan if s == "train")
    return plan


# --- a set of TAU22's size and proportions (`synth --size tau22`) -------------------------------

# TAU Urban Acoustic Scenes 2022 Mobile, development: clips per (fold-1 split, device), 1-s clips
# (10x the 10-s segment counts of the 2020 set it cuts up; the README of a written set says which
# figures are TAU22's). Split "": in meta.csv only, in neither fold-1 list.
TAU22_CELLS: dict[tuple[str, str], int] = {
    ("train", "a"): 102_150,
    ("train", "b"): 7_490,
    ("train", "c"): 7_480,
    ("train", "s1"): 7_500,
    ("train", "s2"): 7_500,
    ("train", "s3"): 7_500,
    ("evaluate", "a"): 3_300,
    ("evaluate", "b"): 3_290,
    ("evaluate", "c"): 3_290,
    **{("evaluate", d): 3_300 for d in ("s1", "s2", "s3", "s4", "s5", "s6")},
    ("", "a"): 38_500,  # TAU22's device-A total less both splits, less the 50 clips TAU22 lacks
    ("", "b"): 20,
    ("", "c"): 30,
    **{("", d): 7_500 for d in ("s4", "s5", "s6")},
}
TAU22_CLIPS = 230_350
assert sum(TAU22_CELLS.values()) == TAU22_CLIPS
SIZES = ("small", "tau22")
MIN_TAU22_CLIPS = 100  # every train and evaluate cell holds a clip from here up


def tau22_counts(clips: int = TAU22_CLIPS) -> dict[tuple[str, str], int]:
    """TAU22_CELLS scaled to `clips` in all (largest remainders), each fold-1 cell at least 1."""
    if not MIN_TAU22_CLIPS <= clips <= TAU22_CLIPS:
        raise TfsepError(
            f"--clips {clips}: a TAU22-proportioned set holds {MIN_TAU22_CLIPS:,} to {TAU22_CLIPS:,} clips "
            f"(--fraction {MIN_TAU22_CLIPS / TAU22_CLIPS:.5f} to 1)"
        )
    exact = {cell: n * clips / TAU22_CLIPS for cell, n in TAU22_CELLS.items()}
    counts = {cell: int(x) for cell, x in exact.items()}
    by_remainder = sorted(exact, key=lambda cell: exact[cell] - counts[cell], reverse=True)
    for cell in by_remainder[: clips - sum(counts.values())]:
        counts[cell] += 1
    for cell in counts:
        if cell[0] and counts[cell] == 0:  # take it from the largest cell: the total stays `clips`
            counts[max(counts, key=counts.get)] -= 1
            counts[cell] = 1
    return counts


def clips_of_fraction(fraction: float) -> int:
    if not 0 < fraction <= 1:
        raise TfsepError(f"--fraction {fraction}: must be in (0, 1]; 1 is TAU22's {TAU22_CLIPS:,} clips")
    return max(MIN_TAU22_CLIPS, round(TAU22_CLIPS * fraction))


def _tau22_plan(clips: int) -> list[tuple[str, str, str, str, str]]:
    """(split, label, city, location, device) per clip: each cell's clips go round the ten scenes
    (so every scene gets its share of every device), split "" for clips outside fold 1."""
    plan = []
    for c, ((split, device), n) in enumerate(tau22_counts(clips).items()):
        for k in range(n):
            label = LABELS[(k + c) % len(LABELS)]
            plan.append((split, label, CITIES[(k // len(LABELS)) % len(CITIES)], str(k % 7), device))
    return plan


SUBSET_PERCENTS = (5, 10, 25, 50, 100)  # the DCASE 2024/2025 training subsets


def subset_rows(train_rows: list[str], percent: int, seed: int) -> list[str]:
    """The rows of a DCASE-style training subset: `percent` of each scene's train clips (at
    least one), nested like the official lists (split5 inside split10 ... inside split100)."""
    by_label: dict[str, list[int]] = {}
    for i, row in enumerate(train_rows):
        by_label.setdefault(row.split("\t")[1], []).append(i)
    keep = []
    for label, rows in by_label.items():
        order = np.random.default_rng([seed, 2024, LABELS.index(label)]).permutation(rows)  # one order: nested
        keep += order[: max(1, round(len(rows) * percent / 100))].tolist()
    return [train_rows[i] for i in sorted(keep)]


README = """SYNTHETIC DATA - NOT TAU Urban Acoustic Scenes 2022 Mobile.

Written by {made_by} (tfsep_edge/datasets/synth.py).
It copies the TAU22 layout (meta.csv, evaluation_setup/fold1_*.csv, audio/*.wav; 44.1 kHz 1-s
{bits}-bit mono WAVs; devices a, b, c, s1..s6 with s4..s6 only in the evaluate split) so the demo
and the tests run without the real data set. The sounds are synthetic textures (coloured noise,
hums, babble, chirps, clicks); the devices are fixed filters. Accuracy measured on this folder
says nothing about real acoustic scenes: label every figure made from it as synthetic.

{n_train} train clips, {n_eval} evaluate clips (fold1_test.csv lists the evaluate files unlabelled).
split_setup/split5.csv ... split100.csv: training subsets in the DCASE 2024/2025 format (for
`train --train-split`), that share of each scene's train clips, nested.
"""

TAU22_README = """
Size and proportions: TAU22's. TAU Urban Acoustic Scenes 2022 Mobile development holds 230,350
1-s clips, 44.1 kHz 24-bit (the DCASE 2022/2023 Task 1 description; the TF-SepNet report: 230,350
clips, device A 73%). Its fold-1 setup (10x the 10-s segment counts of TAU Urban Acoustic Scenes
2020 Mobile, which TAU22 cuts into 1-s clips) lists 139,620 train clips (a 102,150, b 7,490,
c 7,480, s1-s3 7,500 each) and 29,680 evaluate clips (a 3,300, b 3,290, c 3,290, s1-s6 3,300
each); the other 61,050 clips are in meta.csv only (device a 38,500, b 20, c 30, s4-s6 7,500
each: each device's total less both lists; TAU22 is 50 clips short of 10x the 2020 set, taken
here from device a). Those are TAU22's figures; this set holds {clips:,} clips ({share} of them)
in the same proportions: {n_train:,} train, {n_eval:,} evaluate, {n_other:,} in meta.csv only.
Scenes, cities and locations are round-robin, not TAU22's.
"""


def synthesize(
    out: Path | str,
    clips_per_class: int = 20,
    seed: int = 0,
    overlap: float = DEFAULT_OVERLAP,
    size: str = "small",
    clips: int | None = None,
    workers: int = 0,
    progress: bool = True,
) -> Path:
    """Write the synthetic TAU22-layout folder `out` and return it.

    size "small": `clips_per_class` counts all clips of a class; about 40% go to the evaluate
    split (every device in turn), the rest to train (half device a, the rest b, c, s1..s3).
    size "tau22": TAU22's clip count, devices, fold-1 split sizes and 24-bit format
    (TAU22_CELLS), or `clips` in all in the same proportions. `overlap` is the largest weight of
    another class's texture mixed into a clip (0 makes the task easy). `workers` > 0 writes the
    clips in that many processes (the same files: clip i is drawn from default_rng([seed, i])).
    """
    from tfsep_edge.core.fileio import atomic_folder, check_output_folder

    out = check_output_folder(out)
    if size not in SIZES:
        raise TfsepError(f"--size {size!r}: one of {', '.join(SIZES)}")
    if size == "small" and clips is not None:
        raise TfsepError(f"--clips/--fraction: TAU22 proportions only; add --size tau22 (or drop --clips {clips})")
    if size == "small" and clips_per_class < 2:
        raise TfsepError(f"--clips-per-class {clips_per_class}: need at least 2 (one train, one evaluate clip)")
    if size == "tau22":
        clips = TAU22_CLIPS if clips is None else clips
        tau22_counts(clips)  # checks the count before any folder is made
    if not 0 <= overlap < 1:
        raise TfsepError(f"overlap {overlap}: must be in [0, 1)")
    if workers < 0:
        raise TfsepError(f"--workers {workers}: must be 0 (this process) or more")
    if out.exists() and any(out.iterdir()):
        readme = out / "README.txt"
        if not readme.is_file() or MARKER not in readme.read_text(errors="replace"):
            raise TfsepError(f"{out}: exists, is not empty and is not a synthetic set; choose a new folder")
    # Written whole into a temporary folder and renamed onto OUT (replacing an earlier synthetic
    # set): a run that fails leaves OUT as it was, never half a data set.
    with atomic_folder(out) as tmp:
        _write_set(tmp, clips_per_class, seed, overlap, clips, workers, progress)
    return out


def _write_clip(job: tuple, folder: Path, seed: int, overlap: float, subtype: str) -> None:
    """One planned clip into `folder` (run in a worker process, or here)."""
    import soundfile as sf

    i, name, label, device = job
    sf.write(folder / name, synth_clip(label, device, np.random.default_rng([seed, i]), overlap), RATE, subtype=subtype)


def _write_set(
    out: Path,
    clips_per_class: int,
    seed: int,
    overlap: float,
    clips: int | None = None,
    workers: int = 0,
    progress: bool = True,
) -> None:
    """The set's audio, split lists, subsets and README into the new, empty folder `out`.

    Only the plan (names and labels) is held; each clip is written as it is made, here or in a
    worker, so memory does not grow with the set.
    """
    from functools import partial

    from tfsep_edge.core.progress import progress_bar

    (out / "audio").mkdir()
    (out / "evaluation_setup").mkdir()
    plan = _plan(clips_per_class, seed) if clips is None else _tau22_plan(clips)
    subtype = "PCM_16" if clips is None else "PCM_24"  # TAU22 is 24-bit; the small sets stay as they were
    meta = ["filename\tscene_label\tidentifier\tsource_label\torigin"]
    rows: dict[str, list[str]] = {"train": [], "evaluate": [], "": []}
    jobs = []
    for i, (split, label, city, location, device) in enumerate(plan):
        name = f"audio/{label}-{city}-{location}-{i}-{device}.wav"
        jobs.append((i, name, label, device))
        meta.append(f"{name}\t{label}\t{city}-{location}\t{device}\t{MARKER}")
        rows[split].append(f"{name}\t{label}")
    write = partial(_write_clip, folder=out, seed=seed, overlap=overlap, subtype=subtype)
    with progress_bar(len(jobs), "writing clips", "clip", progress) as bar:
        if workers > 0:
            from multiprocessing import get_context

            with get_context("spawn").Pool(workers) as pool:
                for _ in pool.imap_unordered(write, jobs, chunksize=64):
                    bar.update(1)
        else:
            for job in jobs:
                write(job)
                bar.update(1)

    header = "filename\tscene_label"
    (out / "meta.csv").write_text("\n".join(meta) + "\n")
    (out / "evaluation_setup" / "fold1_train.csv").write_text("\n".join([header, *rows["train"]]) + "\n")
    (out / "evaluation_setup" / "fold1_evaluate.csv").write_text("\n".join([header, *rows["evaluate"]]) + "\n")
    test = ["filename", *(r.split("\t")[0] for r in rows["evaluate"])]
    (out / "split_setup").mkdir()
    for percent in SUBSET_PERCENTS:
        subset = subset_rows(rows["train"], percent, seed)
        (out / "split_setup" / f"split{percent}.csv").write_text("\n".join([header, *subset]) + "\n")
    (out / "evaluation_setup" / "fold1_test.csv").write_text("\n".join(test) + "\n")
    made_by = remake_command(clips_per_class, seed, overlap, clips)
    n_train, n_eval = len(rows["train"]), len(rows["evaluate"])
    readme = README.format(made_by=made_by, bits=subtype[-2:], n_train=n_train, n_eval=n_eval)
    if clips is not None:
        share = "all" if clips == TAU22_CLIPS else f"{clips / TAU22_CLIPS:.4g}"
        readme += TAU22_README.format(clips=clips, share=share, n_train=n_train, n_eval=n_eval, n_other=len(rows[""]))
    (out / "README.txt").write_text(readme)


def remake_command(clips_per_class: int, seed: int, overlap: float, clips: int | None = None) -> str:
    """How to write this set again: the command, or the Python call where no preset has this
    `overlap`. OUT stays a placeholder: the same seed gives the same files anywhere."""
    preset = next((name for name, value in PRESETS.items() if value == overlap), None)
    if clips is None:
        size = f"--clips-per-class {clips_per_class}"
        call = f"clips_per_class={clips_per_class}"
    else:
        size = "--size tau22" + ("" if clips == TAU22_CLIPS else f" --clips {clips}")
        call = f"size='tau22', clips={clips}"
    if preset == "easy":
        return f"`tfsep-edge synth OUT {size} --seed {seed}`"
    if preset is not None:
        return f"`tfsep-edge synth OUT {size} --seed {seed} --preset {preset}`"
    return f"`synthesize(OUT, {call}, seed={seed}, overlap={overlap:g})`"


def preset_overlap(preset: str) -> float:
    """The overlap of a named preset; a one-line error naming the choices otherwise."""
    if preset not in PRESETS:
        raise TfsepError(f"--preset {preset!r}: one of {', '.join(PRESETS)}")
    return PRESETS[preset]
