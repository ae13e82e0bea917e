"""tfsep-edge export --tflite and the LiteRT runtime: FP32 parity, INT8 = the project's own
quantization (the twin's scales, zero points and int8 weights; agreement with the INT8 ONNX),
validation that rejects broken graphs, metadata, dynamic batch, torch-free predict/bench/budget,
bad input. Untrained C=12 models with randomised BN/AdaResNorm statistics; tiny quantizations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("ai_edge_litert")

from conftest import run_cli  # noqa: E402

from tfsep_edge.core import config  # noqa: E402
from tfsep_edge.core.config import DEFAULT_FRONTEND  # noqa: E402
from tfsep_edge.core.tflite_format import operator_counts, read_metadata, schema  # noqa: E402
from tfsep_edge.export import onnx_export as export  # noqa: E402
from tfsep_edge.export import rule, tflite_export  # noqa: E402
from tfsep_edge.export import tflite_fp32 as tflite_graph  # noqa: E402
from tfsep_edge.export.reference import validation_waves  # noqa: E402
from tfsep_edge.export.tflite_flatbuffer import FlatGraph, Quant  # noqa: E402
from tfsep_edge.model.tfsepnet import random_model  # noqa: E402
from tfsep_edge.runtime.tflite_classifier import TfliteClassifier  # noqa: E402

CFG = DEFAULT_FRONTEND


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tflite")


@pytest.fixture(scope="module")
def ckpt(work) -> Path:
    from tfsep_edge.model.checkpoint import save_checkpoint

    path = work / "c12.pt"
    save_checkpoint(random_model(), path)
    return path


def _quantized(work: Path, ckpt: Path, name: str, **options) -> Path:
    from tfsep_edge.core.kinds import QUANTIZED_FILE as MODEL_FILE
    from tfsep_edge.model.checkpoint import load_model
    from tfsep_edge.quant.artifact import artifact_payload
    from tfsep_edge.quant.calibrate import QuantOptions
    from tfsep_edge.quant.quantize import quantize_model
    from tfsep_edge.signal.frontend import log_mel_torch

    waves = torch.from_numpy(validation_waves(CFG, bundled=4, synthetic=12))
    batches = [log_mel_torch(waves[:8]), log_mel_torch(waves[8:])]
    art = quantize_model(load_model(ckpt), batches, QuantOptions(engine="x86", **options))[0]
    out = work / name
    out.mkdir()
    torch.save(artifact_payload(art), out / MODEL_FILE)
    return out


@pytest.fixture(scope="module")
def qdir(work, ckpt) -> Path:
    return _quantized(work, ckpt, "q12")  # the defaults: float stem, float means


@pytest.fixture(scope="module")
def qdir_all_int8(work, ckpt) -> Path:
    return _quantized(work, ckpt, "q12_all", observer="minmax", float_layers=(), float_means=False)


def _export(src, out, **kw):
    kw.setdefault("timing", False)
    return tflite_export.export_tflite(src, out, echo=lambda _s: None, **kw)


@pytest.fixture(scope="module")
def fp32(work, ckpt) -> Path:
    out = work / "fp32.tflite"
    _export(ckpt, out)
    return out


@pytest.fixture(scope="module")
def int8(work, qdir) -> Path:
    out = work / "int8.tflite"
    _export(qdir, out, int8=True)
    return out


def _mels(n: int, seed: int = 0) -> np.ndarray:
    from tfsep_edge.signal.frontend import log_mel

    waves = validation_waves(CFG, bundled=0, synthetic=n)
    return np.ascontiguousarray(log_mel(waves, CFG)[:, None]).astype(np.float32)


def test_fp32_parity_dynamic_batch_and_metadata(fp32, ckpt):
    from tfsep_edge.model.checkpoint import load_model

    x = _mels(5)
    with torch.no_grad():
        ref = load_model(ckpt)(torch.from_numpy(x)).numpy()
    clf = TfliteClassifier(fp32)
    assert np.abs(clf.run(x) - ref).max() <= rule.FP32_ABS
    for n in (1, 3, 5, 2):  # the interpreter is resized per batch size
        assert np.abs(clf.run(x[:n]) - ref[:n]).max() <= rule.FP32_ABS
    meta = read_metadata(fp32.read_bytes())
    assert json.loads(meta[config.META_LABELS]) == list(config.LABELS)
    assert meta[config.META_WIDTH] == "12" and meta[config.META_PRECISION] == "fp32"
    assert json.loads(meta[config.META_FRONTEND]) == CFG.to_dict()
    assert json.loads(meta[config.META_BUDGET])["macs"] == 1_650_149
    assert clf.precision == "fp32" and clf.width == 12 and clf.labels == config.LABELS


def split_transitions(model) -> int:
    """Transition blocks after the first: add_model builds them with split_transition_block."""
    from tfsep_edge.model.tfsepnet import TimeFreqSepConvs

    return sum(1 for m in model.feature if isinstance(m, TimeFreqSepConvs) and m.transition) - 1


def test_graph_is_nhwc_without_layout_transposes(fp32):
    ops = operator_counts(fp32.read_bytes())
    # no TRANSPOSE at all (the stock conversion has 28), and the shuffle is a renaming: no
    # split, gather or slice moves channels; the one CONCATENATION of each transition block
    # after the first (split_transition_block) is all that copies
    moves = {"TRANSPOSE", "SPLIT", "GATHER", "SLICE", "STRIDED_SLICE"}
    assert not set(ops) & (moves | {"DIV", "SQRT", "BATCH_MATMUL"}), ops
    assert ops.get("CONCATENATION", 0) == split_transitions(random_model(12)), ops


@pytest.mark.parametrize("width, groups", [(40, None), (20, 2)])
def test_shuffle_renaming_is_exact_at_other_widths_and_groups(tmp_path, width, groups):
    """Wide blocks (C=40: 40..160 channels, 10 groups) and another group count: the channel
    order tracked through blocks, norms, pools and the classifier gives PyTorch's logits."""
    from tfsep_edge.model.tfsepnet import TFSepNet

    model = random_model(width, seed=1)
    if groups is not None:
        other = TFSepNet(width, shuffle_groups=groups).eval()
        other.load_state_dict(model.state_dict())
        model = other
    g, x_in, out = tflite_graph.build_fp32(model, CFG)
    data = g.pack([x_in], [out], {}, "")
    ops = operator_counts(data)
    assert not set(ops) & {"TRANSPOSE", "SPLIT"} and ops.get("CONCATENATION", 0) == split_transitions(model)
    path = tmp_path / "model.tflite"
    path.write_bytes(data)
    x = _mels(2)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.abs(TfliteClassifier(path, check=False).run(x) - ref).max() <= rule.FP32_ABS


def test_int8_is_the_projects_quantization(int8, qdir):
    """Same int8 weights (GPTQ-rounded) and scales as the twin, and output within the bound."""
    from tfsep_edge.quant.artifact import load_quantized

    fq = load_quantized(qdir).fake_quant_model("int8")
    body = fq.feature[2].freq_dw_conv.body  # a depthwise int8 conv of block 1 (the twin's FakeQuantConv)
    w, scales = body.weight.double().numpy(), body.w_scale.double().numpy()
    s = schema()
    model = s.ModelT.InitFromPackedBuf(int8.read_bytes(), 0)
    tensors = {t.name.decode(): t for t in model.subgraphs[0].tensors}
    t = tensors["feature.2.freq.dw.weight"]
    stored = np.frombuffer(bytes(model.buffers[t.buffer].data), np.int8).reshape(t.shape)  # (1, kh, kw, C)
    expected = np.round(w / scales[:, None, None, None]).astype(np.int8)[:, 0].transpose(1, 2, 0)[None]
    assert np.array_equal(stored, expected)
    assert np.allclose(t.quantization.scale, scales.astype(np.float32), rtol=0, atol=0)
    out_q = fq.feature[2].freq_dw_conv.body.out
    act = tensors["feature.2.freq.dw"].quantization
    assert act.scale[0] == np.float32(out_q.scale) and act.zeroPoint[0] == out_q.zero_point
    x = _mels(6)
    with torch.no_grad():
        twin = fq(torch.from_numpy(x)).numpy()
    step = float(fq.classifier.body.out.scale)
    assert np.abs(TfliteClassifier(int8).run(x) - twin).max() <= rule.INT8_OUTPUT_STEPS * step


def test_int8_agrees_with_the_int8_onnx(work, qdir, int8):
    onnx_path = work / "int8.onnx"
    export.export(qdir, onnx_path, int8=True, timing=False, echo=lambda _s: None)
    from tfsep_edge.runtime.classifier import OnnxClassifier

    waves = validation_waves(CFG)
    a = TfliteClassifier(int8).logits_from_waveforms(waves)
    b = OnnxClassifier(onnx_path).logits_from_waveforms(waves)
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.99
    assert np.abs(a - b).max() < 0.05  # both mirror the twin; a rounding edge moves a pooled logit by < a step


def test_int8_with_int8_stem_and_means(work, qdir_all_int8):
    """Everything int8 (stem with an int8 PAD, int8 means): still within the bound of the twin."""
    out = work / "int8_all.tflite"
    summary = _export(qdir_all_int8, out, int8=True)
    v = summary["validation"]
    assert v["max_diff_output_steps"] <= rule.INT8_OUTPUT_STEPS
    ops = operator_counts(out.read_bytes())
    assert ops["QUANTIZE"] >= 5 and ops["DEQUANTIZE"] >= 5


def test_validation_rejects_wrong_models(work, ckpt, qdir, monkeypatch):
    """Float graphs with every bias 1e-3 off or the channel order lost, INT8 graphs with the
    shuffle left out or the biases at the wrong scale: each fails validation and leaves nothing
    at OUT."""
    folder = work / "rejects"
    folder.mkdir()
    real_fold = tflite_graph.fold_bn
    monkeypatch.setattr(tflite_graph, "fold_bn", lambda c, b: (lambda w, bias: (w, bias + 1e-3))(*real_fold(c, b)))
    with pytest.raises(rule.ExportValidationError, match="differ from PyTorch"):
        _export(ckpt, folder / "fp32.tflite")
    monkeypatch.undo()
    # FP32: the channel order lost (every whole-tensor block told the shuffle moves nothing)
    monkeypatch.setattr(tflite_graph, "shuffle_positions", lambda c, g: list(range(c)))
    with pytest.raises(rule.ExportValidationError, match="differ from PyTorch"):
        _export(ckpt, folder / "fp32.tflite")
    monkeypatch.undo()
    # INT8: the shuffle not folded (transition rows in natural order), and separately every
    # int8 conv's bias quantized at the weight scale alone (s_in forgotten)
    monkeypatch.setattr(tflite_graph, "shuffle_sources", lambda c, g: list(range(c)))
    with pytest.raises(rule.ExportValidationError, match="fake-quant twin"):
        _export(qdir, folder / "int8.tflite", int8=True)
    monkeypatch.undo()
    real_conv = tflite_graph.conv

    def bias_at_weight_scale(g, x, w, b, name, relu, stride=1, same=False, wq=None, out_quant=None):
        if wq is not None and b is not None:
            b = b * x.quant.scale[0]
        return real_conv(g, x, w, b, name, relu, stride, same, wq, out_quant)

    monkeypatch.setattr(tflite_graph, "conv", bias_at_weight_scale)
    with pytest.raises(rule.ExportValidationError, match="fake-quant twin"):
        _export(qdir, folder / "int8.tflite", int8=True)
    assert list(folder.iterdir()) == []  # no OUT, no temporary file


def test_batch_mixing_graph_is_caught(work, ckpt, monkeypatch):
    """Logits -> their cumulative sum over the batch: the first example is untouched, yet caught."""
    real = tflite_graph.build_fp32

    def mixing(model, cfg):
        g, x_in, out = real(model, cfg)
        mixed = g.activation("mixed", out.shape)
        g.op("CUMSUM", [out, g.const("axis", np.array(0, np.int32))], [mixed], g.options("CumsumOptions"))
        return g, x_in, mixed

    monkeypatch.setattr(tflite_graph, "build_fp32", mixing)
    with pytest.raises(rule.ExportValidationError, match="batch dimension broken"):
        _export(ckpt, work / "mixing.tflite")
    assert not (work / "mixing.tflite").exists()


def test_deterministic(work, ckpt):
    a, b = work / "det_a.tflite", work / "det_b.tflite"
    _export(ckpt, a)
    _export(ckpt, b)
    assert a.read_bytes() == b.read_bytes()


def _tiny_model(path: Path, shape=(1, 1, 128, 44), int8_io: bool = False) -> Path:
    """A hand-made .tflite: logits = a fixed linear map of the input; int8_io: int8 input and output."""
    g = FlatGraph()
    qin, qout = Quant.per_tensor(0.05, 3), Quant.per_tensor(0.02, -5)
    x = g.activation("x", shape, "INT8" if int8_io else "FLOAT32", qin if int8_io else None)
    xf = x
    if int8_io:
        xf = g.activation("xf", shape)
        g.op("DEQUANTIZE", [x], [xf])
    tg = tflite_graph

    n = int(np.prod(shape[1:]))
    flat = tg.reshape(g, xf, (1, n), "flat")
    w = np.random.default_rng(0).standard_normal((10, n)) / n
    y = tg.fully_connected(g, flat, w, np.arange(10) * 0.1, "logits")
    if int8_io:
        yq = g.activation("yq", y.shape, "INT8", qout)
        g.op("QUANTIZE", [y], [yq])
        y = yq
    path.write_bytes(g.pack([x], [y], {}, "tiny"))
    return path


def test_int8_input_and_output_are_quantized_with_the_files_params(work):
    path = _tiny_model(work / "tiny_int8.tflite", int8_io=True)
    clf = TfliteClassifier(path)
    assert clf.precision == "int8" and clf.width is None
    x = _mels(3)
    q = np.clip(np.round(x / 0.05) + 3, -128, 127)
    s = schema()
    model = s.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    w_t = next(t for t in model.subgraphs[0].tensors if t.name == b"logits.weight")
    w = np.frombuffer(bytes(model.buffers[w_t.buffer].data), np.float32).reshape(w_t.shape)
    expected = (q - 3).reshape(3, -1) * 0.05 @ w.T + np.arange(10) * 0.1
    assert np.abs(clf.run(x) - expected).max() <= 0.02  # one output step


def test_predict_bench_budget_torch_free(work, fp32, int8, ckpt, data_dir, no_torch):
    """predict/bench on .tflite run without torch; predict's labels match the FP32 ONNX export's."""
    onnx_path = work / "fp32.onnx"
    export.export(ckpt, onnx_path, timing=False, echo=lambda _s: None)
    audio = data_dir / "micirp"
    outs = {}
    for m in (fp32, onnx_path):
        csv = work / f"{m.name}.tsv"
        r = run_cli("predict", m, audio, "--csv", csv, "--threads", "2", env=no_torch)
        assert r.returncode == 0, r.stderr
        outs[m.suffix] = [line.split("\t") for line in csv.read_text().splitlines()[1:]]
    assert [row[1] for row in outs[".tflite"]] == [row[1] for row in outs[".onnx"]]
    probs = [np.array([[float(v) for v in row[2:]] for row in outs[k]]) for k in (".tflite", ".onnx")]
    assert np.abs(probs[0] - probs[1]).max() < 1e-4
    r = run_cli("bench", fp32, int8, "--runs", "20", "--warmup", "2", "--json", work / "b.json", env=no_torch)
    assert r.returncode == 0, r.stderr
    res = json.loads((work / "b.json").read_text())["models"]
    assert [x["runtime"] for x in res] == ["litert", "litert"] and [x["precision"] for x in res] == ["fp32", "int8"]
    assert res[0]["macs_per_clip"] == 1_650_149
    assert "deploy on this machine, litert C=12: " in r.stdout  # FP32 or INT8: whichever measured faster
    r = run_cli("budget", int8, "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["params"] == 6838 and rep["param_bytes_basis"] == "stored quantized weights"
    assert 0 < rep["param_bytes"] < 6838 * 4


@pytest.mark.slow
def test_bad_inputs(work, ckpt, fp32, data_dir):
    notes = work / "notes.tflite"
    notes.write_text("not a flatbuffer")
    other_shape = _tiny_model(work / "other_shape.tflite", shape=(1, 1, 64, 44))
    cases = [
        (["predict", notes, data_dir / "micirp"], "not a TFLite model"),
        (["predict", other_shape, data_dir / "micirp"], "shape [1, 1, 64, 44]"),
        (["bench", notes], "not a TFLite model"),
        (["export", ckpt, "--onnx", work / "x.onnx", "--tflite", work / "x.tflite"], "both --onnx and --tflite"),
        (["export", ckpt], "neither --onnx nor --tflite"),
        (["export", ckpt, "--tflite", work / "x.tflite", "--int8"], "never quantized"),
        (["export", ckpt, "--tflite", work / "x.tflite", "--frontend"], "ONNX only"),
        (["export", ckpt, "--tflite", work / "x.onnx"], "must end in .tflite"),
    ]
    for args, needle in cases:
        r = run_cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], (args, r.stderr)
    assert not (work / "x.tflite").exists() and not (work / "x.onnx").exists()


def _verify(*args):
    from typer.testing import CliRunner

    from tfsep_edge.cli import app

    return CliRunner().invoke(app, ["verify", *map(str, args)])


def _alter_int8_weight(src: Path, dst: Path, tensor: str) -> None:
    """`src` with one byte of an int8 weight changed in place: its largest-magnitude entry
    pushed to the other end of the int8 range."""
    s = schema()
    data = bytearray(src.read_bytes())
    model = s.Model.GetRootAs(data, 0)
    sub = model.Subgraphs(0)
    t = next(sub.Tensors(i) for i in range(sub.TensorsLength()) if sub.Tensors(i).Name().decode() == tensor)
    w = model.Buffers(t.Buffer()).DataAsNumpy().view(np.int8)  # a view into `data`
    i = int(np.abs(w.astype(int)).argmax())
    w[i] = 127 if w[i] < 0 else -127
    dst.write_bytes(bytes(data))


def test_verify_accepts_the_export_and_rejects_an_altered_int8_weight(work, ckpt, qdir, int8):
    """`verify` on the untouched INT8 file passes against the twin; one int8 byte of the
    classifier's weight changed after export fails (tens of output steps), exit 1; the INT8
    file given its float checkpoint is a user error, exit 2."""
    r = _verify(int8, qdir)
    assert r.exit_code == 0, r.output
    assert f"verified {int8}: INT8 TFLite, input logmel" in r.output and "in LiteRT (XNNPACK)" in r.output
    assert "output steps" in r.output
    altered = work / "altered_int8.tflite"
    _alter_int8_weight(int8, altered, "classifier.weight")
    r = _verify(altered, qdir)
    assert r.exit_code == 1 and "fails the export rule" in r.output and "fake-quant twin" in r.output, r.output
    r = _verify(int8, ckpt)
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
    assert "is INT8; give the `tfsep-edge quantize` folder" in r.output
