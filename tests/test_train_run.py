"""Training runs end to end: beats chance, resumes exactly, DDP on 2 CPU processes, bad inputs."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from tests.conftest import REPO, run_cli
from tfsep_edge.core.errors import TfsepError
from tfsep_edge.datasets.synth import synthesize
from tfsep_edge.datasets.tau import read_split
from tfsep_edge.model.checkpoint import load_checkpoint, read_checkpoint
from tfsep_edge.train import loop as train_mod
from tfsep_edge.train.teacher import save_teacher_logits

FAST = {"mixup_alpha": 0, "mixstyle_p": 0, "devsim": "none", "threads": 1, "batch_size": 16}


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("data") / "synth", clips_per_class=30, seed=0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("tiny") / "synth", clips_per_class=4, seed=1)


def _metrics(run) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_a_few_epochs_beat_chance_clearly(synth, tmp_path):
    summary = train_mod.train(synth, tmp_path / "run", {**FAST, "epochs": 12, "warmup_epochs": 1}, progress=False)
    rows = _metrics(tmp_path / "run")
    assert [int(r["epoch"]) for r in rows] == list(range(1, 13))
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    # Chance is 0.1 (120 balanced clips: sd 0.027); this run reached 0.44 when written.
    assert summary["best_val_acc"] >= 0.25
    model, info = load_checkpoint(tmp_path / "run" / "best.pt")
    assert model.width == 12 and info["meta"]["synthetic_data"] is True
    assert info["meta"]["val_acc"] == pytest.approx(summary["best_val_acc"])
    assert float(rows[-1]["lr"]) == 0.0


def test_resume_continues_exactly_where_it_stopped(tiny, tmp_path, monkeypatch):
    opts = {**FAST, "epochs": 3, "warmup_epochs": 1, "mixup_alpha": 0.3, "mixstyle_p": 0.5, "devsim": "online"}
    opts["ir_dir"] = str(REPO / "tests" / "data" / "micirp")
    train_mod.train(tiny, tmp_path / "full", opts, progress=False)

    # Interrupt the second run right after epoch 2 is saved (as Ctrl-C would between epochs).
    real_write, calls = train_mod.write_text_atomic, []

    def write_then_interrupt(path, text):
        real_write(path, text)
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "write_text_atomic", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(tiny, tmp_path / "cut", opts, progress=False)
    monkeypatch.setattr(train_mod, "write_text_atomic", real_write)
    assert read_checkpoint(tmp_path / "cut" / "last.pt")["train_state"]["epoch"] == 2

    summary = train_mod.train(tiny, tmp_path / "cut", {}, resume=True, progress=False)
    assert summary["trained_epochs"] == 1
    full, cut = _metrics(tmp_path / "full"), _metrics(tmp_path / "cut")
    strip = [{k: v for k, v in r.items() if k not in ("seconds", "clips_per_s")} for r in full]
    assert strip == [{k: v for k, v in r.items() if k not in ("seconds", "clips_per_s")} for r in cut]
    a = read_checkpoint(tmp_path / "full" / "last.pt")["state_dict"]
    b = read_checkpoint(tmp_path / "cut" / "last.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_killed_run_leaves_a_loadable_last_checkpoint(tiny, tmp_path):
    args = [sys.executable, "-m", "tfsep_edge.cli", "train", str(tiny), "-o", str(tmp_path / "run")]
    args += ["--epochs", "50", "--devsim", "none", "--threads", "1", "--batch-size", "8", "--mixstyle-p", "0"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            if (tmp_path / "run" / "metrics.csv").exists() and len(_metrics(tmp_path / "run")) >= 2:
                break
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    finally:
        proc.kill()  # SIGKILL mid-epoch (or mid-write)
        proc.wait()
    payload = read_checkpoint(tmp_path / "run" / "last.pt")
    assert payload["train_state"]["epoch"] >= 2
    load_checkpoint(tmp_path / "run" / "last.pt")
    res = run_cli(
        "train", tiny, "-o", tmp_path / "run", "--resume", "--epochs", str(payload["train_state"]["epoch"] + 1)
    )
    assert res.returncode == 0, res.stderr


@pytest.mark.slow
def test_ddp_two_cpu_processes_give_a_working_checkpoint(tiny, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "tfsep_edge.cli", "train", str(tiny), "-o", str(tmp_path / "ddp"), "--epochs", "2"]
    cmd += ["--warmup-epochs", "1", "--batch-size", "8", "--threads", "1", "--json"]
    # Offline device simulation too: rank 0 builds the simulated clips, rank 1 waits and maps them.
    cmd += [
        "--devsim",
        "offline",
        "--devsim-irs",
        "2",
        "--devsim-clips",
        "5",
        "--dir-path",
        str(REPO / "tests/data/micirp"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = [line for line in res.stdout.splitlines() if line.startswith("{")]
    assert len(summary) == 1  # only rank 0 reports
    info_run = json.loads(summary[0])
    assert info_run["world_size"] == 2
    assert info_run["train_clips"] == len(read_split(tiny, "train")) + 2 * 5
    model, info = load_checkpoint(tmp_path / "ddp" / "best.pt")
    assert len(_metrics(tmp_path / "ddp")) == 2
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["best.pt", "last.pt", "metrics.csv"]
    x = torch.randn(2, 1, 128, 44)
    assert torch.isfinite(model(x)).all()
    assert info["meta"]["options"]["batch_size"] == 8


# --- bad input ---------------------------------------------------------------------------------------


def _one_line_error(res, *needles):
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1, res.stderr
    for n in needles:
        assert n in res.stderr, res.stderr


def test_cli_bad_data_folders(tiny, tmp_path):
    _one_line_error(run_cli("train", tmp_path, "-o", tmp_path / "r"), "no meta.csv")
    broken = tmp_path / "broken"
    shutil.copytree(tiny, broken, ignore=shutil.ignore_patterns(".tfsep-cache"))
    removed = [c.path for c in read_split(broken, "train")[:2]]
    for p in removed:
        p.unlink()
    res = run_cli("train", broken, "-o", tmp_path / "r")
    _one_line_error(res, "2 audio files", "missing", removed[0].name)


def test_bad_splits_in_process(tiny, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny, bad, ignore=shutil.ignore_patterns(".tfsep-cache"))
    split = bad / "evaluation_setup" / "fold1_train.csv"
    lines = split.read_text().splitlines()
    split.write_text("\n".join([lines[0], lines[1].replace("\tairport", "\tbeach"), *lines[2:]]) + "\n")
    with pytest.raises(TfsepError, match="labels outside"):
        train_mod.train(bad, tmp_path / "r1", FAST, progress=False)
    split.write_text(lines[0] + "\n")
    with pytest.raises(TfsepError, match="split is empty"):
        train_mod.train(bad, tmp_path / "r2", FAST, progress=False)


def test_cli_width_mismatch_on_resume_and_cuda_absent(tiny, tmp_path):
    train_mod.train(tiny, tmp_path / "r", {**FAST, "epochs": 1}, progress=False)
    before = (tmp_path / "r" / "last.pt").read_bytes()
    res = run_cli("train", tiny, "-o", tmp_path / "r", "--resume", "--width", "20", "--epochs", "2")
    _one_line_error(res, "width 12", "--width 20")
    assert (tmp_path / "r" / "last.pt").read_bytes() == before
    with pytest.raises(TfsepError, match="--resume"):  # a run is there and --resume is missing
        train_mod.train(tiny, tmp_path / "r", FAST, progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(TfsepError, match="no CUDA device"):
            train_mod.train(tiny, tmp_path / "g", {**FAST, "device": "cuda"}, progress=False)


def test_teacher_logits_must_align(tiny, tmp_path):
    names = [c.filename for c in read_split(tiny, "train")]
    good = tmp_path / "t.npy"
    np.save(good, np.random.default_rng(0).standard_normal((len(names), 10)).astype(np.float32))
    good.with_suffix(".filenames.txt").write_text("\n".join(names) + "\n")
    opts = {**FAST, "epochs": 1, "teacher": str(good)}
    train_mod.train(tiny, tmp_path / "ok", opts, progress=False)
    # A teacher checkpoint, and logits precomputed from it, both train.
    saved = save_teacher_logits(tmp_path / "ok" / "best.pt", tiny, tmp_path / "t.pt")
    assert torch.load(saved, weights_only=True)["filenames"] == names
    train_mod.train(tiny, tmp_path / "ok2", {**opts, "teacher": str(saved)}, progress=False)
    ckpt_teacher = {**opts, "teacher": str(tmp_path / "ok" / "best.pt"), "mixup_alpha": 0.3}
    assert train_mod.train(tiny, tmp_path / "ok3", ckpt_teacher, progress=False)["trained_epochs"] == 1

    short = tmp_path / "short.npy"
    np.save(short, np.zeros((len(names) - 1, 10), dtype=np.float32))
    with pytest.raises(TfsepError, match="teacher logit rows"):
        train_mod.train(tiny, tmp_path / "r1", {**opts, "teacher": str(short)}, progress=False)
    swapped = tmp_path / "swapped.pt"
    torch.save({"logits": torch.zeros(len(names), 10), "filenames": [names[1], names[0], *names[2:]]}, swapped)
    with pytest.raises(TfsepError, match="not in fold1_train.csv order"):
        train_mod.train(tiny, tmp_path / "r2", {**opts, "teacher": str(swapped)}, progress=False)
    res = run_cli("train", tiny, "-o", tmp_path / "r3", "--teacher", short, "--devsim", "none")
    _one_line_error(res, "teacher logit rows")
