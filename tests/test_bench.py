"""`tfsep-edge bench`: the result schema, side-by-side runtimes, compare/plot, bad input. No timing asserts."""

from __future__ import annotations

import json
import platform

import pytest
import runtime_models as rm
from conftest import run_cli

from tfsep_edge.bench.machine import isa_features, machine_info
from tfsep_edge.bench.report import SCHEMA, compare_rows, load_result

STATS = {"min", "p50", "p90", "p99", "max", "mean", "std"}
TINY = ("--runs", "4", "--warmup", "1")


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    return rm.logmel_model(tmp_path_factory)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from tfsep_edge.model.checkpoint import save_checkpoint
    from tfsep_edge.model.tfsepnet import random_model

    path = tmp_path_factory.mktemp("ckpt") / "c12.pt"
    save_checkpoint(random_model(12), path)
    return path


def test_side_by_side_json(onnx_model, checkpoint, tmp_path):
    out = tmp_path / "r.json"
    done = run_cli("bench", onnx_model, checkpoint, *TINY, "--json", out)
    assert done.returncode == 0, done.stderr
    res = load_result(out)
    assert res["schema"] == SCHEMA and res["settings"]["mode"] == "model-only"
    assert res["settings"]["threads"] == 1 and res["settings"]["batch"] == 1
    assert [m["runtime"] for m in res["models"]] == ["onnxruntime", "torch-fp32"]
    for m in res["models"]:
        assert set(m["latency_ms"]) == STATS
        assert m["runs"] == 4 and m["width"] == 12
        assert 0 < m["latency_ms"]["min"] <= m["latency_ms"]["p50"] <= m["latency_ms"]["max"]
        assert m["load_ms"] > 0 and m["first_ms"] > 0 and m["throughput_per_s"] > 0
        assert m["frontend_ms"] is None
    assert res["models"][0]["vs_ort_fp32"] == pytest.approx(1.0)
    assert res["torch_imported"] is True
    assert res["peak_rss_mb"] > 0 and res["harness_overhead_ns"]["p50"] > 0
    fe = res["frontend_comparison"]
    assert fe["speedup_p50"] == pytest.approx(fe["reference_ms"]["p50"] / fe["numpy_ms"]["p50"])
    assert fe["fft_ms"]["p50"] > 0 and fe["frames_per_clip"] == 44  # the FFT alone, timed on its own
    machine = res["machine"]
    for key in ("cpu_model", "arch", "cores", "os", "python", "versions", "isa", "threads"):
        assert key in machine
    assert machine["versions"]["onnxruntime"]
    # The table names both models and the machine.
    assert "c12.pt" in done.stdout and onnx_model.name in done.stdout and "machine:" in done.stdout


def test_include_frontend_reports_its_share(onnx_model, tmp_path):
    out = tmp_path / "f.json"
    done = run_cli("bench", onnx_model, *TINY, "--include-frontend", "--batch", "2", "--json", out, "--markdown")
    assert done.returncode == 0, done.stderr
    m = load_result(out)["models"][0]
    assert load_result(out)["settings"]["mode"] == "wav-to-label"
    assert set(m["frontend_ms"]) == STATS and 0 < m["frontend_share"] < 1
    assert m["model_part_ms"]["p50"] < m["latency_ms"]["p50"]
    assert done.stdout.startswith("| model |")


def test_frontend_share_of_a_waveform_model_says_in_graph():
    """Its front end runs inside the graph: the numpy-side share (an input copy) is not its share."""
    from tfsep_edge.bench.report import _frontend_cell

    assert _frontend_cell({"frontend_in_model": True, "frontend_share": 0.002}) == "in graph"
    assert _frontend_cell({"frontend_in_model": False, "frontend_share": 0.25}) == "25%"
    assert _frontend_cell({"frontend_share": None}) == "-"


def test_efficiency_uses_metadata_macs(tmp_path):
    meta = rm.standard_meta("logmel", 12) | {"tfsep_edge.budget": json.dumps({"macs": 12_345_678})}
    path = rm.export_logmel(tmp_path / "m.onnx", meta=meta)
    out = tmp_path / "e.json"
    assert run_cli("bench", path, *TINY, "--json", out).returncode == 0
    res = load_result(out)
    m = res["models"][0]
    assert m["macs_per_clip"] == 12_345_678 and "metadata" in m["macs_source"]
    rate = res["peak_mac_rate"]["macs_per_s"]
    assert rate > 0
    assert m["efficiency"] == pytest.approx(12_345_678 / (m["model_part_ms"]["p50"] / 1e3 * rate))


def test_light_runtime_bench_without_torch(onnx_model, checkpoint, tmp_path, no_torch):
    out = tmp_path / "l.json"
    done = run_cli("bench", onnx_model, *TINY, "--json", out, env=no_torch)
    assert done.returncode == 0, done.stderr
    assert load_result(out)["torch_imported"] is False
    done = run_cli("bench", onnx_model, checkpoint, *TINY, env=no_torch)
    assert done.returncode == 2 and "needs PyTorch" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_compare_merges_machines_and_plots(onnx_model, tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert run_cli("bench", onnx_model, *TINY, "--json", a).returncode == 0
    assert run_cli("bench", onnx_model, *TINY, "--threads", "2", "--json", b).returncode == 0
    # Pretend b came from a Raspberry Pi: the table must keep the machines apart.
    data = json.loads(b.read_text())
    data["machine"]["board"]["board"] = "Raspberry Pi 5 Model B Rev 1.0"
    b.write_text(json.dumps(data))
    png, merged = tmp_path / "cmp.png", tmp_path / "cmp.json"
    done = run_cli("bench", "--compare", a, b, "--plot", png, "--json", merged, "--markdown")
    assert done.returncode == 0, done.stderr
    rows = json.loads(merged.read_text())["rows"]
    assert len(rows) == 2 and {r["threads"] for r in rows} == {1, 2}
    assert rows[1]["machine"] == "Raspberry Pi 5 Model B Rev 1.0"
    assert "Raspberry Pi 5" in done.stdout and done.stdout.startswith("| machine |")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert compare_rows([(a, load_result(a))])[0]["p50"] == load_result(a)["models"][0]["latency_ms"]["p50"]


def test_compare_takes_the_standard_benchmark_file(onnx_model, tmp_path):
    """benchmarks/run_standard.py files (several runs in one) merge like bench --json files."""
    one = tmp_path / "one.json"
    assert run_cli("bench", onnx_model, *TINY, "--json", one).returncode == 0
    single = json.loads(one.read_text())
    standard = tmp_path / "standard.json"
    standard.write_text(json.dumps({"schema": "tfsep-edge/bench-standard", "runs": {"a": single, "b": single}}))
    merged = tmp_path / "merged.json"
    done = run_cli("bench", "--compare", one, standard, "--json", merged)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(merged.read_text())["rows"]) == 3


@pytest.mark.parametrize(
    "args, message",
    [
        (["{model}", "--threads", "0"], "--threads 0"),
        (["{model}", "--runs", "0"], "--runs 0"),
        (["{model}", "--runs", "5", "--seconds", "1"], "not both"),
        (["{model}", "--batch", "0"], "--batch 0"),
        (["{junk}"], "not a loadable ONNX model"),
        (["{missing}"], "no such model file"),
        (["--compare", "{junk}"], "not a JSON result file"),
        (["--compare", "{other_json}"], "not a tfsep-edge bench result"),
        (["{model}", "--plot", "{png}"], "--plot"),
    ],
)
def test_bad_input_is_one_line_exit_2(onnx_model, tmp_path, args, message):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"garbage" * 30)
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    paths = {"model": onnx_model, "junk": junk, "missing": tmp_path / "x.onnx", "other_json": other}
    paths["png"] = tmp_path / "p.png"
    done = run_cli("bench", *[a.format(**paths) for a in args])
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr


def test_machine_record_reads_isa_flags():
    info = machine_info(3)
    assert info["threads"] == 3 and info["cores"] >= 1
    if platform.machine() == "x86_64":
        flags = {"flags": "fpu sse4_2 avx2 avx512f avx512_vnni"}
        assert isa_features(flags) == ["sse4_2", "avx2", "avx512f", "avx512_vnni"]


def test_pytorch_int8_folder_benches_beside_onnx(onnx_model, tmp_path):
    import torch

    from tfsep_edge.core.kinds import QUANTIZED_FILE
    from tfsep_edge.model.tfsepnet import random_model
    from tfsep_edge.quant.artifact import artifact_payload
    from tfsep_edge.quant.calibrate import QuantOptions
    from tfsep_edge.quant.quantize import quantize_model

    calib = [torch.randn(4, 1, 128, 44) for _ in range(2)]
    artifact, _ = quantize_model(random_model(12), calib, QuantOptions(observer="minmax"))
    folder = tmp_path / "q12"
    folder.mkdir()
    torch.save(artifact_payload(artifact), folder / QUANTIZED_FILE)
    out = tmp_path / "q.json"
    done = run_cli("bench", onnx_model, folder, *TINY, "--include-frontend", "--json", out)
    assert done.returncode == 0, done.stderr
    int8 = load_result(out)["models"][1]
    assert (int8["runtime"], int8["precision"], int8["width"]) == ("torch-int8", "int8", 12)
    assert int8["quantized_engine"] == "x86" and int8["macs_per_clip"] > 0 and int8["efficiency"] > 0
    assert "Warning" not in done.stderr
