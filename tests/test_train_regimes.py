"""Training at every data scale: offline device simulation in the report's proportion, the DCASE
2024/2025 training subsets (--train-split) and their bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tfsep_edge.core.errors import TfsepError
from tfsep_edge.datasets import cache as data
from tfsep_edge.datasets.calibration import select_calibration
from tfsep_edge.datasets.synth import SUBSET_PERCENTS, synthesize
from tfsep_edge.datasets.tau import read_split, read_train_subset
from tfsep_edge.quant.pipeline import QuantizeRequest, calibration_subset
from tfsep_edge.train import augment, batches

MICIRP = Path(__file__).parent / "data" / "micirp"
QUICK = ["--epochs", "1", "--warmup-epochs", "0.5", "--threads", "1", "--batch-size", "8", "--dir-path", MICIRP]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("d") / "synth", clips_per_class=6, seed=5)


def _rows(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    assert lines[0] == "filename\tscene_label"
    return lines[1:]


# --- the report's proportion ---------------------------------------------------------------------


def test_proportion_gives_the_report_figures_on_tau22_and_scales_down():
    assert batches.clips_per_response(102_150) == 7_500  # the report's own data set
    assert batches.clips_per_response(550) == 40  # 7.34% of 550
    assert batches.clips_per_response(34_000) == round(34_000 * 7_500 / 102_150)  # a 25% subset
    assert batches.clips_per_response(1_000_000) == 7_500  # capped at the report's count
    assert batches.clips_per_response(3) == 1  # at least one per response
    assert batches.clips_per_response(50, absolute=100) == 50  # the absolute form, capped by what exists
    assert batches.clips_per_response(500, absolute=100) == 100


def test_the_log_line_states_the_rule_and_figures():
    line = batches.devsim_summary(32, 40, 550, 1_200, None)
    assert line == (
        "32 responses x 40 device-A clips each (7.3% of 550; the report's proportion) "
        "= 1,280 simulated clips for 1,200 real"
    )
    assert "--devsim-clips 100" in batches.devsim_summary(32, 100, 550, 1_200, 100)


def test_offline_simulation_defaults_to_the_proportion(tiny, tmp_path):
    train = data.load_split(tiny, "train", tmp_path, progress=False)
    names, irs = augment.load_irs(MICIRP)
    n_a = sum(d == "a" for d in train.devices)
    sim = batches.offline_device_simulation(train, names, irs, 2, None, seed=0, cache_dir=tmp_path, progress=False)
    assert len(sim) == min(2, len(irs)) * batches.clips_per_response(n_a)
    assert all(train.devices[r] == "a" for r in sim.source)


def test_help_states_the_rule():
    res = run_cli("train", "--help")
    assert res.returncode == 0
    text = " ".join(res.stdout.split())
    assert "7.34%" in text and "102,150" in text and "--devsim-clips" in text and "--train-split" in text


# --- DCASE training subsets ------------------------------------------------------------------------


def test_synth_writes_nested_dcase_subsets_of_the_train_split(tiny):
    train = [f"{c.filename}\t{c.label}" for c in read_split(tiny, "train")]
    previous: set[str] = set()
    for percent in SUBSET_PERCENTS:
        rows = _rows(tiny / "split_setup" / f"split{percent}.csv")
        assert set(rows) <= set(train) and previous <= set(rows)  # nested, like the official lists
        assert {r.split("\t")[1] for r in rows} == {r.split("\t")[1] for r in train}  # every scene
        previous = set(rows)
    assert sorted(previous) == sorted(train)  # split100 is the whole train split


def test_read_train_subset_keeps_train_order(tiny):
    clips = read_train_subset(tiny, tiny / "split_setup" / "split50.csv")
    full = [c.filename for c in read_split(tiny, "train")]
    names = [c.filename for c in clips]
    assert names == [n for n in full if n in set(names)]
    assert len(names) == len(_rows(tiny / "split_setup" / "split50.csv"))


def _write_split(path: Path, names: list[str], label: str | None = None) -> Path:
    """A subset list; each clip's label from its synthetic name (audio/<label>-...) unless `label`."""
    rows = "".join(f"{n}\t{label or Path(n).name.split('-')[0]}\n" for n in names)
    path.write_text("filename\tscene_label\n" + rows)
    return path


def test_bad_subset_lists_name_the_file_and_the_fix(tiny, tmp_path):
    ev = read_split(tiny, "evaluate")[0].filename
    train = read_split(tiny, "train")[0].filename
    ghosts = _write_split(tmp_path / "ghosts.csv", [train, "audio/nope-1-a.wav", "audio/nope-2-a.wav"])
    with pytest.raises(TfsepError, match=r"ghosts.csv: 2 of 3 clips are not in .*meta.csv \(first: audio/nope-1"):
        read_train_subset(tiny, ghosts)
    leak = _write_split(tmp_path / "leak.csv", [train, ev])
    with pytest.raises(TfsepError, match=r"1 of 2 clips are not in .*fold1_train.csv"):
        read_train_subset(tiny, leak)
    with pytest.raises(TfsepError, match="the subset is empty"):
        read_train_subset(tiny, _write_split(tmp_path / "empty.csv", []))
    park = [c.filename for c in read_split(tiny, "train") if c.label == "park"][:1]
    others = [c.filename for c in read_split(tiny, "train") if c.label != "park"][:3]
    relabelled = _write_split(tmp_path / "relabelled.csv", [*park, *others], label="park")
    with pytest.raises(TfsepError, match=r"relabelled.csv: 3 of 4 clips have another scene_label than the data"):
        read_train_subset(tiny, relabelled)
    with pytest.raises(TfsepError, match="no such split file"):
        read_train_subset(tiny, tmp_path / "missing.csv")


def test_train_on_a_subset_simulates_devices_from_it_only(tiny, tmp_path):
    subset = tiny / "split_setup" / "split50.csv"
    res = run_cli("train", tiny, "-o", tmp_path / "run", "--train-split", subset, "--json", *QUICK)
    assert res.returncode == 0, res.stderr[-2000:]
    n_sub = len(_rows(subset))
    clips = read_train_subset(tiny, subset)
    n_a = sum(c.device == "a" for c in clips)
    per_ir = batches.clips_per_response(n_a)
    n_irs = min(32, len(augment.load_irs(MICIRP)[0]))
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["train_clips"] == n_sub + n_irs * per_ir
    assert f"training subset {subset}: {n_sub} of" in res.stderr
    assert batches.devsim_summary(n_irs, per_ir, n_a, n_sub, None) in res.stderr
    # Calibration from that checkpoint on the same data set draws from the subset only.
    from tfsep_edge.model.checkpoint import load_checkpoint

    _, info = load_checkpoint(tmp_path / "run" / "best.pt")
    req = QuantizeRequest(checkpoint=tmp_path / "run" / "best.pt", calib=tiny)
    chosen = calibration_subset(req, info, lambda _m: None)
    assert chosen == subset.resolve()
    audio = select_calibration(tiny, None, 0, chosen)
    assert {p.name for p in audio.files} == {c.path.name for c in clips}


def test_subset_without_device_a_under_offline_simulation_is_one_line_exit_2(tiny, tmp_path):
    no_a = [c.filename for c in read_split(tiny, "train") if c.device != "a"][:12]
    split = _write_split(tmp_path / "no_a.csv", no_a)
    res = run_cli("train", tiny, "-o", tmp_path / "r", "--train-split", split, *QUICK)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0] == res.stderr.strip().splitlines()[-1]
    assert "no_a.csv: no device-A clips" in errors[0] and "--devsim none" in errors[0]
    assert "training subset" not in res.stderr  # refused before the subset's audio is decoded and cached
    assert not (tmp_path / "r").exists()  # and before the run folder is made


def test_bad_training_options_name_the_fix(tiny, tmp_path):
    from tfsep_edge.train.loop import train
    from tfsep_edge.train.options import TrainOptions

    with pytest.raises(TfsepError, match="--devsim-clips 0: must be at least 1"):
        TrainOptions(devsim_clips=0).check()
    with pytest.raises(TfsepError, match="ghost.csv: no such split file"):
        train(tiny, tmp_path / "r", {"train_split": str(tmp_path / "ghost.csv"), "epochs": 1}, progress=False)
    assert not (tmp_path / "r").exists()
