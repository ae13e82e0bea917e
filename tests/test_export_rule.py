"""The export validation rule (tfsep_edge/export/rule.py), both halves.

No false rejection: models trained with 8 seeds at widths 12 and 40 on a synthetic set,
quantized and exported to INT8 (spectrogram and waveform input), all pass; the worst figures
are printed (`pytest -s`) and must stay well inside the tolerance.
Real faults fail: one layer's activation scale off by 2x, two output channels of one conv
swapped, a dropped bias, a front end with the wrong window (a batch-mixing graph:
test_export.py): each export is rejected through the real command, exit 1, nothing at OUT.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from typer.testing import CliRunner  # noqa: E402

from tfsep_edge.cli import app  # noqa: E402

# noqa: E402
from tfsep_edge.export import onnx_export as export  # noqa: E402

# noqa: E402
from tfsep_edge.export import onnx_fp32 as onnx_graph  # noqa: E402

# noqa: E402
from tfsep_edge.export import onnx_int8 as onnx_qdq  # noqa: E402

# noqa: E402
from tfsep_edge.export import rule as export_rule  # noqa: E402

SEEDS = range(8)
WIDTHS = (12, 40)
TRAIN = {"mixup_alpha": 0, "mixstyle_p": 0, "devsim": "none", "threads": 1, "batch_size": 16, "epochs": 1}


def train_and_quantize(data: Path, out: Path, width: int, seed: int, integer: bool = False) -> Path:
    """One epoch of training (real weights, not random ones), then `tfsep-edge quantize`'s pipeline."""
    from tfsep_edge.quant.pipeline import QuantizeRequest, run_quantize
    from tfsep_edge.train.loop import train

    torch.set_num_threads(1)
    train(data, out, {**TRAIN, "warmup_epochs": 1, "width": width, "seed": seed}, progress=False)
    qdir = out / "int8"
    req = QuantizeRequest(out / "best.pt", data, out=qdir, sensitivity=False, num_calib=32, integer=integer)
    run_quantize(req, log=lambda m: None)
    return qdir


def sweep_one(data: Path, root: Path, width: int, seed: int) -> dict:
    qdir = train_and_quantize(data, root / f"c{width}_s{seed}", width, seed)
    rows = {}
    for frontend in (False, True):
        out = root / f"c{width}_s{seed}_{'wave' if frontend else 'mel'}.onnx"
        rows[frontend] = export.export(qdir, out, int8=True, frontend=frontend, timing=False, echo=lambda s: None)
    v = rows[False]["validation"]
    return {
        "width": width,
        "seed": seed,
        "steps": max(r["validation"]["max_diff_output_steps"] for r in rows.values()),
        "batch_steps": max(r["validation"]["batch1_max_abs_diff"] / v["output_step"] for r in rows.values()),
        "frontend_diff": rows[True]["validation"]["frontend_max_abs_diff"],
        "agreement_vs_pytorch_int8": v["vs_pytorch_int8"]["top1_agreement"],
        "pytorch_int8_steps": v["vs_pytorch_int8"]["max_abs_logit_diff"] / v["output_step"],
    }


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from tfsep_edge.datasets.synth import synthesize

    return synthesize(tmp_path_factory.mktemp("rule") / "synth", clips_per_class=8, seed=0)


@pytest.mark.slow
def test_no_false_rejection_over_seeds_and_widths(data, tmp_path):
    jobs = [(w, s) for w in WIDTHS for s in SEEDS]
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        rows = list(pool.map(sweep_one, [data] * len(jobs), [tmp_path] * len(jobs), *zip(*jobs, strict=True)))
    worst = {
        "models": len(rows),
        "max_output_steps": max(r["steps"] for r in rows),
        "max_batch_output_steps": max(r["batch_steps"] for r in rows),
        "max_frontend_diff": max(r["frontend_diff"] for r in rows),
        "min_agreement_vs_pytorch_int8": min(r["agreement_vs_pytorch_int8"] for r in rows),
        "max_pytorch_int8_output_steps": max(r["pytorch_int8_steps"] for r in rows),
    }
    print("\nseed sweep, worst case:", json.dumps(worst))
    assert worst["models"] == 16  # every export passed its own validation (else it raised)
    # Headroom: a correct export must stay far inside the rule, or another CPU could fail it.
    assert worst["max_output_steps"] <= export_rule.INT8_OUTPUT_STEPS / 2
    assert worst["max_frontend_diff"] <= export_rule.FRONTEND_ABS / 5


# --- faults -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qdir(data, tmp_path_factory) -> Path:
    return train_and_quantize(data, tmp_path_factory.mktemp("faulty") / "c12", 12, 0)


def reject(args: list, folder: Path) -> str:
    """Run `tfsep-edge export ARGS` in-process (so monkeypatched faults apply): exit 1, folder empty."""
    result = CliRunner().invoke(app, ["export", *map(str, args)])
    assert result.exit_code == 1, result.output
    assert list(folder.iterdir()) == []  # no OUT, no temporary file
    print(result.output.strip())
    return result.output


@pytest.fixture()
def out(tmp_path) -> Path:
    return tmp_path / "model.onnx"


def double_the_scale_of(monkeypatch, layer: str) -> None:
    """Make the ONNX writer quantize `layer`'s output with twice its scale while its consumers read the true one."""
    real = onnx_qdq.quantize

    def wrong_scale(g, x, scale, zero_point, base, stored=None):
        q = real(g, x, scale * 2 if base == layer else scale, zero_point, base, stored)
        return onnx_qdq.QTensor(q.name, scale, zero_point, q.stored) if isinstance(q, onnx_qdq.QTensor) else q

    monkeypatch.setattr(onnx_qdq, "quantize", wrong_scale)


def test_activation_scale_off_by_2x(qdir, out, monkeypatch):
    """An AdaResNorm island quantized with twice its scale while its consumers read the true one."""
    double_the_scale_of(monkeypatch, "feature.4.out")
    text = reject([qdir, "--int8", "--onnx", out], out.parent)
    assert "fake-quant twin" in text and "output steps" in text


def test_two_output_channels_swapped(qdir, out, monkeypatch):
    real = onnx_qdq.add_qconv

    def swapped(g, x, layer, base, rows=None, **kw):
        if base == "feature.6.trans":  # a transition conv's rows are already permuted: swap two of them
            rows = list(rows)
            rows[0], rows[1] = rows[1], rows[0]
        return real(g, x, layer, base, rows, **kw)

    monkeypatch.setattr(onnx_qdq, "add_qconv", swapped)
    reject([qdir, "--int8", "--onnx", out], out.parent)


def test_dropped_bias(qdir, out, monkeypatch):
    real = onnx_qdq.add_qconv

    def no_bias(g, x, layer, base, rows=None, **kw):
        if base == "feature.2.trans":  # the first block's transition conv (int8_graph.Int8Conv)
            layer = dataclasses.replace(layer, bias=None)
        return real(g, x, layer, base, rows, **kw)

    monkeypatch.setattr(onnx_qdq, "add_qconv", no_bias)
    reject([qdir, "--int8", "--onnx", out], out.parent)


@pytest.mark.parametrize("int8", [False, True])
def test_front_end_with_the_wrong_window(qdir, out, monkeypatch, int8):
    """The periodic Hann window (numpy's / torch's default) instead of the symmetric one."""
    monkeypatch.setattr(
        onnx_graph, "analysis_window", lambda cfg: np.hanning(cfg.win_length + 1)[:-1].astype(np.float32)
    )
    source = [qdir, "--int8"] if int8 else [qdir.parent / "best.pt"]
    text = reject([*source, "--frontend", "--onnx", out], out.parent)
    assert "front end inside the graph" in text


def test_correct_exports_of_the_same_model_pass(qdir, out):
    """The fault tests' model passes unfaulted (so what they catch is the fault)."""
    for source, int8, frontend in ((qdir, True, False), (qdir, True, True), (qdir.parent / "best.pt", False, True)):
        export.export(source, out, int8=int8, frontend=frontend, timing=False, echo=lambda s: None)
        out.unlink()


def test_xnnpack_on_an_integer_model_is_held_to_its_reference_kernels_within_the_wider_bound():
    step = 0.01
    reference = np.zeros((4, 10), np.float32)
    near = reference + 3 * step  # XNNPACK's own rounding, carried through the integer norm
    near[:, 0] += 0.5  # the same winner in both
    reference[:, 0] += 0.5
    got = export_rule.check_xnnpack_integer(near, reference, step)
    assert got["xnnpack_vs_reference_steps"] == pytest.approx(3) and got["xnnpack_top1_agreement"] == 1.0
    wrong = reference.copy()
    wrong[:, 1] += (export_rule.XNNPACK_INTEGER_STEPS + 1) * step
    with pytest.raises(export_rule.ExportValidationError, match="XNNPACK"):
        export_rule.check_xnnpack_integer(wrong, reference, step)


def test_float_rounding_bounds_of_an_integer_models_onnx():
    """Where onnxruntime's float requantization misses the exact bound: a typical input a couple of
    steps off and one quiet input far off pass; a worst input or a typical input beyond what
    rounding explains fails."""
    step = 0.01
    twin = np.zeros((24, 10), np.float32)
    near = twin.copy()
    near[:, 0] += 2 * step
    near[0, 1] += 12 * step  # the norms' amplification in one quiet input
    got = export_rule.check_float_rounding_integer(near, twin, step, "12.0 output steps (> 3)")
    assert got["float_rounding"]["worst_input_steps"] == pytest.approx(12)
    assert got["float_rounding"]["median_input_steps"] == pytest.approx(2)
    worst = near.copy()
    worst[3, 2] += (export_rule.XNNPACK_INTEGER_STEPS + 1) * step
    with pytest.raises(export_rule.ExportValidationError, match="worst input"):
        export_rule.check_float_rounding_integer(worst, twin, step, "exact bound missed")
    shifted = twin + (export_rule.TYPICAL_FLOAT_ROUNDING_STEPS + 1) * step  # every input off: a fault
    with pytest.raises(export_rule.ExportValidationError, match="median input"):
        export_rule.check_float_rounding_integer(shifted, twin, step, "exact bound missed")


@pytest.fixture(scope="module")
def integer_qdir(data, tmp_path_factory) -> Path:
    return train_and_quantize(data, tmp_path_factory.mktemp("faulty_integer") / "c12", 12, 0, integer=True)


@pytest.mark.slow
def test_a_fault_in_an_integer_onnx_is_caught_by_the_float_rounding_bounds_too(integer_qdir, out, monkeypatch):
    export.export(integer_qdir, out, int8=True, timing=False, echo=lambda s: None)  # the unfaulted model passes
    out.unlink()
    double_the_scale_of(monkeypatch, "feature.4.out")  # the integer norm's output
    text = reject([integer_qdir, "--int8", "--onnx", out], out.parent)
    assert "more than float requantization explains" in text and "--tflite" in text
