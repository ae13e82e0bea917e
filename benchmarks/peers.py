"""Peers benchmark: tfsep-edge's ONNX and .tflite against the stock conversions of the same weights.

Same untrained TF-SepNets (benchmarks/models.py: randomised BN/AdaResNorm statistics; latency
does not depend on the values) at each width, every artifact made by this script:
- tfsep-edge: FP32/INT8 ONNX and FP32/INT8 .tflite (`tfsep_edge.export`, `tfsep_edge.tflite_export`,
  validated as every export is; INT8 from one quantize run on 64 noise log-mels);
- stock: `litert_torch.convert(model)` FP32, litert-torch's PT2E INT8 (PT2EQuantizer, per-channel
  symmetric, all ops, the same 64 calibration inputs one at a time: torch.export guards batch 1),
  a plain `torch.onnx.export` (legacy exporter, opset 17);
- runtimes: onnxruntime 1 thread, LiteRT + XNNPACK 1 thread, OpenVINO CPU (1 inference thread,
  LATENCY hint), PyTorch eager FP32 1 thread.
All of them timed by tfsep_edge.bench.measure (model only, batch 1) round-robin in ONE process,
so the machine's load hits them alike. Then a per-layer profile of the two .tflite graphs at the
widest width (cumulative prefixes: the graph cut before each layer, timed round-robin; the
difference of consecutive prefixes is the layer's cost), and agreement checks (OpenVINO vs
onnxruntime on the INT8 ONNX; .tflite INT8 vs the INT8 ONNX).

    .venv/bin/python benchmarks/peers.py [--widths 12 40 60] [--runs 300]

Needs the [peers] extra (litert-torch, openvino); writes benchmarks/results/peers.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

OUT = REPO / "benchmarks" / "results"
ROWS = (  # key, label
    ("tflite_fp32", "LiteRT + XNNPACK, tfsep-edge FP32 .tflite"),
    ("tflite_int8", "LiteRT + XNNPACK, tfsep-edge INT8 .tflite"),
    ("stock_fp32", "LiteRT + XNNPACK, stock `litert_torch.convert` FP32"),
    ("stock_int8", "LiteRT, stock PT2E INT8 (litert-torch PT2EQuantizer, per-channel)"),
    ("ov_plain", "OpenVINO on a plain `torch.onnx.export`"),
    ("ort_fp32", "onnxruntime, tfsep-edge FP32 ONNX"),
    ("ort_int8", "onnxruntime, tfsep-edge INT8 ONNX"),
    ("ort_plain", "onnxruntime, plain `torch.onnx.export`"),
    ("ov_fp32", "OpenVINO on tfsep-edge's FP32 ONNX"),
    ("ov_int8", "OpenVINO on tfsep-edge's INT8 ONNX"),
    ("torch_fp32", "PyTorch eager FP32"),
)


def stock_tflite(model, calib, out: Path, int8: bool) -> Path:
    """What a user gets from litert-torch: the module as it is, FP32 or PT2E INT8."""
    import litert_torch
    import torch

    args = (torch.zeros(1, 1, calib.shape[2], calib.shape[3]),)
    if not int8:
        out.write_bytes(litert_torch.convert(model.eval(), args).model_content())
        return out
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    m = prepare_pt2e(torch.export.export(model.eval(), args).module(), quantizer)
    with torch.no_grad():
        for x in calib:
            m(x[None])
    m = convert_pt2e(m, fold_quantize=False)
    out.write_bytes(litert_torch.convert(m, args, quant_config=QuantConfig(pt2e_quantizer=quantizer)).model_content())
    return out


def openvino_runner(path: Path, name: str, width: int, precision: str):
    """A bench.Runner for an ONNX file compiled by OpenVINO's CPU plugin, one inference thread."""
    import openvino as ov

    from tfsep_edge.bench.runners import Runner
    from tfsep_edge.core.config import DEFAULT_FRONTEND
    from tfsep_edge.signal.frontend import log_mel

    t0 = time.perf_counter_ns()
    compiled = ov.Core().compile_model(
        str(path), "CPU", {"INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
    )
    request = compiled.create_infer_request()
    load_ms = (time.perf_counter_ns() - t0) / 1e6

    def run(x):
        return request.infer({0: x})[compiled.output(0)]

    def frontend(windows):
        return np.ascontiguousarray(log_mel(windows, DEFAULT_FRONTEND)[:, None])

    return Runner(name, str(path), "openvino", precision, width, "logmel", load_ms, frontend, run)


def make_artifacts(width: int, folder: Path) -> tuple[dict[str, Path], object]:
    """Every artifact of one width; returns ({row key: path}, the quantized artifact)."""
    import export_speed
    import models
    import onnx

    from tfsep_edge.export.tflite_export import export_tflite
    from tfsep_edge.model.checkpoint import load_model
    from tfsep_edge.quant.artifact import load_quantized

    quiet = {"echo": lambda _s: None, "timing": False}
    ckpt = models.make_checkpoint(width, folder / f"c{width}.pt")
    qdir = models.make_quantized(ckpt, folder / f"c{width}-int8")
    model = load_model(ckpt)
    paths = {
        "ort_fp32": models.make_onnx(ckpt, folder / f"c{width}_fp32.onnx"),
        "ort_int8": models.make_onnx(qdir, folder / f"c{width}_int8.onnx", int8=True),
        "ort_plain": folder / f"c{width}_plain.onnx",
        "tflite_fp32": folder / f"c{width}_fp32.tflite",
        "tflite_int8": folder / f"c{width}_int8.tflite",
        "stock_fp32": stock_tflite(model, models.noise_logmels(1), folder / f"c{width}_stock.tflite", False),
        "stock_int8": stock_tflite(model, models.noise_logmels(64), folder / f"c{width}_stock_int8.tflite", True),
        "torch_fp32": ckpt,
    }
    onnx.save(export_speed.plain_export(model), str(paths["ort_plain"]))
    export_tflite(ckpt, paths["tflite_fp32"], **quiet)
    export_tflite(qdir, paths["tflite_int8"], int8=True, **quiet)
    return paths, load_quantized(qdir)


def runners_for(width: int, paths: dict[str, Path]) -> dict[str, object]:
    from tfsep_edge.bench.runners import load_runner

    # onnxruntime for .onnx, LiteRT for .tflite, PyTorch eager for the checkpoint
    out = {key: load_runner(path, 1) for key, path in paths.items()}
    for key, src, prec in (
        ("ov_plain", "ort_plain", "fp32"),
        ("ov_fp32", "ort_fp32", "fp32"),
        ("ov_int8", "ort_int8", "int8"),
    ):
        try:
            out[key] = openvino_runner(paths[src], f"{paths[src].name} (OpenVINO)", width, prec)
        except Exception as exc:  # a model the CPU plugin refuses is a result, not a crash
            out[key] = f"fails to compile: {str(exc).strip().splitlines()[0][:160]}"
    for r in out.values():
        if not isinstance(r, str):
            r.width = width
            r.name = f"C{width} {r.name}"
    return out


def graph_sizes(paths: dict[str, Path]) -> dict:
    """Operators and TRANSPOSEs of each .tflite: what the layout work removed."""
    from tfsep_edge.core.tflite_format import operator_counts

    out = {}
    for key in ("tflite_fp32", "tflite_int8", "stock_fp32", "stock_int8"):
        ops = operator_counts(paths[key].read_bytes())
        out[key] = {"operators": sum(ops.values()), "transposes": ops.get("TRANSPOSE", 0)}
    return out


def agreement(paths: dict[str, Path], art, width: int) -> dict:
    """Top-1 agreement and max |d logit| on the export validation set plus 64 noise clips."""
    import models
    import torch

    from tfsep_edge.export.onnx_export import validation_waves
    from tfsep_edge.runtime.classifier import open_classifier
    from tfsep_edge.signal.frontend import log_mel

    mels = np.concatenate(
        [log_mel(validation_waves(art.frontend), art.frontend)[:, None], models.noise_logmels(64, seed=3).numpy()]
    ).astype(np.float32)

    def logits(key):
        clf = open_classifier(paths[key])
        return np.concatenate([clf.run(mels[i : i + 1]) for i in range(len(mels))])

    with torch.no_grad():
        ref = art.float_model(torch.from_numpy(mels)).numpy()
    tfl8, ort8, tfl32 = logits("tflite_int8"), logits("ort_int8"), logits("tflite_fp32")
    res = {
        "inputs": len(mels),
        "tflite_fp32_vs_pytorch_max_abs": float(np.abs(tfl32 - ref).max()),
        "tflite_int8_vs_onnx_int8_top1": float((tfl8.argmax(1) == ort8.argmax(1)).mean()),
        "tflite_int8_vs_onnx_int8_max_abs": float(np.abs(tfl8 - ort8).max()),
        "tflite_int8_vs_fp32_top1": float((tfl8.argmax(1) == ref.argmax(1)).mean()),
    }
    try:
        ov = openvino_runner(paths["ort_int8"], "ov", width, "int8")
        ovl = np.concatenate([ov.model(mels[i : i + 1]) for i in range(len(mels))])
        res["openvino_vs_onnxruntime_int8_top1"] = float((ovl.argmax(1) == ort8.argmax(1)).mean())
        res["openvino_vs_onnxruntime_int8_max_abs"] = float(np.abs(ovl - ort8).max())
    except Exception as exc:
        res["openvino_int8"] = f"fails: {str(exc).strip().splitlines()[0][:160]}"
    return res


def layer_profile(art, runs: int) -> list[dict]:
    """Per-layer ms of the FP32 and INT8 .tflite graphs: timed prefixes, round-robin."""
    from ai_edge_litert.interpreter import Interpreter

    from tfsep_edge.export.tflite_fp32 import build_fp32
    from tfsep_edge.export.tflite_int8 import build_int8

    fq = art.fake_quant_model("int8")
    layers = len(art.float_model.feature)
    interps = {}
    for k in range(layers + 1):
        for kind, build in (
            ("fp32", lambda k: build_fp32(art.float_model, art.frontend, k)),
            ("int8", lambda k: build_int8(fq, art.frontend, k)),
        ):
            g, x_in, out = build(k)
            it = Interpreter(model_content=g.pack([x_in], [out], {}, ""), num_threads=1)
            it.allocate_tensors()
            interps[(k, kind)] = it
    x = np.random.default_rng(0).standard_normal((1, 1, art.frontend.n_mels, art.frontend.n_frames)).astype(np.float32)
    samples = {key: [] for key in interps}
    for _ in range(runs):
        for key, it in interps.items():
            idx = it.get_input_details()[0]["index"]
            it.set_tensor(idx, x)
            it.invoke()  # re-warm after the others (not recorded)
            for _ in range(3):
                t0 = time.perf_counter_ns()
                it.set_tensor(idx, x)
                it.invoke()
                samples[key].append(time.perf_counter_ns() - t0)
    med = {key: float(np.median(v)) / 1e6 for key, v in samples.items()}
    rows = []
    for k, layer in enumerate(art.float_model.feature):
        rows.append(
            {
                "layer": f"feature.{k} {type(layer).__name__}",
                "fp32_ms": med[(k + 1, "fp32")] - med[(k, "fp32")],
                "int8_ms": med[(k + 1, "int8")] - med[(k, "int8")],
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[12, 40, 60])
    ap.add_argument("--runs", type=int, default=300, help="measured calls per model")
    ap.add_argument("--profile-runs", type=int, default=60)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--render", action="store_true", help="only rewrite peers.md from peers.json")
    args = ap.parse_args()
    if args.render:
        (args.out / "peers.md").write_text(markdown(json.loads((args.out / "peers.json").read_text())))
        return
    import torch

    torch.set_num_threads(1)
    from tfsep_edge.bench.harness import bench_windows, measure
    from tfsep_edge.bench.machine import machine_info
    from tfsep_edge.core.config import DEFAULT_FRONTEND

    started = time.time()
    results, checks, arts = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        runners = {}
        for w in args.widths:
            paths, arts[w] = make_artifacts(w, Path(tmp))
            checks[w] = agreement(paths, arts[w], w) | {"graphs": graph_sizes(paths)}
            runners[w] = runners_for(w, paths)
        timed = [(w, k, r) for w in args.widths for k, r in runners[w].items() if not isinstance(r, str)]
        windows = bench_windows(1, DEFAULT_FRONTEND)
        measured = measure(
            [r for _, _, r in timed], windows, False, warmup=30, runs=args.runs, seconds=None, progress=False
        )
        for (w, key, _), m in zip(timed, measured, strict=True):
            results.setdefault(w, {})[key] = m["latency_ms"]["p50"]
        for w in args.widths:
            for key, r in runners[w].items():
                if isinstance(r, str):
                    results[w][key] = r
        profile = layer_profile(arts[max(args.widths)], args.profile_runs)
    report = {
        "machine": machine_info(1),
        "widths": args.widths,
        "runs_per_model": args.runs,
        "median_ms": {str(w): results[w] for w in args.widths},
        "ratios": ratios(results, args.widths),
        "agreement": {str(w): checks[w] for w in args.widths},
        "layer_profile": {"width": max(args.widths), "rows": profile},
        "seconds": round(time.time() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "peers.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    (args.out / "peers.md").write_text(markdown(report))
    print(markdown(report))


def ratios(results: dict, widths: list[int]) -> dict:
    def r(w, a, b):
        x, y = results[w].get(a), results[w].get(b)
        return y / x if isinstance(x, float) and isinstance(y, float) else None

    return {
        str(w): {
            "tflite_fp32_speedup_over_stock_fp32": r(w, "tflite_fp32", "stock_fp32"),
            "tflite_int8_time_over_tflite_fp32": r(w, "tflite_fp32", "tflite_int8"),
            "tflite_int8_speedup_over_stock_int8": r(w, "tflite_int8", "stock_int8"),
            "tflite_fp32_speedup_over_ort_fp32": r(w, "tflite_fp32", "ort_fp32"),
        }
        for w in widths
    }


def markdown(rep: dict) -> str:
    ws = rep["widths"]
    m = rep["machine"]
    isa = ",".join(m.get("isa") or [])
    lines = [
        "# Peers: tfsep-edge against stock conversions (generated by benchmarks/peers.py; do not edit)",
        "",
        f"Median ms, batch 1, one thread, model only, {rep['runs_per_model']} calls per model, all runtimes "
        "round-robin in one process (tfsep_edge.bench.measure); untrained weights with randomised statistics. "
        f"Machine: {m.get('cpu_model')}, {m.get('cores')} cores of a VM (read the ratios) ({isa}); "
        + ", ".join(f"{k} {v}" for k, v in (m.get("versions") or {}).items() if v),
        "",
        "## Latency, median ms",
        "",
        "| runtime and artifact | " + " | ".join(f"C={w}" for w in ws) + " |",
        "|---|" + "---|" * len(ws),
    ]
    for key, label in ROWS:
        cells = []
        for w in ws:
            v = rep["median_ms"][str(w)].get(key)
            cells.append(f"{v:.3f}" if isinstance(v, float) else (v or "-"))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Ratios (same run)",
        "",
        "| ratio | " + " | ".join(f"C={w}" for w in ws) + " | target |",
        "|---|" + "---|" * (len(ws) + 1),
    ]
    targets = {
        "tflite_fp32_speedup_over_stock_fp32": ("tfsep-edge FP32 .tflite speed-up over stock FP32", ">= 1.15"),
        "tflite_int8_time_over_tflite_fp32": ("tfsep-edge INT8 / FP32 .tflite time", "< 1 at C=40, <= 0.8 at C=60"),
        "tflite_int8_speedup_over_stock_int8": ("tfsep-edge INT8 .tflite speed-up over stock PT2E INT8", "> 1"),
        "tflite_fp32_speedup_over_ort_fp32": ("tfsep-edge FP32 .tflite speed-up over its FP32 ONNX on ORT", "-"),
    }
    for key, (label, target) in targets.items():
        vals = [rep["ratios"][str(w)][key] for w in ws]
        lines.append(f"| {label} | " + " | ".join(f"{v:.2f}" if v else "-" for v in vals) + f" | {target} |")
    lines += [
        "",
        "## Agreement",
        "",
        "| on the export validation set + 64 noise clips | " + " | ".join(f"C={w}" for w in ws) + " |",
        "|---|" + "---|" * len(ws),
    ]
    for key, label in (
        ("tflite_fp32_vs_pytorch_max_abs", "FP32 .tflite vs PyTorch, max abs d logit"),
        ("tflite_int8_vs_onnx_int8_top1", ".tflite INT8 vs INT8 ONNX (onnxruntime), top-1"),
        ("tflite_int8_vs_onnx_int8_max_abs", ".tflite INT8 vs INT8 ONNX, max abs d logit"),
        ("tflite_int8_vs_fp32_top1", ".tflite INT8 vs PyTorch FP32, top-1 (noise-like inputs, untrained model)"),
        ("openvino_vs_onnxruntime_int8_top1", "INT8 ONNX: OpenVINO vs onnxruntime, top-1"),
        ("openvino_vs_onnxruntime_int8_max_abs", "INT8 ONNX: OpenVINO vs onnxruntime, max abs d logit"),
    ):
        vals = [rep["agreement"][str(w)].get(key) for w in ws]
        pct = "top1" in key
        lines.append(
            f"| {label} | " + " | ".join("-" if v is None else (f"{v:.1%}" if pct else f"{v:.2g}") for v in vals) + " |"
        )
    lines += [
        "",
        "## Graph sizes",
        "",
        "| .tflite: operators / TRANSPOSEs | " + " | ".join(f"C={w}" for w in ws) + " |",
        "|---|" + "---|" * len(ws),
    ]
    for key, label in ROWS[:4]:
        cells = [rep["agreement"][str(w)]["graphs"][key] for w in ws]
        lines.append(f"| {label} | " + " | ".join(f"{c['operators']} / {c['transposes']}" for c in cells) + " |")
    prof = rep["layer_profile"]
    lines += [
        "",
        "## Per-layer profile",
        "",
        f"C={prof['width']} (.tflite on LiteRT + XNNPACK; each row = prefix up to and including the "
        "layer minus the prefix before it, medians of round-robin timings; noisy, rows can go slightly negative):",
        "",
        "| layer | FP32 ms | INT8 ms |",
        "|---|---|---|",
    ]
    for row in prof["rows"]:
        lines.append(f"| {row['layer']} | {row['fp32_ms']:.3f} | {row['int8_ms']:.3f} |")
    f, i = sum(r["fp32_ms"] for r in prof["rows"]), sum(r["int8_ms"] for r in prof["rows"])
    lines.append(f"| all layers | {f:.3f} | {i:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
