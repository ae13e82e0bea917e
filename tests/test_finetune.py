"""INT8 fine-tuning: from the calibrated quantization points, back through the same convert and
export path, reported before/after; its bad inputs."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from tests.conftest import run_cli
from tfsep_edge.core.config import LABELS
from tfsep_edge.core.errors import TfsepError
from tfsep_edge.datasets.calibration import load_windows, select_calibration
from tfsep_edge.datasets.synth import synthesize
from tfsep_edge.model.checkpoint import save_checkpoint
from tfsep_edge.model.tfsepnet import TFSepNet
from tfsep_edge.quant.analysis import run_float, run_int8
from tfsep_edge.quant.calibrate import QuantOptions
from tfsep_edge.quant.finetune import FinetuneOptions, finetune, trainable_twin, write_back
from tfsep_edge.quant.quantize import quantize_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A SYNTHETIC set and a C=8 model trained on it for a few seconds."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ft")
    data = synthesize(root / "synth", clips_per_class=8, seed=1, overlap=0.0)
    x, owners, kept = load_windows(select_calibration(data, None))
    y = torch.tensor([LABELS.index(lab) for lab in kept.labels])[owners]
    x = torch.from_numpy(x)
    torch.manual_seed(0)
    model = TFSepNet(8)
    opt = torch.optim.AdamW(model.parameters(), 5e-3)
    for _ in range(8):
        model.train()
        for i in range(0, len(x), 16):
            loss = torch.nn.functional.cross_entropy(model(x[i : i + 16]), y[i : i + 16])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    ckpt = root / "tiny.pt"
    save_checkpoint(model, ckpt, meta={"note": "SYNTHETIC test model"})
    artifact, _ = quantize_model(model, x.split(64), QuantOptions(engine="qnnpack"))  # qnnpack: exact int8
    return {"root": root, "data": data, "ckpt": ckpt, "model": model, "x": x, "artifact": artifact}


def test_write_back_of_the_untouched_twin_is_the_ptq_model(tiny):
    art = tiny["artifact"]
    int8 = write_back(art, trainable_twin(art))
    for (name, a), (_, b) in zip(art.int8_model.state_dict().items(), int8.state_dict().items(), strict=True):
        if isinstance(a, torch.Tensor) and a.is_quantized:
            assert torch.equal(a.int_repr(), b.int_repr()), name


def test_only_quantized_conv_weights_train(tiny):
    fq = trainable_twin(tiny["artifact"])
    names = [n for n, p in fq.named_parameters() if p.requires_grad]
    assert names and all(n.endswith((".weight", ".bias")) and ".body." in n for n in names)
    assert not fq.training  # BatchNorm folded and frozen, no dropout


def test_finetuned_model_moves_towards_fp32_on_its_grids(tiny):
    art = tiny["artifact"]
    logged: list[str] = []
    new, summary = finetune(art, tiny["data"], FinetuneOptions(epochs=3, lr=3e-4), log=logged.append)
    assert summary["epochs"] == 3 and summary["clips"] > 0 and new.info["finetune"] == summary
    losses = [float(line.rsplit("loss ", 1)[1]) for line in logged]
    # It trains, or starts at the floor: this tiny model's PTQ twin can already match its teacher
    # (loss 0.0002 -> 0.0001 -> 0.0004 on one AMD EPYC: Adam's noise, not divergence).
    assert len(losses) == 3 and losses[-1] <= max(losses[0] * 1.05, 1e-3), losses
    x = tiny["x"]
    before, after = run_int8(art, x), run_int8(new, x)
    assert not torch.equal(before, after)  # the weights moved
    # Same quantization points: every scale and zero point is PTQ's; the twin still mirrors INT8.
    for (name, a), (_, b) in zip(art.int8_model.state_dict().items(), new.int8_model.state_dict().items(), strict=True):
        if name.endswith(("scale", "zero_point")):
            assert torch.equal(a, b), name
    twin = run_float(new.fake_quant_model(), x)
    assert (twin.argmax(1) == after.argmax(1)).float().mean() >= 0.97


def test_quantize_with_finetune_reports_before_after_and_exports(tiny, tmp_path):
    from tfsep_edge.export.onnx_export import export
    from tfsep_edge.quant.pipeline import QuantizeRequest, run_quantize

    req = QuantizeRequest(
        checkpoint=tiny["ckpt"],
        calib=tiny["data"],
        eval=tiny["data"],
        engine="qnnpack",
        sensitivity=False,
        out=tmp_path / "q",
        finetune=tiny["data"],
        finetune_epochs=1,
    )
    out, report = run_quantize(req, log=lambda _m: None)
    ft = report["finetune"]
    assert set(ft["before"]) == set(ft["after"]) and ft["after"]["agreement"] == report["evaluation"]["agreement"]
    saved = json.loads((out / "quant_report.json").read_text()) if (out / "quant_report.json").is_file() else None
    assert saved is None or saved["finetune"]["epochs"] == 1
    summary = export(out, tmp_path / "ft_int8.onnx", int8=True, echo=lambda _t: None)
    assert (tmp_path / "ft_int8.onnx").is_file() and summary


def test_bad_finetune_input_is_one_line(tiny, tmp_path):
    with pytest.raises(TfsepError, match="--finetune-epochs 0: must be at least 1"):
        FinetuneOptions(epochs=0).check()
    bad = tmp_path / "badlabels"
    shutil.copytree(tiny["data"], bad, ignore=shutil.ignore_patterns(".tfsep-cache"))
    split = bad / "evaluation_setup" / "fold1_train.csv"
    lines = split.read_text().splitlines()
    split.write_text("\n".join([lines[0], lines[1].split("\t")[0] + "\tkitchen", *lines[2:]]) + "\n")
    with pytest.raises(TfsepError, match="labels outside the ten TAU22 scenes"):
        finetune(tiny["artifact"], bad, FinetuneOptions(epochs=1), log=lambda _m: None)
    with pytest.raises(TfsepError, match="needs a labelled TAU22 data folder"):
        finetune(tiny["artifact"], tmp_path, FinetuneOptions(epochs=1), log=lambda _m: None)
    args = ["--calib", tiny["data"], "--finetune", tiny["data"], "--finetune-epochs", "0"]
    res = run_cli("quantize", tiny["ckpt"], *args)
    assert res.returncode == 2 and "--finetune-epochs 0" in res.stderr
    assert res.stderr.strip().count("\n") == 0 and "Traceback" not in res.stderr
