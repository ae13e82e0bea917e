"""`make demo` end to end on a tiny schedule: every step of the pipeline through the real CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO


@pytest.mark.slow
def test_demo_runs_end_to_end_and_summarises(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "tfsep_edge.demo", "--out", str(out), "--epochs", "2", "--clips-per-class", "12"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = proc.stdout.split("== tfsep-edge demo summary")[1]
    assert "SYNTHETIC" in summary.splitlines()[0]
    for row in ("accuracy FP32", "accuracy INT8 (ONNX", "MACs per 1-s clip (NeSsi)", "fits the DCASE limits"):
        assert row in summary
    assert "1,650,149" in summary and "PASS" in summary
    for name in ("tfsepnet_fp32.onnx", "tfsepnet_int8.onnx", "tfsepnet_wave.onnx", "predictions.csv", "bench.json"):
        assert (out / name).is_file(), name


def test_demo_replaces_its_own_folder_and_refuses_others(tmp_path):
    from tfsep_edge.demo import MARKER, fresh_output

    out = tmp_path / "demo"
    fresh_output(out)  # new folder: made and marked
    (out / "train").mkdir()
    (out / "train" / "last.pt").write_bytes(b"old run")  # what made a second `make demo` fail
    fresh_output(out)
    assert sorted(p.name for p in out.iterdir()) == [MARKER]
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit, match="not made by the demo"):
        fresh_output(foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
    (out / "thesis.tex").write_text("added after the demo ran")  # a demo folder the user wrote into
    (out / "data").mkdir()
    with pytest.raises(SystemExit, match="thesis.tex"):
        fresh_output(out)
    assert (out / "thesis.tex").is_file() and (out / "data").is_dir()  # refused before removing anything
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(SystemExit, match="is a file"):
        fresh_output(a_file)
