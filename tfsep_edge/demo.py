"""`make demo`: the whole pipeline end to end on bundled SYNTHETIC data, in a few minutes on 2 cores.

synth -> train (C=12, short schedule) -> evaluate -> quantize -> export (FP32, INT8, FP32 with
front end) -> budget -> bench -> predict, each step run through the real `tfsep-edge` command
line exactly as a user would type it, then one summary table built from the steps' JSON output.
Every figure comes from SYNTHETIC data (the real TAU22 set is not bundled): it shows the
toolchain working, not the model's accuracy on real scenes.

    python -m tfsep_edge.demo [--out demo-run] [--epochs 20] [--clips-per-class 100]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tfsep_edge.core.assets import DEMO_CALIBRATION
from tfsep_edge.core.config import UNSEEN_DEVICES
from tfsep_edge.datasets.tau import read_split

CALIB = DEMO_CALIBRATION  # package data: the demo runs from an installed wheel too
MARKER = ".tfsep-edge-demo"  # in the folder a demo made: the next run may replace its outputs
# Everything the demo writes into --out, by name: what a rerun may remove, and nothing else.
DATA, RUN, INT8_DIR = "data", "train", "int8"
FP32_ONNX, INT8_ONNX, WAVE_ONNX = "tfsepnet_fp32.onnx", "tfsepnet_int8.onnx", "tfsepnet_wave.onnx"
EVAL_FP32, EVAL_INT8, BENCH, PREDICTIONS = "eval_fp32.json", "eval_int8_onnx.json", "bench.json", "predictions.csv"
OUTPUTS = (MARKER, DATA, RUN, INT8_DIR, FP32_ONNX, INT8_ONNX, WAVE_ONNX, EVAL_FP32, EVAL_INT8, BENCH, PREDICTIONS)


def fresh_output(out: Path) -> None:
    """Make `out` ready for a run. A previous demo's outputs (the folder holds MARKER) are removed,
    so `make demo` runs again from scratch. Anything else in it is never deleted: a folder the
    demo did not make, or one holding other files too, is refused with one line."""
    if out.exists() and not out.is_dir():
        sys.exit(f"demo: {out} is a file; give --out a folder")
    entries = sorted(out.iterdir()) if out.is_dir() else []
    if entries and not (out / MARKER).is_file():
        sys.exit(f"demo: {out} is not empty and was not made by the demo: choose another --out")
    foreign = [e.name for e in entries if e.name not in OUTPUTS]
    if foreign:
        sys.exit(f"demo: {out} also holds {', '.join(foreign[:3])}: move them away or choose another --out")
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by `python -m tfsep_edge.demo`; its next run replaces the demo's outputs here\n")


def tfsep(*args: object, capture: bool = False) -> str:
    """Run one `tfsep-edge` command, echoing it; stop the demo if it fails."""
    argv = [str(a) for a in args]
    print(f"\n$ tfsep-edge {shlex.join(argv)}", flush=True)
    proc = subprocess.run(
        [sys.executable, "-m", "tfsep_edge.cli", *argv],
        stdout=subprocess.PIPE if capture else None,
        text=True,
        env={**os.environ, "TQDM_MININTERVAL": "5"},  # progress bars, but not hundreds of lines in a log
    )
    if proc.returncode not in (0, 1) or (proc.returncode == 1 and args[0] != "budget"):
        sys.exit(f"demo: `tfsep-edge {shlex.join(argv)}` failed with exit code {proc.returncode}")
    return proc.stdout or ""


def last_json(text: str) -> dict:
    """The JSON object a `--json` command printed: the whole output, or its last one-line object."""
    with contextlib.suppress(json.JSONDecodeError):
        return json.loads(text)
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                return json.loads(line)
    raise ValueError(f"no JSON object in the output: {text[:200]!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo-run"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--clips-per-class", type=int, default=100)
    parser.add_argument("--width", type=int, default=12)
    opts = parser.parse_args(argv)
    out: Path = opts.out
    fresh_output(out)
    start = time.perf_counter()
    data, run = out / DATA, out / RUN
    ckpt, int8_dir = run / "best.pt", out / INT8_DIR
    fp32_onnx, int8_onnx, wave_onnx = out / FP32_ONNX, out / INT8_ONNX, out / WAVE_ONNX

    tfsep("synth", data, "--clips-per-class", opts.clips_per_class, "--seed", 0)
    # On-the-fly device simulation keeps the demo's epochs short; the report's offline form
    # (the default of `train`) multiplies the training set.
    train_args = ["--width", opts.width, "--epochs", opts.epochs, "--warmup-epochs", 2, "--devsim", "online"]
    trained = last_json(tfsep("train", data, *train_args, "-o", run, "--json", capture=True))
    print(json.dumps({k: trained[k] for k in ("width", "trained_epochs", "seconds", "best_val_acc")}))
    tfsep("evaluate", ckpt, data, "--json", out / EVAL_FP32)
    tfsep("quantize", ckpt, "--calib", CALIB, "--eval", data, "-o", int8_dir, "--no-sensitivity")
    exports = {}
    for name, args in (
        ("fp32", (ckpt, "--onnx", fp32_onnx)),
        ("int8", (int8_dir, "--int8", "--onnx", int8_onnx)),
        ("wave", (ckpt, "--frontend", "--onnx", wave_onnx)),
    ):
        exports[name] = last_json(tfsep("export", *args, "--json", capture=True))
    budget_fp32 = last_json(tfsep("budget", ckpt, "--dtype", "float32", "--json", capture=True))
    budget_int8 = last_json(tfsep("budget", int8_onnx, "--json", capture=True))
    tfsep("evaluate", int8_onnx, data, "--json", out / EVAL_INT8)
    tfsep("bench", fp32_onnx, int8_onnx, wave_onnx, ckpt, "--seconds", 3, "--warmup", 20, "--json", out / BENCH)
    # A few held-out clips of different scenes, one from a device never seen in training.
    held_out = read_split(data, "evaluate")
    unseen = next(c for c in held_out if c.device in UNSEEN_DEVICES)
    first_of_scene = {c.label: c for c in held_out if c.label != unseen.label}
    clips = [unseen.path] + [c.path for c in list(first_of_scene.values())[:3]]
    tfsep("predict", int8_onnx, *clips, "--top", 2, "--csv", out / PREDICTIONS)

    summary(out, budget_fp32, budget_int8, exports)
    print(f"\ndemo finished in {time.perf_counter() - start:.0f} s; everything is in {out}")
    return 0


def summary(out: Path, budget_fp32: dict, budget_int8: dict, exports: dict) -> None:
    """One table from the steps' own JSON results (nothing typed by hand)."""
    fp32_eval = json.loads((out / EVAL_FP32).read_text())
    int8_eval = json.loads((out / EVAL_INT8).read_text())
    bench = json.loads((out / BENCH).read_text())
    quant = json.loads((out / INT8_DIR / "quant_report.json").read_text())["evaluation"]
    latency = {f"{r['name']} ({r['runtime']})": r["latency_ms"]["p50"] for r in bench["models"]}
    rows = [
        ("accuracy FP32 (PyTorch checkpoint)", f"{fp32_eval['accuracy']:.3f}"),
        ("accuracy INT8 (PyTorch, quantize report)", f"{quant['int8_accuracy']:.3f}"),
        ("accuracy INT8 (ONNX, onnxruntime)", f"{int8_eval['accuracy']:.3f}"),
        ("top-1 agreement FP32 vs INT8 (quantize report)", f"{quant['agreement']:.3f}"),
        ("parameters (NeSsi)", f"{budget_fp32['params']:,}"),
        ("MACs per 1-s clip (NeSsi)", f"{budget_fp32['macs']:,}"),
        ("parameter bytes, FP32 storage", f"{budget_fp32['param_bytes']:,}"),
        (f"parameter bytes, INT8 ONNX ({budget_int8['param_bytes_basis']})", f"{budget_int8['param_bytes']:,}"),
        ("fits the DCASE limits (INT8)", "PASS" if budget_int8["fits"] else "FAIL"),
        (
            "ONNX file sizes FP32 / INT8 / FP32+front end (bytes)",
            " / ".join(f"{exports[k]['bytes']:,}" for k in ("fp32", "int8", "wave")),
        ),
    ]
    rows += [(f"latency p50, {name} (ms, batch 1, 1 thread)", f"{ms:.3f}") for name, ms in latency.items()]
    width = max(len(r[0]) for r in rows)
    print("\n== tfsep-edge demo summary (SYNTHETIC data: shows the toolchain, not real-scene accuracy) ==")
    print("(accuracies vary slightly from machine to machine: training follows the CPU's float kernels)")
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


if __name__ == "__main__":
    sys.exit(main())
