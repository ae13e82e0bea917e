"""The synthetic set: TAU22 layout read by tau.read_split, deterministic, labelled synthetic."""

from __future__ import annotations

import hashlib

import numpy as np
import soundfile as sf

from tests.conftest import run_cli
from tfsep_edge.core.config import LABELS, SEEN_DEVICES, UNSEEN_DEVICES
from tfsep_edge.datasets.synth import PRESETS, synthesize
from tfsep_edge.datasets.tau import is_tau_layout, read_split


def _digest(folder) -> str:
    h = hashlib.sha1()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def test_synth_layout_is_read_by_tau(tmp_path):
    root = synthesize(tmp_path / "s", clips_per_class=5, seed=3)
    assert is_tau_layout(root)
    train, ev, test = (read_split(root, s) for s in ("train", "evaluate", "test"))
    assert len(train) + len(ev) == 5 * len(LABELS)
    assert {c.label for c in train} == set(LABELS) == {c.label for c in ev}
    assert {c.device for c in train} <= set(SEEN_DEVICES) and "a" in {c.device for c in train}
    assert set(UNSEEN_DEVICES) <= {c.device for c in ev}  # unseen devices only in evaluate
    assert [c.filename for c in test] == [c.filename for c in ev]
    data, rate = sf.read(train[0].path, dtype="int16")
    assert rate == 44_100 and data.shape == (44_100,) and sf.info(train[0].path).subtype == "PCM_16"
    assert "SYNTHETIC" in (root / "README.txt").read_text()
    assert all(line.endswith("SYNTHETIC") for line in (root / "meta.csv").read_text().splitlines()[1:])


def test_synth_readme_names_the_command_that_remakes_it(tmp_path):
    readme = (synthesize(tmp_path / "s", clips_per_class=2, seed=4) / "README.txt").read_text()
    assert "`tfsep-edge synth OUT --clips-per-class 2 --seed 4` (tfsep_edge/datasets/synth.py)" in readme
    odd = (synthesize(tmp_path / "o", clips_per_class=2, seed=4, overlap=0.1) / "README.txt").read_text()
    assert "`synthesize(OUT, clips_per_class=2, seed=4, overlap=0.1)`" in odd  # no preset has this overlap
    hard = (
        synthesize(tmp_path / "h", clips_per_class=2, seed=4, overlap=PRESETS["tau-like"]) / "README.txt"
    ).read_text()
    assert "`tfsep-edge synth OUT --clips-per-class 2 --seed 4 --preset tau-like`" in hard


def test_synth_presets_from_the_cli(tmp_path):
    from conftest import run_cli

    made = run_cli("synth", tmp_path / "h", "--clips-per-class", "2", "--preset", "tau-like")
    assert made.returncode == 0, made.stderr
    assert "--preset tau-like" in (tmp_path / "h" / "README.txt").read_text()
    bad = run_cli("synth", tmp_path / "x", "--preset", "hard")
    assert bad.returncode == 2 and "one of easy, tau-like" in bad.stderr and not (tmp_path / "x").exists()


def test_synth_is_deterministic_for_a_seed(tmp_path):
    a = synthesize(tmp_path / "a", clips_per_class=3, seed=5)
    b = synthesize(tmp_path / "b", clips_per_class=3, seed=5)
    c = synthesize(tmp_path / "c", clips_per_class=3, seed=6)
    assert _digest(a) == _digest(b) != _digest(c)


def test_synth_classes_differ_but_overlap(tmp_path):
    """Different classes have different spectra (the task is learnable)."""
    from tfsep_edge.signal.audio import load_audio
    from tfsep_edge.signal.frontend import log_mel

    root = synthesize(tmp_path / "s", clips_per_class=6, seed=0)
    clips = [c for c in read_split(root, "train") if c.device == "a"] + read_split(root, "evaluate")
    means = {}
    for c in clips:
        means.setdefault(c.label, []).append(log_mel(load_audio(c.path)).mean(axis=1))
    centroids = np.stack([np.mean(means[k], axis=0) for k in LABELS])
    spread = np.linalg.norm(centroids[:, None] - centroids[None], axis=-1)
    assert spread[~np.eye(len(LABELS), dtype=bool)].min() > 0.05


def test_synth_cli_and_refuses_a_foreign_folder(tmp_path):
    res = run_cli("synth", tmp_path / "s", "--clips-per-class", "2", "--seed", "1")
    assert res.returncode == 0, res.stderr
    assert "SYNTHETIC" in res.stdout
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("precious")
    res = run_cli("synth", tmp_path / "mine")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "not a synthetic set" in res.stderr
    assert (tmp_path / "mine" / "keep.txt").read_text() == "precious"


# --- TAU22's size and proportions -------------------------------------------------------------


def test_tau22_plan_has_tau22s_counts_and_scales_them():
    from tfsep_edge.datasets.synth import TAU22_CELLS, TAU22_CLIPS, tau22_counts

    assert tau22_counts() == TAU22_CELLS and TAU22_CLIPS == 230_350
    assert sum(n for (split, _), n in TAU22_CELLS.items() if split == "train") == 139_620
    assert sum(n for (split, _), n in TAU22_CELLS.items() if split == "evaluate") == 29_680
    for clips in (100, 4_607, 23_035):
        counts = tau22_counts(clips)
        assert sum(counts.values()) == clips
        assert all(n >= 1 for (split, _), n in counts.items() if split)  # every fold-1 cell present
        for cell, n in counts.items():  # proportional to within a clip (or the floor of 1)
            assert abs(n - TAU22_CELLS[cell] * clips / TAU22_CLIPS) <= 1.0 or n == 1


def test_synth_tau22_subset_from_the_cli(tmp_path):
    made = run_cli("synth", tmp_path / "t", "--size", "tau22", "--clips", "100", "--workers", "2")
    assert made.returncode == 0, made.stderr
    root = tmp_path / "t"
    train, ev = read_split(root, "train"), read_split(root, "evaluate")
    assert len((root / "meta.csv").read_text().splitlines()) == 1 + 100
    assert {c.device for c in ev} == set(SEEN_DEVICES) | set(UNSEEN_DEVICES)
    assert {c.device for c in train} == set(SEEN_DEVICES)
    assert sum(c.device == "a" for c in train) / len(train) > 0.65  # TAU22: 73% device A
    assert sf.info(train[0].path).subtype == "PCM_24" and sf.info(train[0].path).samplerate == 44_100
    readme = (root / "README.txt").read_text()
    assert "`tfsep-edge synth OUT --size tau22 --clips 100 --seed 0`" in readme and "139,620" in readme
    # the workers wrote what one process writes: clip i is drawn from default_rng([seed, i])
    from tfsep_edge.datasets.synth import synth_clip

    clip = train[3]
    i = int(clip.path.stem.split("-")[-2])
    want = synth_clip(clip.label, clip.device, np.random.default_rng([0, i]))
    got, _ = sf.read(clip.path, dtype="float32")
    assert np.max(np.abs(got - want)) < 2**-22
    for args, needle in (
        (("--clips", "100"), "add --size tau22"),
        (("--size", "tau22", "--clips", "99"), "100 to 230,350"),
        (("--size", "tau22", "--fraction", "2"), "(0, 1]"),
        (("--size", "huge"), "one of small, tau22"),
    ):
        bad = run_cli("synth", tmp_path / "x", *args)
        assert bad.returncode == 2 and needle in bad.stderr and bad.stderr.count("\n") == 1, bad.stderr
        assert not (tmp_path / "x").exists()
