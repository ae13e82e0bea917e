"""Calibration sets (choice, record, replay) and every bad input of `tfsep-edge quantize`."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import run_cli
from tfsep_edge.core.errors import TfsepError
from tfsep_edge.datasets.calibration import (
    MIN_CALIB_FILES,
    _balanced_pick,
    list_text,
    load_calibration,
    select_calibration,
    select_eval,
)


def wav(path: Path, seed: int, seconds: float = 1.0, rate: int = 32_000) -> Path:
    rng = np.random.default_rng(seed)
    sf.write(path, (0.1 * rng.standard_normal(int(rate * seconds))).astype(np.float32), rate, subtype="PCM_16")
    return path


def wav_folder(folder: Path, n: int, prefix: str = "airport") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        wav(folder / f"{prefix}-x-{i}-a.wav", i)
    return folder


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    from tfsep_edge.model.checkpoint import save_checkpoint
    from tfsep_edge.model.tfsepnet import TFSepNet

    path = tmp_path_factory.mktemp("ck") / "m.pt"
    save_checkpoint(TFSepNet(8).eval(), path)
    return path


def one_line_error(r, *words: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


# --- choosing --------------------------------------------------------------------------------------


def test_balanced_pick_over_classes_and_devices():
    keys = [(c, d) for c in "ABCDE" for d, n in (("a", 20), ("b", 3), ("c", 3)) for _ in range(n)]
    idx = _balanced_pick(keys, 30, seed=0)
    assert idx == _balanced_pick(keys, 30, seed=0) and idx != _balanced_pick(keys, 30, seed=1)
    classes = Counter(keys[i][0] for i in idx)
    devices = Counter(keys[i][1] for i in idx)
    assert set(classes.values()) == {6}  # same count per class
    assert devices == {"a": 10, "b": 10, "c": 10}  # devices cycled, not drawn 20:3:3
    assert len(set(idx)) == 30


def test_tau_subset_and_list_replay(tmp_path):
    from tfsep_edge.datasets.synth import synthesize

    data = synthesize(tmp_path / "s", clips_per_class=4, seed=0)
    chosen = select_calibration(data, 20, seed=3)
    assert chosen.source == "tau" and len(chosen.files) == 20
    assert set(Counter(chosen.labels).values()) == {2}
    listing = tmp_path / "list.txt"
    listing.write_text(list_text(chosen, note="test"))
    again = select_calibration(listing, None)
    assert again.files == tuple(p.resolve() for p in chosen.files) and again.source == "list"


def test_folder_subset_is_seeded(tmp_path):
    folder = wav_folder(tmp_path / "w", 8)
    a, b = select_calibration(folder, 5, seed=1), select_calibration(folder, 5, seed=1)
    assert a.files == b.files and len(a.files) == 5
    assert len(select_calibration(folder, None).files) == 8


def test_bad_wavs_skipped_with_names(tmp_path):
    folder = wav_folder(tmp_path / "w", MIN_CALIB_FILES)
    (folder / "broken-1-a.wav").write_bytes(b"RIFF0000WAVEjunk")
    (folder / "empty-2-a.wav").write_bytes(b"")
    warnings: list[str] = []
    windows, kept = load_calibration(select_calibration(folder, None), warn=warnings.append)
    assert len(kept.files) == MIN_CALIB_FILES and windows.shape == (MIN_CALIB_FILES, 1, 128, 44)
    assert len(warnings) == 1 and "broken-1-a.wav" in warnings[0] and "empty-2-a.wav" in warnings[0]


def test_too_few_readable_files(tmp_path):
    folder = wav_folder(tmp_path / "w", MIN_CALIB_FILES - 1)
    (folder / "broken-1-a.wav").write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(TfsepError, match=f"need at least {MIN_CALIB_FILES}"):
        load_calibration(select_calibration(folder, None))


def test_eval_folder_labels(tmp_path):
    folder = wav_folder(tmp_path / "e", 3, prefix="bus")
    assert not select_eval(folder).labelled  # no labels.csv: agreement and SQNR only
    (folder / "labels.csv").write_text("filename,scene_label\n" + "".join(f"bus-x-{i}-a.wav,bus\n" for i in range(3)))
    assert select_eval(folder).labels == ("bus",) * 3


# --- the command's bad inputs ------------------------------------------------------------------------


def test_cli_folder_without_audio(tmp_path, ckpt):
    (tmp_path / "empty").mkdir()
    r = run_cli("quantize", ckpt, "--calib", tmp_path / "empty", "-o", tmp_path / "q")
    one_line_error(r, "no audio files")
    assert not (tmp_path / "q").exists()


@pytest.mark.slow
def test_cli_single_file_calibration(tmp_path, ckpt):
    one = wav(tmp_path / "one.wav", 0)
    one_line_error(run_cli("quantize", ckpt, "--calib", one, "-o", tmp_path / "q"), "1 file")
    folder = wav_folder(tmp_path / "f1", 1)
    one_line_error(run_cli("quantize", ckpt, "--calib", folder, "-o", tmp_path / "q"), "1 file")
    assert not (tmp_path / "q").exists()


@pytest.mark.slow
def test_cli_bad_wavs_among_good(tmp_path, ckpt):
    folder = wav_folder(tmp_path / "w", MIN_CALIB_FILES + 1)
    (folder / "corrupt-9-a.wav").write_bytes(b"not a wav at all")
    r = run_cli("quantize", ckpt, "--calib", folder, "--no-sensitivity", "-o", tmp_path / "q")
    assert r.returncode == 0, r.stderr
    assert "warning: skipped 1 unreadable calibration file(s)" in r.stderr and "corrupt-9-a.wav" in r.stderr
    assert (tmp_path / "q" / "model_int8.pt").is_file()
    listed = (tmp_path / "q" / "calibration_list.txt").read_text()
    assert "corrupt-9-a.wav" not in listed and listed.count(".wav") == MIN_CALIB_FILES + 1


def test_cli_eval_labels_not_the_ten_classes(tmp_path, ckpt):
    calib = wav_folder(tmp_path / "c", MIN_CALIB_FILES)
    ev = wav_folder(tmp_path / "e", 2, prefix="kitchen")
    (ev / "labels.csv").write_text("filename,scene_label\nkitchen-x-0-a.wav,kitchen\nkitchen-x-1-a.wav,bus\n")
    r = run_cli("quantize", ckpt, "--calib", calib, "--eval", ev, "-o", tmp_path / "q")
    one_line_error(r, "kitchen", "not the ten TAU22 scenes")
    assert not (tmp_path / "q").exists()


@pytest.mark.parametrize(
    "extra, words",
    [
        (("--engine", "arm"), ("--engine arm",)),
        (("--observer", "mse"), ("--observer mse",)),
        (("--num-calib", "2"), ("--num-calib 2",)),
        (("--max-drop", "1"), ("--max-drop", "--eval")),
    ],
)
def test_cli_bad_options(tmp_path, ckpt, extra, words):
    calib = wav_folder(tmp_path / "c", MIN_CALIB_FILES)
    one_line_error(run_cli("quantize", ckpt, "--calib", calib, *extra, "-o", tmp_path / "q"), *words)
    assert not (tmp_path / "q").exists()


@pytest.mark.slow
def test_cli_out_in_missing_folder(tmp_path, ckpt):
    calib = wav_folder(tmp_path / "c", MIN_CALIB_FILES)
    r = run_cli("quantize", ckpt, "--calib", calib, "-o", tmp_path / "nope" / "q")
    one_line_error(r, "does not exist")
    assert not (tmp_path / "nope").exists()


def test_cli_out_in_read_only_folder(tmp_path, ckpt, monkeypatch):
    """Checked through os.access so it holds when the tests run as root too."""
    from typer.testing import CliRunner

    from tfsep_edge.cli import app
    from tfsep_edge.core import fileio

    calib = wav_folder(tmp_path / "c", MIN_CALIB_FILES)
    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access
    monkeypatch.setattr(fileio.os, "access", lambda p, mode: Path(p) != ro and real_access(p, mode))
    result = CliRunner().invoke(app, ["quantize", str(ckpt), "--calib", str(calib), "-o", str(ro / "q")])
    assert result.exit_code == 2 and "not writable" in result.output
    assert list(ro.iterdir()) == []


def test_cli_out_is_an_unrelated_folder(tmp_path, ckpt):
    calib = wav_folder(tmp_path / "c", MIN_CALIB_FILES)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("x")
    one_line_error(run_cli("quantize", ckpt, "--calib", calib, "-o", tmp_path / "mine"), "not a `tfsep-edge quantize`")
    assert (tmp_path / "mine" / "keep.txt").read_text() == "x"
