"""Each family runs on the features it was trained on: the front end a checkpoint, artifact or file
records, else its family's preset (families.model_frontend), end to end.

Fixture: tests/data/easy_dcase/tfsepnet64_d17.ckpt, TF-SepNet-64 of easy_dcase_task1 (CpMel)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from tests import runtime_models as rm
from tests.conftest import run_cli
from tfsep_edge.core.config import DEFAULT_FRONTEND, FRONTENDS, LABELS
from tfsep_edge.core.errors import TfsepError
from tfsep_edge.model.checkpoint import load_checkpoint, save_checkpoint
from tfsep_edge.model.families import build_model, family_frontend, make_config, model_frontend

CPMEL, CPJKU = FRONTENDS["cpmel"], FRONTENDS["cpjku"]


@pytest.fixture(scope="module")
def easy(data_dir):
    return data_dir / "easy_dcase"


def one_line_exit_2(res, *needles):
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def small_v2(seed: int = 0):
    torch.manual_seed(seed)
    return build_model(make_config("tfsepnet-v2", width=8, depth=16)).eval()


# --- one place decides ------------------------------------------------------------------------------


def test_each_family_defaults_to_its_preset_and_a_recorded_front_end_wins():
    assert family_frontend("tfsepnet") == CPJKU == DEFAULT_FRONTEND
    assert family_frontend("bcresnet") == CPJKU
    assert family_frontend("tfsepnet-v2") == CPMEL
    assert model_frontend("tfsepnet-v2", None, "x") == CPMEL
    assert model_frontend("tfsepnet-v2", {}, "x") == CPMEL  # nothing recorded
    custom = CPMEL.to_dict() | {"log_offset": 1e-6}  # same shape, other numbers: the record wins
    assert model_frontend("tfsepnet-v2", custom, "x").log_offset == 1e-6
    # Only the mel bands are held to the family's input: a recorded hop of its own is its training choice.
    assert model_frontend("tfsepnet", {"hop_length": 500}, "x").n_frames == 64


def test_checkpoints_load_with_their_familys_front_end(easy, tmp_path):
    assert load_checkpoint(easy / "tfsepnet64_d17.ckpt")[1]["frontend"] == CPMEL
    assert load_checkpoint(easy / "bcresnet_c40.ckpt")[1]["frontend"] == CPJKU
    save_checkpoint(small_v2(), tmp_path / "v2.pt")  # no front end given: the family's is recorded
    payload = torch.load(tmp_path / "v2.pt", weights_only=True)
    assert payload["frontend"] == CPMEL.to_dict()
    assert load_checkpoint(tmp_path / "v2.pt")[1]["frontend"] == CPMEL


def test_lightning_run_config_names_the_front_end(easy, tmp_path):
    run = tmp_path / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(easy / "tfsepnet64_d17.ckpt", run / "checkpoints" / "epoch=0.ckpt")
    text = (easy / "run_config.yaml").read_text()
    (run / "config.yaml").write_text(text)
    assert load_checkpoint(run / "checkpoints" / "epoch=0.ckpt")[1]["frontend"] == CPMEL
    (run / "config.yaml").write_text(text.replace("n_mels: 512", "n_mels: 256"))
    with pytest.raises(
        TfsepError,
        match=r"epoch=0.ckpt: a custom front end gives 256x64 log-mels, but a tfsepnet-v2 takes 512 mel bands",
    ):
        load_checkpoint(run / "checkpoints" / "epoch=0.ckpt")
    (run / "config.yaml").write_text(text.replace("util.CpMel", "util.Cnn3Mel"))
    with pytest.raises(TfsepError, match=r"config.yaml: spec_extractor util.Cnn3Mel is not a front end"):
        load_checkpoint(run / "checkpoints" / "epoch=0.ckpt")


# --- a front end that does not fit the model: one line, exit 2 -------------------------------------


@pytest.mark.parametrize(
    "family, recorded, shape",
    [
        ("tfsepnet-v2", CPJKU, "128x44 log-mels, but a tfsepnet-v2 takes 512 mel bands (cpmel: 512x64)"),
        ("tfsepnet", CPMEL, "512x64 log-mels, but a tfsepnet takes 128 mel bands (cpjku: 128x44)"),
    ],
)
@pytest.mark.parametrize("command", ["export", "evaluate", "bench", "budget"])
def test_a_recorded_front_end_of_another_shape_is_refused(tmp_path, family, recorded, shape, command):
    model = small_v2() if family == "tfsepnet-v2" else build_model(make_config("tfsepnet", width=8)).eval()
    ckpt = tmp_path / "m.pt"
    save_checkpoint(model, ckpt, recorded)
    args = {
        "export": ["export", ckpt, "--onnx", tmp_path / "m.onnx"],
        "evaluate": ["evaluate", ckpt, tmp_path],
        "bench": ["bench", ckpt, "--runs", "1"],
        "budget": ["budget", ckpt],
    }[command]
    name = "cpjku" if recorded == CPJKU else "cpmel"
    one_line_exit_2(run_cli(*args), f"{ckpt}: the {name} front end gives {shape}", f"tfsep-edge train --model {family}")
    assert not (tmp_path / "m.onnx").exists()


def test_resuming_a_run_recorded_on_another_front_end_is_refused(tmp_path):
    from tfsep_edge.train import loop

    out = tmp_path / "run"
    out.mkdir()
    options = {"model": "tfsepnet-v2", "width": 8, "depth": 16}
    save_checkpoint(small_v2(), out / "last.pt", CPJKU, extra={"train_state": {"options": options}})
    with pytest.raises(TfsepError, match=r"last.pt: the cpjku front end gives 128x44 log-mels, but a tfsepnet-v2"):
        loop.open_run(tmp_path, out, {}, True, lambda msg: None)


def test_a_teacher_on_other_features_than_the_student_is_refused(tmp_path):
    from tfsep_edge.train.teacher import open_teacher

    save_checkpoint(build_model(make_config("tfsepnet", width=8)).eval(), tmp_path / "t.pt")
    with pytest.raises(TfsepError, match=r"t.pt: a teacher trained on cpjku features, the student trains on cpmel"):
        open_teacher(str(tmp_path / "t.pt"), 5.0, None, [], torch.device("cpu"), CPMEL)
    assert open_teacher(str(tmp_path / "t.pt"), 5.0, None, [], torch.device("cpu"), CPJKU).model is not None


# --- TF-SepNet-64 of easy_dcase_task1: export, predict, listen on cpmel ------------------------------


@pytest.mark.parametrize("suffix", ["onnx", "tflite"])
def test_tfsepnet64_checkpoint_exports_and_predicts_on_cpmel(easy, tmp_path, suffix):
    """FP32 export validated by the rule, then the torch-free runtime on a WAV gives the logits the
    torch model gives on log_mel_torch(wave, cpmel)."""
    if suffix == "tflite":
        pytest.importorskip("ai_edge_litert.interpreter")
    from tfsep_edge.export import rule
    from tfsep_edge.runtime.classifier import open_classifier
    from tfsep_edge.signal.audio import load_audio
    from tfsep_edge.signal.frontend import log_mel_torch

    ckpt, out = easy / "tfsepnet64_d17.ckpt", tmp_path / f"v2.{suffix}"
    res = run_cli("export", ckpt, f"--{suffix}", out)
    assert res.returncode == 0 and out.is_file(), res.stderr
    wav = rm.write_wav(tmp_path / "clip.wav", 1.0, seed=3)
    model, _ = load_checkpoint(ckpt)
    with torch.no_grad():
        ref = model(log_mel_torch(torch.from_numpy(load_audio(wav, CPMEL)[None, :32_000]), CPMEL)).numpy()[0]

    clf = open_classifier(out)
    assert clf.frontend == CPMEL and clf.input_kind == "logmel"
    np.testing.assert_allclose(clf.predict_file(wav), ref, rtol=0, atol=rule.fp32_tolerance(ref[None], False))

    res = run_cli("predict", out, wav, "--csv", tmp_path / "out.tsv")
    assert res.returncode == 0, res.stderr
    row = (tmp_path / "out.tsv").read_text().splitlines()[1].split("\t")
    probs = np.exp(ref - ref.max()) / np.exp(ref - ref.max()).sum()
    assert row[1] == LABELS[int(ref.argmax())]
    np.testing.assert_allclose(np.array(row[2:], float), probs, atol=2e-6)  # the CSV's 6 decimals

    if suffix == "onnx":  # listen's streaming front end (StreamLogMel) on cpmel: the same first window
        res = run_cli("listen", out, "--input", wav, "--json")
        assert res.returncode == 0, res.stderr
        first = json.loads(res.stdout.splitlines()[0])
        np.testing.assert_allclose(first["probs"], probs, atol=1e-4)


def test_tfsepnet64_waveform_onnx_computes_cpmel_inside(easy, tmp_path):
    """export --frontend: the in-graph front end is cpmel (the rule compares it with log_mel_torch)."""
    from tfsep_edge.runtime.classifier import open_classifier

    out = tmp_path / "v2w.onnx"
    res = run_cli("export", easy / "tfsepnet64_d17.ckpt", "--frontend", "--onnx", out)
    assert res.returncode == 0, res.stderr
    assert "in-graph front end vs log_mel" in res.stdout + res.stderr
    clf = open_classifier(out)
    assert clf.input_kind == "waveform" and clf.frontend == CPMEL


def test_bench_times_a_tfsepnet64_checkpoint_with_its_front_end(easy, tmp_path):
    res = run_cli(
        "bench", easy / "tfsepnet64_d17.ckpt", "--runs", "2", "--warmup", "0", "--include-frontend",
        "--json", tmp_path / "b.json",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    result = json.loads((tmp_path / "b.json").read_text())
    assert result["frontend_comparison"]["frontend"] == "cpmel"
    assert result["frontend_comparison"]["frames_per_clip"] == 64
