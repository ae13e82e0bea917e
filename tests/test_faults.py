"""Stages killed with SIGKILL midway and started again: the waveform cache, offline device
simulation and a training epoch each finish on the second start with what an uninterrupted run
gives; nothing a killed run leaves reads as complete.

The child processes slow the stage's inner step down (a sleep around it) so the kill lands
midway deterministically; the code under test is otherwise the package's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import run_cli
from tfsep_edge.datasets.cache import load_split
from tfsep_edge.datasets.synth import synthesize

REPO = Path(__file__).resolve().parents[1]
MICIRP = REPO / "tests" / "data" / "micirp"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("faults") / "synth", clips_per_class=4, seed=3)


def _start(code: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 120.0) -> None:
    """SIGKILL `proc` as soon as ready() holds; fail if it ends (or times out) first."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                pytest.fail(f"the stage ended before it was killed: {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("the stage never got midway")
            time.sleep(0.02)
    finally:
        proc.kill()  # SIGKILL: no finally block, no atexit handler runs in the child
        proc.wait()


def _temporaries(folder: Path) -> list[Path]:
    return sorted(folder.rglob(".*.tmp")) if folder.exists() else []


def _complete_caches(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("index.json") if json.loads(p.read_text()).get("complete")]


def test_killed_cache_build_leaves_nothing_complete_and_restarts_cleanly(data, tmp_path):
    cache = tmp_path / "cache"
    proc = _start(
        f"""
        import time
        from tfsep_edge.datasets import cache
        decode = cache._decode
        cache._decode = lambda path, cfg=cache.DEFAULT_FRONTEND: (time.sleep(0.1), decode(path, cfg))[1]
        cache.load_split({str(data)!r}, "train", {str(cache)!r}, progress=False)
        """
    )

    def midway() -> bool:  # a temporary with some rows written (its first row no longer all zero)
        tmps = _temporaries(cache)
        return bool(tmps) and tmps[0].stat().st_size > 0 and any(tmps[0].read_bytes()[:64])

    _kill_when(proc, midway)
    assert _temporaries(cache) and not _complete_caches(cache)  # killed: a temporary, nothing complete
    assert not list(cache.rglob("waves.f16"))

    again = load_split(data, "train", cache, progress=False)  # started again: builds it whole
    assert not _temporaries(cache)  # the killed build's temporary is gone, not left to fill the disk
    assert len(_complete_caches(cache)) == 1
    whole = load_split(data, "train", tmp_path / "uninterrupted", progress=False)
    rows = np.arange(len(whole))
    assert np.array_equal(again.waves.get(rows), whole.waves.get(rows))


@pytest.mark.slow
def test_killed_device_simulation_restarts_cleanly(data, tmp_path):
    cache = tmp_path / "cache"
    load_split(data, "train", cache, progress=False)  # the split's cache exists; devsim is what gets killed
    code = f"""
        import time
        from pathlib import Path
        import numpy as np
        from tfsep_edge.datasets.cache import load_split
        from tfsep_edge.train import augment, batches
        convolve = augment.convolve
        augment.convolve = lambda waves, irs: (time.sleep({{delay}}), convolve(waves, irs))[1]
        train = load_split({str(data)!r}, "train", {str(cache)!r}, progress=False)
        names, irs = augment.load_irs({str(MICIRP)!r})
        sim = batches.offline_device_simulation(train, names, irs, 3, 4, 0, Path({str(cache)!r}), progress=False)
        """
    proc = _start(code.replace("{delay}", "0.5"))  # 3 responses: 1.5 s of sleep
    _kill_when(proc, lambda: any("devsim-" in str(p) for p in _temporaries(cache)))
    devsim = [p for p in cache.iterdir() if p.name.startswith("devsim-")]
    assert len(devsim) == 1 and not (devsim[0] / "index.json").exists() and not (devsim[0] / "waves.f16").exists()

    resumed = _simulate(data, cache)  # started again, here: builds it whole
    assert not _temporaries(cache) and (devsim[0] / "index.json").is_file()
    once = _simulate(data, tmp_path / "fresh")
    assert len(resumed) == 3 * 4 and np.array_equal(resumed, once)


def _simulate(data: Path, cache: Path) -> np.ndarray:
    """The simulated clips of the killed child's call, run in this process."""
    from tfsep_edge.train import augment, batches

    train = load_split(data, "train", cache, progress=False)
    names, irs = augment.load_irs(MICIRP)
    sim = batches.offline_device_simulation(train, names, irs, 3, 4, 0, cache, progress=False)
    return sim.waves.get(np.arange(len(sim)))


@pytest.mark.slow
def test_killed_training_epoch_resumes_to_the_uninterrupted_result(data, tmp_path):
    args = ["--epochs", "3", "--warmup-epochs", "1", "--devsim", "none", "--threads", "1", "--batch-size", "8"]
    whole = run_cli("train", data, "-o", tmp_path / "whole", *args)
    assert whole.returncode == 0, whole.stderr

    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "tfsep_edge.cli", "train", str(data), "-o", str(run), *args]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )

    def second_epoch() -> bool:  # epoch 1 is saved: the kill lands in epoch 2 (or its save)
        metrics = run / "metrics.csv"
        return metrics.exists() and len(metrics.read_text().splitlines()) >= 2

    _kill_when(proc, second_epoch)
    assert not _temporaries(run) or all(p.suffix == ".tmp" for p in _temporaries(run))
    last = torch.load(run / "last.pt", map_location="cpu", weights_only=False)  # whole, never half written
    assert last["train_state"]["epoch"] in (1, 2)
    resumed = run_cli("train", data, "-o", run, "--resume")
    assert resumed.returncode == 0, resumed.stderr

    a = torch.load(tmp_path / "whole" / "last.pt", map_location="cpu", weights_only=False)
    b = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    assert a["train_state"]["epoch"] == b["train_state"]["epoch"] == 3
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for name, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][name]), name
    assert a["train_state"]["history"][-1]["val_acc"] == b["train_state"]["history"][-1]["val_acc"]
