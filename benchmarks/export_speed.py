"""Export speed benchmark: a plain `torch.onnx.export` against tfsep-edge's hand-built graph.

Same weights (untrained TF-SepNet with randomised BatchNorm/AdaResNorm statistics: latency does
not depend on the values), onnxruntime CPU, batch 1, one thread, ORT_ENABLE_ALL, all variants
timed round-robin in one process so machine load hits them alike. Also: INT8 QDQ (tiny
quantization) against FP32, and the waveform front end three ways (numpy, our matmul DFT in
the graph, ONNX's STFT op in the graph).

    .venv/bin/python benchmarks/export_speed.py [--widths 12 40] [--rounds 7]

Writes benchmarks/results/export_speed.json and .md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# noqa: E402
from tfsep_edge import __version__  # noqa: E402
from tfsep_edge.core.config import DEFAULT_FRONTEND as CFG  # noqa: E402
from tfsep_edge.export.onnx_export import ort_session  # noqa: E402
from tfsep_edge.export.onnx_fp32 import GraphBuilder, add_frontend, build_fp32  # noqa: E402
from tfsep_edge.export.onnx_int8 import build_int8  # noqa: E402
from tfsep_edge.export.reference import validation_waves  # noqa: E402
from tfsep_edge.model.tfsepnet import random_model  # noqa: E402
from tfsep_edge.signal.frontend import log_mel, log_mel_torch, mel_filterbank  # noqa: E402

OUT = REPO / "benchmarks" / "results"


def plain_export(model) -> onnx.ModelProto:
    """What a user gets from torch.onnx.export with the usual options (legacy exporter, opset 17)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            torch.zeros(1, 1, CFG.n_mels, CFG.n_frames),
            buf,
            dynamo=False,
            opset_version=17,
            input_names=["logmel"],
            output_names=["logits"],
            dynamic_axes={"logmel": {0: "batch"}, "logits": {0: "batch"}},
        )
    return onnx.load_from_string(buf.getvalue())


def stft_frontend(opset: int = 17) -> onnx.ModelProto:
    """The front end with ONNX's STFT op (the project's mel matrix as a constant)."""
    g = GraphBuilder(opset)
    n = CFG.clip_samples
    head = g.op(
        "Slice",
        ["waveform", g.const("s1", np.array([1])), g.const("e", np.array([n])), g.const("ax", np.array([1]))],
        "head",
    )
    tail = g.op(
        "Slice",
        ["waveform", g.const("s0", np.array([0])), g.const("e1", np.array([n - 1])), g.const("ax1", np.array([1]))],
        "tail",
    )
    emph = g.op("Sub", [head, g.op("Mul", [tail, g.const("pe", np.array(CFG.preemphasis, np.float32))], "sc")], "em")
    pad = CFG.n_fft // 2
    padded = g.op("Pad", [emph, g.const("pads", np.array([0, pad, 0, pad]))], "pad", mode="reflect")
    sig = g.op("Unsqueeze", [padded, g.const("uax", np.array([2]))], "sig")
    from tfsep_edge.signal.frontend import hann_window

    spec = g.op(
        "STFT",
        [sig, g.const("step", np.array(CFG.hop_length)), g.const("win", np.array(hann_window(2048)))],
        "stft",
        onesided=1,
    )
    power = g.op("ReduceSum", [g.op("Mul", [spec, spec], "sq"), g.const("lax", np.array([3]))], "pw", keepdims=0)
    mel = g.op("MatMul", [power, g.const("fb", np.ascontiguousarray(mel_filterbank(CFG).T))], "mel")
    logged = g.op("Log", [g.op("Add", [mel, g.const("off", np.array(CFG.log_offset, np.float32))], "mo")], "log")
    out = g.op(
        "Div",
        [
            g.op("Add", [logged, g.const("sh", np.array(CFG.norm_shift, np.float32))], "sh1"),
            g.const("scl", np.array(CFG.norm_scale, np.float32)),
        ],
        "logmel",
    )
    return _wrap(g, out, [CFG.n_frames, CFG.n_mels])


def matmul_frontend() -> onnx.ModelProto:
    g = GraphBuilder(17)
    return _wrap(g, add_frontend(g, "waveform", CFG), [1, CFG.n_mels, CFG.n_frames])


def _wrap(g, out_name, tail_shape) -> onnx.ModelProto:
    graph = helper.make_graph(
        g.nodes,
        "fe",
        [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", CFG.clip_samples])],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["batch", *tail_shape])],
        initializer=g.inits,
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", g.opset)])
    m.ir_version = 8
    return m


def tiny_int8(model):
    from tfsep_edge.quant.calibrate import QuantOptions
    from tfsep_edge.quant.quantize import quantize_model

    waves = torch.from_numpy(validation_waves(CFG, bundled=4, synthetic=12))
    batches = [log_mel_torch(waves[:8]), log_mel_torch(waves[8:])]
    art = quantize_model(model, batches, QuantOptions(engine="x86", observer="minmax"))[0]
    return art.fake_quant_model()


def time_round_robin(runners: dict, rounds: int, runs: int) -> dict:
    """{name: median over rounds of the per-round median ms}; every round runs every variant."""
    per = {k: [] for k in runners}
    for _ in range(rounds):
        for name, fn in runners.items():
            for _ in range(10):
                fn()
            ts = []
            for _ in range(runs):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
            per[name].append(float(np.median(ts) * 1e3))
    return {k: {"median_ms": float(np.median(v)), "min_round_ms": float(min(v))} for k, v in per.items()}


def session_runner(model: onnx.ModelProto, tmp: Path, name: str, feed: np.ndarray):
    path = tmp / f"{name}.onnx"
    onnx.save(model, str(path))
    s = ort_session(path)
    inp = s.get_inputs()[0].name
    return (lambda: s.run(None, {inp: feed})), path.stat().st_size, s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--widths", type=int, nargs="+", default=[12, 40])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(1)
    import onnxruntime as ort

    from tfsep_edge.bench.machine import machine_info

    result = {
        "what": "onnxruntime latency, batch 1, 1 thread, ORT_ENABLE_ALL, runtime.session_options (x86: "
        "session.disable_quant_qdq=1), round-robin; untrained weights "
        "with randomised statistics (latency does not depend on values)",
        "versions": {
            "tfsep_edge": __version__,
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
        },
        "machine": machine_info(1),
        "models": {},
    }
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        for width in args.widths:
            model = random_model(width)
            x = rng.standard_normal((1, 1, CFG.n_mels, CFG.n_frames)).astype(np.float32)
            xb = rng.standard_normal((5, 1, CFG.n_mels, CFG.n_frames)).astype(np.float32)
            with torch.no_grad():
                ref = model(torch.from_numpy(xb)).numpy()
            variants = {
                "plain_torch_onnx_export": plain_export(model),
                "tfsep_edge_fp32": build_fp32(model, False, 17),
                "tfsep_edge_int8_qdq": build_int8(tiny_int8(model), False, 17),
            }
            runners, entry = {}, {}
            for name, m in variants.items():
                fn, size, s = session_runner(m, tmp, f"{name}_{width}", x)
                out = s.run(None, {s.get_inputs()[0].name: xb})[0]
                runners[name] = fn
                entry[name] = {
                    "bytes": size,
                    "nodes": len(m.graph.node),
                    "max_abs_logit_diff_vs_torch_float": float(np.abs(out - ref).max()),
                }
            for name, t in time_round_robin(runners, args.rounds, args.runs).items():
                entry[name].update(t)
            p, o, q = (entry[k]["median_ms"] for k in variants)
            entry["speedup_ours_vs_plain"] = p / o
            entry["int8_over_fp32"] = q / o
            result["models"][f"C{width}"] = entry
            print(
                f"C={width}: plain {p:.3f} ms, ours FP32 {o:.3f} ms ({p / o:.2f}x), INT8 {q:.3f} ms "
                f"({q / o:.2f}x FP32)",
                flush=True,
            )
        # Front end alone: numpy vs the two in-graph versions.
        wave = validation_waves(CFG, bundled=1, synthetic=0)[:1]
        ref_mel = log_mel(wave)
        fe = {}
        runners = {"numpy_log_mel": lambda: log_mel(wave)}
        for name, m in (("onnx_matmul_dft", matmul_frontend()), ("onnx_stft_op", stft_frontend())):
            fn, size, s = session_runner(m, tmp, name, wave)
            got = s.run(None, {"waveform": wave})[0]
            got = got[:, 0] if got.ndim == 4 else np.swapaxes(got, -1, -2)  # -> (1, n_mels, frames)
            fe[name] = {"bytes": size, "max_abs_logmel_diff_vs_numpy": float(np.abs(got - ref_mel).max())}
            runners[name] = fn
        for name, t in time_round_robin(runners, args.rounds, args.runs).items():
            fe.setdefault(name, {}).update(t)
        result["frontend"] = fe
        print("front end: " + ", ".join(f"{k} {v['median_ms']:.3f} ms" for k, v in fe.items()))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "export_speed.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    lines = [
        "# Export speed (generated by benchmarks/export_speed.py; do not edit)",
        "",
        f"{result['what']}.",
        f"Machine: {result['machine'].get('cpu_model')}, ISA {result['machine'].get('isa')}, "
        f"load average {result['machine'].get('load_average')}",
        "",
        "| model | variant | median ms | bytes | nodes | max abs d logit vs PyTorch float |",
        "|---|---|---|---|---|---|",
    ]
    for mname, e in result["models"].items():
        for v in ("plain_torch_onnx_export", "tfsep_edge_fp32", "tfsep_edge_int8_qdq"):
            lines.append(
                f"| {mname} | {v} | {e[v]['median_ms']:.3f} | {e[v]['bytes']:,} | {e[v]['nodes']} | "
                f"{e[v]['max_abs_logit_diff_vs_torch_float']:.2g} |"
            )
        lines.append(f"| {mname} | ours FP32 speed-up over plain | {e['speedup_ours_vs_plain']:.2f}x | | | |")
        lines.append(f"| {mname} | INT8 / FP32 time | {e['int8_over_fp32']:.2f}x | | | |")
    lines += ["", "| front end (1 s, batch 1) | median ms | max abs d log-mel vs numpy |", "|---|---|---|"]
    for k, v in result["frontend"].items():
        lines.append(f"| {k} | {v['median_ms']:.3f} | {v.get('max_abs_logmel_diff_vs_numpy', 0):.2g} |")
    (OUT / "export_speed.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT / 'export_speed.json'} and .md")


if __name__ == "__main__":
    main()
