"""tfsep-edge export: parity (FP32/INT8, log-mel/waveform input), clean graph, metadata,
dynamic batch, atomic write, determinism, bad inputs. Untrained C=12 models with randomised
BatchNorm/AdaResNorm statistics; the INT8 model is a tiny quantization (16 calibration clips)."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from conftest import run_cli  # noqa: E402

# noqa: E402
from tfsep_edge.core import config  # noqa: E402
from tfsep_edge.core.config import DEFAULT_FRONTEND  # noqa: E402

# noqa: E402
from tfsep_edge.export import onnx_export as export  # noqa: E402

# noqa: E402
from tfsep_edge.export import rule as export_rule  # noqa: E402
from tfsep_edge.export.reference import validation_waves  # noqa: E402
from tfsep_edge.model.tfsepnet import random_model  # noqa: E402


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="module")
def ckpt(work) -> Path:
    from tfsep_edge.model.checkpoint import save_checkpoint

    path = work / "c12.pt"
    save_checkpoint(random_model(), path)
    return path


@pytest.fixture(scope="module")
def qdir(work, ckpt) -> Path:
    from tfsep_edge.core.kinds import QUANTIZED_FILE
    from tfsep_edge.model.checkpoint import load_model
    from tfsep_edge.quant.artifact import artifact_payload
    from tfsep_edge.quant.calibrate import QuantOptions
    from tfsep_edge.quant.quantize import quantize_model
    from tfsep_edge.signal.frontend import log_mel_torch

    waves = torch.from_numpy(validation_waves(DEFAULT_FRONTEND, bundled=4, synthetic=12))
    batches = [log_mel_torch(waves[:8]), log_mel_torch(waves[8:])]
    art = quantize_model(load_model(ckpt), batches, QuantOptions(engine="x86", observer="minmax", float_layers=()))[0]
    out = work / "q12"
    out.mkdir()
    torch.save(artifact_payload(art), out / QUANTIZED_FILE)
    return out


def _export(src, out, **kw):
    kw.setdefault("timing", False)
    return export.export(src, out, echo=lambda _s: None, **kw)


def _session(path: Path):
    return export.ort_session(path)


@pytest.fixture(scope="module")
def fp32_logmel(work, ckpt) -> Path:
    out = work / "fp32.onnx"
    _export(ckpt, out)
    return out


def test_fp32_logmel_parity_and_dynamic_batch(fp32_logmel, ckpt):
    from tfsep_edge.model.checkpoint import load_model

    model = load_model(ckpt)
    x = torch.randn(5, 1, 128, 44)
    with torch.no_grad():
        ref = model(x).numpy()
    s = _session(fp32_logmel)
    assert s.get_inputs()[0].shape[0] == "batch"
    for n in (1, 5):
        out = s.run(None, {"logmel": x[:n].numpy()})[0]
        assert out.shape == (n, 10)
        assert np.abs(out - ref[:n]).max() <= 1e-4


def test_graph_is_clean(fp32_logmel):
    m = onnx.load(str(fp32_logmel))
    ops = [n.op_type for n in m.graph.node]
    inits = {i.name for i in m.graph.initializer}
    assert "Shape" not in ops and "Transpose" not in ops  # no shape chains, the shuffle is folded
    for n in m.graph.node:  # every shape / index / axes input is a constant
        if n.op_type in ("Reshape", "Gather", "Split"):
            assert all(name in inits for name in n.input[1:]), n.name
        assert not n.doc_string
    assert all(i.data_location == onnx.TensorProto.DEFAULT and not i.external_data for i in m.graph.initializer)
    assert not list(fp32_logmel.parent.glob("*.data"))
    assert {p.key for p in m.metadata_props} == {
        config.META_INPUT,
        config.META_LABELS,
        config.META_FRONTEND,
        config.META_WIDTH,
        config.META_PRECISION,
        config.META_VERSION,
        config.META_BUDGET,
    }  # and nothing else (no stack traces)
    onnx.checker.check_model(str(fp32_logmel), full_check=True)


def test_metadata(fp32_logmel):
    meta = {p.key: p.value for p in onnx.load(str(fp32_logmel)).metadata_props}
    assert meta[config.META_INPUT] == "logmel"
    assert json.loads(meta[config.META_LABELS]) == list(config.LABELS)
    assert json.loads(meta[config.META_FRONTEND]) == DEFAULT_FRONTEND.to_dict()
    assert meta[config.META_WIDTH] == "12" and meta[config.META_PRECISION] == "fp32"
    budget = json.loads(meta[config.META_BUDGET])
    assert budget["params"] == 6838 and budget["macs"] > 1_000_000  # the report's C=12 count
    assert budget["stored_param_bytes"] == budget["stored_bytes_by_type"]["total"] > 0


def test_fp32_waveform_parity(work, ckpt):
    from tfsep_edge.model.checkpoint import load_model
    from tfsep_edge.signal.frontend import log_mel_torch

    out = work / "fp32_wave.onnx"
    summary = _export(ckpt, out, frontend=True)
    assert summary["validation"]["max_abs_logit_diff"] <= 1e-3
    waves = torch.from_numpy(validation_waves(DEFAULT_FRONTEND, bundled=2, synthetic=3))
    with torch.no_grad():
        ref = load_model(ckpt)(log_mel_torch(waves)).numpy()
    s = _session(out)
    assert s.get_inputs()[0].shape == ["batch", 32000]
    got = s.run(None, {"waveform": waves.numpy()})[0]
    assert np.abs(got - ref).max() <= 1e-3
    assert np.allclose(s.run(None, {"waveform": waves[:1].numpy()})[0], got[:1], atol=1e-5)
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta[config.META_INPUT] == "waveform"


@pytest.mark.parametrize("frontend", [False, True])
def test_int8_parity(work, qdir, frontend):
    from tfsep_edge.quant.artifact import load_quantized
    from tfsep_edge.quant.twin import output_step
    from tfsep_edge.signal.frontend import log_mel_torch

    out = work / f"int8_{frontend}.onnx"
    summary = _export(qdir, out, int8=True, frontend=frontend)
    v = summary["validation"]
    assert v["max_diff_output_steps"] <= export_rule.INT8_OUTPUT_STEPS and "twin" in v["reference"]
    # On other inputs too: the file is the fake-quant twin up to rounding (export_rule's docstring).
    art = load_quantized(qdir)
    waves = torch.from_numpy(validation_waves(DEFAULT_FRONTEND, bundled=4, synthetic=20))
    mels = log_mel_torch(waves)
    twin = art.fake_quant_model()
    with torch.no_grad():
        ref = twin(mels).numpy()
    s = _session(out)
    got = s.run(None, {s.get_inputs()[0].name: (waves if frontend else mels).numpy()})[0]
    assert np.abs(got - ref).max() <= export_rule.int8_tolerance(output_step(twin))
    m = onnx.load(str(out))
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta[config.META_PRECISION] == "int8"
    inits = {i.name: i for i in m.graph.initializer}
    weights = {i.data_type for i in m.graph.initializer if i.name.endswith("weight_int8")}
    producer = {o: n for n in m.graph.node for o in n.output}
    conv_inputs = [producer[n.input[0]] for n in m.graph.node if n.op_type == "Conv"]
    # every conv reads uint8 (OpenVINO's default precision compiles no signed activations), int8 weights
    assert weights == {onnx.TensorProto.INT8}
    assert {inits[dq.input[2]].data_type for dq in conv_inputs if dq.op_type == "DequantizeLinear"} == {
        onnx.TensorProto.UINT8
    }
    budget = json.loads(meta[config.META_BUDGET])["stored_bytes_by_type"]
    assert budget["int8_weights"] > 0 and budget["int32_biases"] > 0 and budget["float_weights"] == 0
    if platform.machine().lower() in ("x86_64", "amd64"):
        # onnxruntime must not build u8s8 integer convs on x86: without VNNI they saturate
        # (see onnx_int8.hold_int8); the optimized graph keeps the convs in float there, with
        # its default session options (any program) and with tfsep-edge's.
        import onnxruntime as ort

        from tfsep_edge.runtime.classifier import session_options

        for kind, opts in (("default", ort.SessionOptions()), ("tfsep", session_options(1))):
            opts.optimized_model_filepath = str(work / f"int8_{frontend}.{kind}.opt.onnx")
            opts.log_severity_level = 3
            ort.InferenceSession(str(out), opts, providers=["CPUExecutionProvider"])
            ops = {n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node}
            assert not ops & {"QLinearConv", "ConvInteger", "MatMulInteger", "QLinearMatMul"}, (kind, ops)


def test_onnx_graphs_reduce_only_with_reducemean(work, fp32_logmel, qdir):
    """OpenVINO 2026.4's ARM plugin refuses any ReduceSum of these graphs (it rewrites the axis
    into an invalid one: "Axis 365072220161 out of the tensor rank range", seen under qemu on
    cortex-a72 and -a76); the norms take the channels' mean of the sums of squares instead.
    make test-arm compiles every ONNX kind in OpenVINO on those CPUs."""
    import onnx

    out = work / "int8_reduce.onnx"
    _export(qdir, out, int8=True)
    for path in (fp32_logmel, out):
        ops = {n.op_type for n in onnx.load(str(path)).graph.node}
        assert "ReduceMean" in ops and not ops & {"ReduceSum", "ReduceL1", "ReduceL2", "ReduceProd"}, (path, ops)


def test_int8_onnx_runs_in_openvino(work, qdir):
    """The INT8 ONNX is portable: OpenVINO's CPU plugin compiles it as it is, with its default
    settings and with f32 (on CPUs with VNNI, and in bf16, earlier graphs failed: "No suitable
    implementations") and gives onnxruntime's labels.
    With VNNI (32-bit int8 accumulation) and f32 float parts, OpenVINO computes the same int8
    arithmetic: within the export rule's bound of the onnxruntime logits. Without VNNI its u8s8
    convs saturate 16-bit pair sums (docs/export.md; up to 12% of the logit spread seen under
    qemu -cpu Haswell), so there only the labels and a loose bound are checked."""
    ov = pytest.importorskip("openvino")
    from tfsep_edge.bench.machine import machine_info
    from tfsep_edge.quant.artifact import load_quantized
    from tfsep_edge.quant.twin import output_step
    from tfsep_edge.signal.frontend import log_mel

    out = work / "int8_openvino.onnx"
    _export(qdir, out, int8=True)
    mels = log_mel(validation_waves(DEFAULT_FRONTEND, bundled=4, synthetic=28), DEFAULT_FRONTEND)[:, None]
    s = _session(out)
    ref = s.run(None, {s.get_inputs()[0].name: mels})[0]
    info = machine_info(1)
    exact = info["arch"].lower() not in ("x86_64", "amd64") or any("vnni" in f for f in info["isa"])
    if exact:
        bound = export_rule.int8_tolerance(output_step(load_quantized(qdir).fake_quant_model()))
    else:
        bound = 0.25 * np.ptp(ref, axis=1).mean()
    core = ov.Core()
    for precision in ("default", "f32"):  # the default is bf16 where the CPU has it: the float parts in bf16
        config = {"INFERENCE_NUM_THREADS": 1} | ({"INFERENCE_PRECISION_HINT": "f32"} if precision == "f32" else {})
        compiled = core.compile_model(str(out), "CPU", config)
        got = np.concatenate([compiled({0: m[None]})[compiled.output(0)] for m in mels])
        assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.9, precision
        if precision == "f32":
            assert np.abs(got - ref).max() <= bound, (np.abs(got - ref).max(), bound, exact)
        else:  # bf16 keeps 8 significant bits: the norms' float parts move logits by a few 1e-3
            assert np.abs(got - ref).max() <= 0.25 * np.ptp(ref, axis=1).mean(), precision


def test_failed_validation_leaves_nothing(work, ckpt, monkeypatch):
    from typer.testing import CliRunner

    from tfsep_edge.cli import app

    folder = work / "atomic"
    folder.mkdir()
    out = folder / "bad.onnx"
    monkeypatch.setattr(export_rule, "FP32_ABS", -1.0)  # no graph can pass: validation must fail
    monkeypatch.setattr(export_rule, "FP32_REL", 0.0)
    with pytest.raises(export.ExportValidationError):
        _export(ckpt, out)
    result = CliRunner().invoke(app, ["export", str(ckpt), "--onnx", str(out)])
    assert result.exit_code == 1
    assert list(folder.iterdir()) == []  # no OUT, no temporary file


@pytest.mark.parametrize("int8", [False, True])
def test_batch_mixing_graph_is_caught(work, ckpt, qdir, monkeypatch, int8):
    """A graph whose outputs depend on the other examples of the batch fails validation, even
    when the first example is untouched: logits -> their cumulative sum over the batch."""
    from onnx import helper, numpy_helper

    real_build = export.build_graph

    def mixing(*args, **kwargs):
        model = real_build(*args, **kwargs)
        g = model.graph
        for node in g.node:
            node.output[:] = ["pre_logits" if o == "logits" else o for o in node.output]
        g.initializer.append(numpy_helper.from_array(np.array(0, np.int64), "batch_axis"))
        g.node.append(helper.make_node("CumSum", ["pre_logits", "batch_axis"], ["logits"]))
        return model

    monkeypatch.setattr(export, "build_graph", mixing)
    out = work / f"mixing_{int8}.onnx"
    with pytest.raises(export.ExportValidationError, match="batch dimension broken"):
        _export(qdir if int8 else ckpt, out, int8=int8)
    assert not out.exists()


def test_deterministic(work, ckpt):
    a, b = work / "det_a.onnx", work / "det_b.onnx"
    _export(ckpt, a)
    _export(ckpt, b)
    assert a.read_bytes() == b.read_bytes()


def test_budget_on_onnx_and_quantized(work, qdir):
    out = work / "budget_int8.onnx"
    _export(qdir, out, int8=True)
    r = run_cli("budget", out, "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["params"] == 6838 and rep["param_bytes_basis"] == "stored quantized weights"
    assert 0 < rep["param_bytes"] < 6838 * 4
    r = run_cli("budget", qdir, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["params"] == 6838
    assert "Warning" not in r.stderr, r.stderr  # torch's deprecation notices on loading quantized tensors


@pytest.mark.slow
def test_bad_inputs(work, ckpt):
    cases = [
        (["export", ckpt, "--onnx", work / "x.onnx", "--int8"], "quantize"),
        (["export", ckpt, "--onnx", work / "missing" / "x.onnx"], "does not exist"),
        (["export", ckpt, "--onnx", work / "x.onnx", "--opset", "9"], "--opset 9"),
    ]
    text = work / "notes.txt"
    text.write_text("not a checkpoint")
    cases.append((["export", text, "--onnx", work / "x.onnx"], str(text)))
    fake = work / "fakeq"  # a quantize-looking folder whose model file is text
    fake.mkdir()
    (fake / "model_int8.pt").write_text("not a model")
    cases.append((["export", fake, "--int8", "--onnx", work / "x.onnx"], "model_int8.pt"))
    for args, needle in cases:
        r = run_cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], r.stderr
        if needle in (str(text), "model_int8.pt"):  # the message names the fix too
            assert "tfsep-edge train" in lines[0] or "tfsep-edge quantize" in lines[0], lines[0]
    assert not (work / "x.onnx").exists()


def test_output_is_a_file_with_the_users_permissions(work, ckpt):
    taken = work / "taken.onnx"
    taken.mkdir()
    r = run_cli("export", ckpt, "--onnx", taken)
    assert r.returncode == 2 and "is a folder" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    out = work / "perm.onnx"
    old = os.umask(0o022)
    try:
        _export(ckpt, out)
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644  # not mkstemp's owner-only 0600


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder(work, ckpt):
    folder = work / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        r = run_cli("export", ckpt, "--onnx", folder / "x.onnx")
        assert r.returncode == 2 and "not writable" in r.stderr
    finally:
        folder.chmod(0o755)


def test_read_only_folder_reported(work, ckpt, monkeypatch):
    """The read-only branch even when running as root (os.access says no)."""
    from typer.testing import CliRunner

    from tfsep_edge.cli import app
    from tfsep_edge.core import fileio

    real_access = os.access
    monkeypatch.setattr(fileio.os, "access", lambda p, mode: Path(p) != work and real_access(p, mode))
    result = CliRunner().invoke(app, ["export", str(ckpt), "--onnx", str(work / "ro2.onnx")])
    assert result.exit_code == 2 and "not writable" in result.output
    assert not (work / "ro2.onnx").exists()


def test_metadata_keys_keep_their_stored_names():
    """config.META_* name the keys for every format; the strings stored in files never change,
    so models exported before the rename still load."""
    keys = [config.META_INPUT, config.META_LABELS, config.META_FRONTEND, config.META_WIDTH, config.META_PRECISION]
    keys += [config.META_VERSION, config.META_BUDGET]
    names = ("input", "labels", "frontend", "width", "precision", "version", "budget")
    assert keys == [f"tfsep_edge.{name}" for name in names]


def _verify(*args):
    from typer.testing import CliRunner

    from tfsep_edge.cli import app

    return CliRunner().invoke(app, ["verify", *map(str, args)])


def test_verify_accepts_the_export_and_rejects_an_altered_weight(work, ckpt, fp32_logmel):
    """`verify` on the untouched file passes with export's summary lines; one float initializer
    changed after export (a classifier bias + 0.01, ~90x the FP32 tolerance) fails, exit 1."""
    from onnx import numpy_helper

    r = _verify(fp32_logmel, ckpt)
    assert r.exit_code == 0, r.output
    assert f"verified {fp32_logmel}: FP32 ONNX (opset 17), input logmel" in r.output
    assert "against the PyTorch float model" in r.output and "onnx.checker full check passed" in r.output
    model = onnx.load(str(fp32_logmel))
    bias = next(i for i in model.graph.initializer if i.name == "classifier.bias")
    values = numpy_helper.to_array(bias).copy()
    values[3] += 0.01
    bias.CopyFrom(numpy_helper.from_array(values, bias.name))
    altered = work / "altered.onnx"
    onnx.save(model, str(altered))
    r = _verify(altered, ckpt)
    assert r.exit_code == 1 and "fails the export rule" in r.output and "differ from PyTorch" in r.output, r.output


def test_verify_reads_a_file_without_metadata_from_its_graph(work, ckpt, fp32_logmel):
    """A file another tool made carries no tfsep-edge metadata: precision and input from the graph."""
    model = onnx.load(str(fp32_logmel))
    del model.metadata_props[:]
    bare = work / "bare.onnx"
    onnx.save(model, str(bare))
    r = _verify(bare, ckpt, "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output.strip().splitlines()[-1])
    assert summary["precision"] == "fp32" and summary["input"] == "logmel" and summary["budget"]["params"] == 6838


def test_verify_bad_inputs(work, ckpt, fp32_logmel):
    cut = work / "cut.onnx"
    cut.write_bytes(fp32_logmel.read_bytes()[:2000])
    cases = [
        ((ckpt, ckpt), "verify takes an ONNX model or a .tflite model"),  # the source given as MODEL_FILE
        ((fp32_logmel, fp32_logmel), "give the checkpoint or `tfsep-edge quantize` folder"),
        ((work / "missing.onnx", ckpt), "no such model file"),
        ((cut, ckpt), "not a readable ONNX file"),
    ]
    for args, needle in cases:
        r = _verify(*args)
        assert r.exit_code == 2, (args, r.output)
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], (args, r.output)
