"""INT8 fidelity of `tfsep-edge quantize` on briefly trained TF-SepNet C=12 and C=40 (SYNTHETIC data).

For each width: train with the project's own loop (tfsep_edge.train.loop.train, no device
simulation, a few epochs) on a SYNTHETIC TAU22-layout set, take last.pt (not best.pt: best is
chosen on the evaluate split this benchmark reports on), then run the quantize command's code
(`quantize_report.run_quantize`: 256 balanced calibration clips from the train split, the
evaluate split as held-out set, per-layer sensitivity, design-choice ablation, --max-drop 0.5)
for the x86 engine with the histogram and min-max observers, and the qnnpack engine.

    .venv/bin/python benchmarks/quant_fidelity.py [--widths 12 40] [--epochs 25 15] [--clips-per-class 120]
    .venv/bin/python benchmarks/quant_fidelity.py --checkpoints c12.pt c40.pt --data SYNTH_DIR

Writes benchmarks/results/quant_fidelity.json (every report) and quant_fidelity.md (summary).
Numbers are from SYNTHETIC audio on this machine; they show the method, not TAU22 accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from tfsep_edge.core.fileio import write_text_atomic  # noqa: E402
from tfsep_edge.datasets.synth import synthesize  # noqa: E402
from tfsep_edge.quant.pipeline import QuantizeRequest, run_quantize  # noqa: E402

OUT = REPO / "benchmarks" / "results"
RUNS = (("x86", "histogram", True), ("x86", "minmax", False), ("qnnpack", "histogram", False))


def train_checkpoint(data: Path, work: Path, width: int, epochs: int) -> Path:
    from tfsep_edge.train.loop import train

    run = work / f"train-c{width}"
    given = {"width": width, "epochs": epochs, "devsim": "none", "warmup_epochs": 1, "lr": 0.005, "threads": 1}
    summary = train(data, run, given=given, progress=False)
    print(f"C={width}: trained {summary['trained_epochs']} epochs in {summary['seconds']:.0f} s", flush=True)
    return run / "last.pt"


def summarise(width: int, engine: str, observer: str, report: dict) -> dict:
    ev, q = report["evaluation"], report["quantization"]
    rows = report["layer_sensitivity"]
    return {
        "width": width,
        "engine": engine,
        "observer": observer,
        "fp32_accuracy": ev["fp32_accuracy"],
        "int8_accuracy": ev["int8_accuracy"],
        "accuracy_drop_pp": ev["accuracy_drop_pp"],
        "agreement": ev["agreement"],
        "logit_sqnr_db": ev["logit_sqnr_db"],
        "int8_vs_fake_quant_agreement": report["int8_vs_fake_quant"]["agreement"],
        "float_layers": q["float_layers"],
        "stored_bytes": q["storage_bytes"]["total"],
        "max_drop": report["max_drop"],
        "worst_layers": [(r["layer"], r["output_sqnr_db"], r["float_logit_sqnr_gain_db"]) for r in rows[:5]],
        "seconds": report["seconds"],
    }


def markdown(results: dict) -> str:
    lines = [
        "# INT8 fidelity of `tfsep-edge quantize` (SYNTHETIC data)",
        "",
        f"{results['note']}",
        "",
        f"torch {results['torch']}; {results['clips']}; calibration: {results['calibration']}.",
        "",
        "| C | engine | observer | FP32 acc | INT8 acc | drop (pp) | agreement | logit SQNR | INT8 vs fake-quant | "
        "left float | bytes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in results["summary"]:
        added = (s["max_drop"] or {}).get("layers_left_float", [])
        floats = ", ".join(n for n in s["float_layers"] if n not in added)
        floats += f"; --max-drop added {', '.join(added)}" if added else ""
        lines.append(
            f"| {s['width']} | {s['engine']} | {s['observer']} | {100 * s['fp32_accuracy']:.1f}% | "
            f"{100 * s['int8_accuracy']:.1f}% | {s['accuracy_drop_pp']:+.2f} | {100 * s['agreement']:.1f}% | "
            f"{s['logit_sqnr_db']:.1f} dB | {100 * s['int8_vs_fake_quant_agreement']:.1f}% | {floats} | "
            f"{s['stored_bytes']} |"
        )
    for width, rep in results["sensitivity"].items():
        lines += ["", f"## C={width}: per-layer sensitivity (x86, histogram; worst first, top 8)", ""]
        lines += ["| layer | INT8 output SQNR (dB) | logit SQNR gain if float (dB) | agreement gain if float |"]
        lines += ["|---|---|---|---|"]
        for r in rep["layer_sensitivity"][:8]:
            lines.append(
                f"| {r['layer']} | {r['output_sqnr_db']} | {r['float_logit_sqnr_gain_db']:+.2f} | "
                f"{100 * r['float_agreement_gain']:+.1f}% |"
            )
        lines += ["", f"## C={width}: design choices (same calibration)", ""]
        lines += ["| variant | agreement | logit SQNR (dB) | INT8 acc | bytes |", "|---|---|---|---|---|"]
        for r in rep["design_choices"]:
            lines.append(
                f"| {r['variant']} | {100 * r['agreement']:.1f}% | {r['logit_sqnr_db']} | "
                f"{100 * r['int8_accuracy']:.1f}% | {r['bytes']} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[12, 40])
    ap.add_argument("--epochs", type=int, nargs="+", default=[25, 15])
    ap.add_argument("--clips-per-class", type=int, default=120)
    ap.add_argument("--checkpoints", type=Path, nargs="*", help="use these instead of training (one per width)")
    ap.add_argument("--data", type=Path, help="an existing SYNTHETIC TAU22-layout folder")
    ap.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    ap.add_argument("--markdown-only", action="store_true", help="rewrite the .md from the committed .json")
    args = ap.parse_args()
    if args.markdown_only:
        results = json.loads((OUT / "quant_fidelity.json").read_text())
        write_text_atomic(OUT / "quant_fidelity.md", markdown(results))
        return
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    work = args.work or Path(tempfile.mkdtemp(prefix="quant-fidelity-"))
    work.mkdir(parents=True, exist_ok=True)
    data = args.data or synthesize(work / "synth", clips_per_class=args.clips_per_class, seed=1)
    checkpoints = args.checkpoints or [
        train_checkpoint(data, work, w, e) for w, e in zip(args.widths, args.epochs, strict=True)
    ]
    summary, sensitivity = [], {}
    for width, ckpt in zip(args.widths, checkpoints, strict=True):
        for engine, observer, full in RUNS:
            started = time.perf_counter()
            req = QuantizeRequest(
                checkpoint=ckpt,
                calib=data,
                engine=engine,
                observer=observer,
                eval=data,
                max_drop=0.5,
                out=work / f"c{width}-{engine}-{observer}",
                sensitivity=full,
            )
            _, report = run_quantize(req, log=lambda m: None, warn=print)
            summary.append(summarise(width, engine, observer, report))
            if full:
                sensitivity[width] = report
            s = summary[-1]
            print(
                f"C={width} {engine}/{observer}: FP32 {s['fp32_accuracy']:.4f} INT8 {s['int8_accuracy']:.4f} "
                f"agree {s['agreement']:.4f} SQNR {s['logit_sqnr_db']} dB ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    results = {
        "note": "SYNTHETIC data (tfsep_edge.datasets.synth, seed 1): numbers show the quantization method, "
        "not TAU22 accuracy. "
        "Models trained briefly with tfsep_edge.train (no device simulation); last epoch's weights.",
        "torch": torch.__version__,
        "clips": f"{args.clips_per_class} clips per class (60% train, 40% evaluate incl. unseen devices s4-s6)",
        "calibration": "256 clips of the train split, balanced over classes and devices, seed 0",
        "summary": summary,
        "sensitivity": {str(k): v for k, v in sensitivity.items()},
    }
    OUT.mkdir(parents=True, exist_ok=True)
    write_text_atomic(OUT / "quant_fidelity.json", json.dumps(results, indent=1, sort_keys=True) + "\n")
    write_text_atomic(OUT / "quant_fidelity.md", markdown(results))
    print(f"wrote {OUT / 'quant_fidelity.json'} and .md")


if __name__ == "__main__":
    main()
