"""evaluate: Table-3 per-device metrics, and one code path for checkpoints, INT8 and ONNX models."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO, run_cli
from tfsep_edge.datasets import metrics as metrics_module
from tfsep_edge.datasets.synth import synthesize
from tfsep_edge.runtime import evaluate as ev


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from tfsep_edge.train.loop import train

    root = tmp_path_factory.mktemp("ev")
    data = synthesize(root / "synth", clips_per_class=6, seed=2)
    opts = {"epochs": 2, "warmup_epochs": 1, "devsim": "none", "threads": 1, "batch_size": 8}
    train(data, root / "run", opts, progress=False)
    return data, root / "run" / "best.pt"


def test_per_device_accuracy_follows_table_3():
    devices = ["a", "a", "b", "s4", "s4", "s5", "sim-x"]
    labels = np.array([0, 1, 2, 3, 4, 5, 6])
    preds = np.array([0, 9, 2, 3, 9, 9, 6])
    r = metrics_module.per_device_accuracy(preds, labels, devices)
    assert list(r["devices"])[:9] == ["a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6"]
    assert r["devices"]["a"] == 0.5 and r["devices"]["b"] == 1.0 and r["devices"]["c"] is None
    assert r["devices"]["s4"] == 0.5 and r["devices"]["s5"] == 0.0 and r["devices"]["sim-x"] == 1.0
    assert r["seen"] == pytest.approx(0.75)  # mean over seen devices present (a, b), not over clips
    assert r["unseen"] == pytest.approx(0.25)
    assert r["counts"]["a"] == 2 and r["counts"]["c"] == 0


def test_metrics_log_loss_and_confusion():
    logits = np.log(np.array([[0.5, 0.5] + [0] * 8, [0.25] * 4 + [0] * 6]) + 1e-30)
    m = metrics_module.metrics(logits, np.array([1, 3]), ["a", "s6"])
    assert m["log_loss"] == pytest.approx(-(np.log(0.5) + np.log(0.25)) / 2, rel=1e-6)
    assert m["accuracy"] == 0.0  # ties go to the first class
    assert np.array(m["confusion"]).sum() == 2 and m["confusion"][1][0] == 1


@pytest.mark.slow
def test_cli_evaluate_json_and_plot(trained, tmp_path):
    data, ckpt = trained
    res = run_cli("evaluate", ckpt, data, "--json", tmp_path / "r.json", "--plot", tmp_path / "r.png")
    assert res.returncode == 0, res.stderr
    assert "SYNTHETIC" in res.stdout and "S4" in res.stdout
    r = json.loads((tmp_path / "r.json").read_text())
    cm = np.array(r["confusion"])
    assert cm.sum() == r["clips"] == sum(r["device_counts"].values()) == 20
    assert r["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    seen = [r["per_device"][d] for d in ("a", "b", "c", "s1", "s2", "s3") if r["per_device"][d] is not None]
    assert r["seen_accuracy"] == pytest.approx(np.mean(seen))
    assert r["synthetic_data"] is True and r["model_kind"] == "checkpoint"
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_onnx_and_quantized_models_share_the_code_path(trained, tmp_path):
    import torch

    from tfsep_edge.export.onnx_export import export
    from tfsep_edge.model.checkpoint import load_checkpoint
    from tfsep_edge.quant.artifact import save_quantized
    from tfsep_edge.quant.calibrate import QuantOptions
    from tfsep_edge.quant.quantize import quantize_model

    data, ckpt = trained
    fp32 = ev.evaluate(ckpt, data, progress=False)
    export(ckpt, tmp_path / "m.onnx", timing=False, echo=lambda *a, **k: None)
    export(ckpt, tmp_path / "w.onnx", frontend=True, timing=False, echo=lambda *a, **k: None)
    for name in ("m.onnx", "w.onnx"):
        r = ev.evaluate(tmp_path / name, data, progress=False)
        assert r["model_kind"] == "onnx"
        assert r["confusion"] == fp32["confusion"]  # same predictions as the checkpoint
        assert r["log_loss"] == pytest.approx(fp32["log_loss"], abs=2e-3)
    # The ONNX path needs no torch: evaluate in a process where `import torch` fails.
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from tfsep_edge.runtime.evaluate import evaluate\n"
        f"print(evaluate({str(tmp_path / 'm.onnx')!r}, {str(data)!r}, progress=False)['accuracy'])"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert res.returncode == 0, res.stderr
    assert float(res.stdout) == pytest.approx(fp32["accuracy"])
    model, _ = load_checkpoint(ckpt)
    calib = [torch.randn(8, 1, 128, 44)]
    artifact, _ = quantize_model(model, calib, QuantOptions())
    save_quantized(artifact, tmp_path / "q")
    q = ev.evaluate(tmp_path / "q", data, progress=False)
    assert q["model_kind"] == "quantized" and q["clips"] == fp32["clips"]
    assert np.isfinite(q["log_loss"])


def test_evaluate_bad_inputs(trained, tmp_path):
    data, ckpt = trained
    res = run_cli("evaluate", tmp_path / "nope.pt", data)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "no such model" in res.stderr
    res = run_cli("evaluate", ckpt, data, "--split", "test")
    assert res.returncode == 2 and "no labels" in res.stderr
