#!/usr/bin/env python
"""The standard latency comparison on the machine this runs on (`make bench`).

Widths 12 and 40; PyTorch FP32 eager, PyTorch INT8, ONNX Runtime FP32, ONNX Runtime INT8; model
only and wav -> label; 1 thread and all threads. Each (mode, threads) is one `tfsep-edge bench`
run in a fresh process with all eight models round-robin on the same input. Then the light
runtime alone (ONNX models, torch never imported) for its peak memory, and `predict`'s import +
model load time. Writes benchmarks/results/latency_<date>_<machine>.json and .md, and
latency_latest.md; every figure there comes from those measurements. Models are untrained
(randomised BN and AdaResNorm statistics): latency does not depend on the weights. Run it on a quiet CPU;
a few minutes with the defaults.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.models import ModelSet, make_models  # noqa: E402
from tfsep_edge.bench.report import format_report, machine_line  # noqa: E402
from tfsep_edge.core.fileio import write_text_atomic  # noqa: E402

# Targets of the runtime issue, checked as ratios measured on this machine in one run each.
TARGETS = {
    "frontend_speedup": ("numpy front end vs log_mel_reference (batch 1)", ">=", 3.0),
    "wav_over_model_c12": ("wav -> label / model part, ORT FP32 C=12 (light runtime, same run)", "<=", 1.5),
    "torch_over_ort_c12": ("PyTorch FP32 eager / ORT FP32, C=12, model only", ">=", 10.0),
    "predict_load_s": ("predict: import + model load, seconds", "<", 0.5),
    "light_peak_rss_mb": ("peak RSS of a light-runtime bench (ORT only), MB", "<", 150.0),
}


def run_cli(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tfsep_edge.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


def bench(models: list[Path], mode: str, threads: int, seconds: float, out: Path) -> dict:
    flag = "--include-frontend" if mode == "wav-to-label" else "--model-only"
    args = ["bench", *map(str, models), flag, "--threads", str(threads), "--seconds", str(seconds)]
    done = run_cli([*args, "--json", str(out)])
    if done.returncode != 0:
        raise SystemExit(f"bench failed ({mode}, {threads} threads): {done.stderr.strip()[-800:]}")
    return json.loads(out.read_text())


def predict_load_seconds(onnx_model: Path, repeats: int = 5) -> dict:
    """Import of the CLI and runtime + OnnxClassifier(model), in a fresh process each time."""
    code = (
        "import time; t=time.perf_counter(); import tfsep_edge.cli; "
        "from tfsep_edge.runtime.classifier import OnnxClassifier; "
        f"OnnxClassifier({str(onnx_model)!r}); print(time.perf_counter()-t)"
    )
    times = []
    for _ in range(repeats):
        done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
        times.append(float(done.stdout.strip()))
    times.sort()
    return {"median_s": times[len(times) // 2], "min_s": times[0], "max_s": times[-1], "repeats": repeats}


def pick(result: dict, runtime: str, precision: str, width: int) -> dict | None:
    return next(
        (m for m in result["models"] if (m["runtime"], m["precision"], m["width"]) == (runtime, precision, width)),
        None,
    )


def targets(runs: dict, light: dict, light_wav: dict, load: dict) -> list[dict]:
    one_model = runs.get("model-only/1")
    values: dict[str, float | None] = {k: None for k in TARGETS}
    if one_model:
        values["frontend_speedup"] = one_model["frontend_comparison"]["speedup_p50"]
        ort, eager = pick(one_model, "onnxruntime", "fp32", 12), pick(one_model, "torch-fp32", "fp32", 12)
        if ort and eager:
            values["torch_over_ort_c12"] = eager["latency_ms"]["p50"] / ort["latency_ms"]["p50"]
    if ort := pick(light_wav, "onnxruntime", "fp32", 12):  # predict's own process: ORT and numpy only
        values["wav_over_model_c12"] = ort["latency_ms"]["p50"] / ort["model_part_ms"]["p50"]
    values["predict_load_s"] = load["median_s"]
    values["light_peak_rss_mb"] = light["peak_rss_mb"]
    out = []
    for key, (what, op, limit) in TARGETS.items():
        v = values[key]
        met = None if v is None else {">=": v >= limit, "<=": v <= limit, "<": v < limit}[op]
        out.append({"key": key, "what": what, "value": v, "target": f"{op} {limit:g}", "met": met})
    return out


def floors(light_wav: dict) -> list[str]:
    """What bounds the wav -> label ratio on this machine, from the light runtime's own run."""
    ort = pick(light_wav, "onnxruntime", "fp32", 12)
    fe = light_wav["frontend_comparison"]
    fft = fe.get("fft_ms")
    if not (ort and fft):
        return []
    model, fft_p50 = ort["model_part_ms"]["p50"], fft["p50"]
    return [
        f"numpy's float32 FFT of one clip's {fe['frames_per_clip']} frames alone takes {fft_p50:.3f} ms (p50), "
        f"{fft_p50 / model:.2f}x the ORT FP32 C=12 model ({model:.3f} ms) in the same run: with every other "
        f"front-end step free, wav -> label could not go below {1 + fft_p50 / model:.2f}x the model here."
    ]


def markdown(summary: dict) -> str:
    load = {k: v if isinstance(v, int) else "/".join(f"{x:.1f}" for x in v) for k, v in summary["load_average"].items()}
    lines = [
        f"# Latency benchmark, {summary['created']}",
        "",
        f"Machine: {machine_line(summary['machine'])}",
        "",
        "Untrained models (randomised BatchNorm and AdaResNorm statistics; latency does not depend on the weights), "
        f"batch 1, {summary['seconds']} s per configuration, all models round-robin in one process per configuration. "
        "Made by `benchmarks/run_standard.py`; every figure below comes from the JSON next to this file.",
        "",
        f"System load (1/5/15-min averages) at the start {load['start']} and end {load['end']} on "
        f"{load['cores']} cores: anything near or above the core count means other work shared the CPU.",
        "",
        "## Targets",
        "",
        "| what | measured | target | met |",
        "|---|---|---|---|",
    ]
    for t in summary["targets"]:
        value = "-" if t["value"] is None else f"{t['value']:.3g}"
        met = "n/a" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['what']} | {value} | {t['target']} | {met} |")
    if summary.get("floors"):
        lines += [""] + [f"Bound: {f}" for f in summary["floors"]]
    for key, res in summary["runs"].items():
        mode, threads = key.split("/")
        lines += ["", f"## {mode}, {threads} thread(s)", "", format_report(res, markdown=True)]
    for key, title in (("light_runtime", "model only"), ("light_runtime_wav", "wav -> label (predict's path)")):
        lines += ["", f"## Light runtime alone, {title}: ONNX models only, torch not imported, 1 thread", ""]
        lines.append(format_report(summary[key], True))
    if summary["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in summary["notes"]]
    return "\n".join(lines) + "\n"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:40] or "machine"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="measuring time per configuration")
    parser.add_argument("--widths", type=int, nargs="+", default=[12, 40])
    parser.add_argument("--threads", type=int, nargs="+", default=None, help="default: 1 and all cores")
    parser.add_argument("--models", type=Path, default=REPO / ".cache" / "bench-models", help="where models go")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    started = time.perf_counter()
    load_start = os.getloadavg()
    threads = args.threads or sorted({1, os.cpu_count() or 1})

    sets: list[ModelSet] = []
    for width in args.widths:
        print(f"making models C={width} ...", file=sys.stderr)
        sets.append(make_models(width, args.models / f"c{width}", waveform=width == 12))
    notes = [n for s in sets for n in s.notes]
    models = [p for s in sets for p in (s.checkpoint, s.quantized, s.onnx_fp32, s.onnx_int8) if p is not None]
    onnx = [p for s in sets for p in (s.onnx_fp32, s.onnx_int8) if p is not None]

    runs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("model-only", "wav-to-label"):
            for t in threads:
                print(f"bench {mode}, {t} thread(s) ...", file=sys.stderr)
                runs[f"{mode}/{t}"] = bench(models, mode, t, args.seconds, Path(tmp) / f"{mode}-{t}.json")
        print("bench light runtime alone ...", file=sys.stderr)
        light = bench(onnx, "model-only", 1, args.seconds, Path(tmp) / "light.json")
        wave = [s.onnx_waveform for s in sets if s.onnx_waveform is not None]
        light_wav = bench(onnx + wave, "wav-to-label", 1, args.seconds, Path(tmp) / "light_wav.json")
    load = predict_load_seconds(sets[0].onnx_fp32) if sets[0].onnx_fp32 else {"median_s": None}
    machine = runs[next(iter(runs))]["machine"]
    summary = {
        "schema": "tfsep-edge/bench-standard",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "seconds": args.seconds,
        "widths": args.widths,
        "threads": threads,
        "models": {str(s.width): {k: str(v) for k, v in vars(s).items() if isinstance(v, Path)} for s in sets},
        "notes": notes,
        "predict_load": load,
        "runs": runs,
        "light_runtime": light,
        "light_runtime_wav": light_wav,
    }
    summary["targets"] = targets(runs, light, light_wav, load)
    summary["floors"] = floors(light_wav)
    summary["wall_seconds"] = round(time.perf_counter() - started, 1)
    summary["load_average"] = {"start": load_start, "end": os.getloadavg(), "cores": os.cpu_count()}
    args.out.mkdir(parents=True, exist_ok=True)
    name = slug((machine.get("board") or {}).get("board") or machine["cpu_model"] or "")
    stem = f"latency_{dt.date.today().isoformat()}_{name}_{machine['arch']}"
    write_text_atomic(args.out / f"{stem}.json", json.dumps(summary, indent=1) + "\n")
    write_text_atomic(args.out / f"{stem}.md", markdown(summary))
    write_text_atomic(args.out / "latency_latest.md", f"Latest: [{stem}.md]({stem}.md)\n\n" + markdown(summary))
    print(markdown(summary))
    print(f"wrote {args.out / stem}.json and .md in {summary['wall_seconds']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
