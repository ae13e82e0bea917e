"""OpenVINO on every CPU kind: each ONNX kind compiles with OpenVINO's default settings and with
f32 float parts, and gives onnxruntime's labels within the bound the CPU's kernels allow.

Runs in three places with the same code (make test-arm, deploy/arm-emulation/run.sh):
  python openvino_check.py reference --out REF.json --models fp32=A.onnx int8=B.onnx ... --mels M.npy
      (x86 host, onnxruntime: the logits every OpenVINO run is compared with)
  python openvino_check.py run --out R.json --models ... --mels M.npy [--label L] [--no-vnni]
      (the host, an aarch64 guest under qemu-user, x86 under qemu -cpu Haswell / EPYC-Rome)
  python openvino_check.py compare REF.json R.json [R2.json ...]
Needs only numpy and openvino in `run` (onnxruntime in `reference`). Times under emulation mean
nothing and are never kept.

Bounds, as max |logit difference| from onnxruntime (docs/export.md, "The INT8 ONNX in OpenVINO"):
- f32 float parts, FP32 graph: summation order only.
- f32 float parts, int8 graph, int8 kernels that accumulate in 32 bits (ARM, x86 with VNNI): the
  same integers up to a requantization rounding here and there, amplified by the norms.
- int8 graph on x86 without VNNI: OpenVINO's u8 x s8 convs saturate 16-bit pair sums; and the
  default precision (bf16 or f16 float parts where the CPU has them): both move logits by a
  fraction of their spread, so only the labels and a quarter of the spread are held.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

KINDS = ("fp32", "int8", "integer")
PRECISIONS = {"default": {}, "f32": {"INFERENCE_PRECISION_HINT": "f32"}}
FP32_F32_ABS = 1e-4
EXACT_INT8_ABS = 0.03  # a few requantization steps amplified by the norms (measured: docs/export.md)
LOOSE_SPREAD = 0.25  # of the mean logit spread (max - min per input)
MIN_TOP1 = 0.9
# Seen, not ours to fix: OpenVINO 2026.4 on an emulated Cortex-A72 (its MIDR and features; Pi 4)
# runs the int8 graphs but returns an empty batch, (0, 10) logits: the first int8 conv's output
# has batch 0 (dynamic batch), and with a static batch compile_model fails ("object is not
# initialized"). A one-conv QDQ graph and the FP32 graph run there; on a Cortex-A76 all run. A real
# Pi 4 was not at hand. Held as a known finding: exactly this (an empty batch) passes with a note,
# anything else on that CPU still fails. docs/export.md, "OpenVINO on each CPU kind".
KNOWN_EMPTY_BATCH = ("cortex-a72", ("int8", "integer"))


def parse_models(items: list[str]) -> dict[str, Path]:
    """KIND=PATH pairs, KIND one of KINDS."""
    models = {}
    for item in items:
        kind, _, path = item.partition("=")
        if kind not in KINDS or not path:
            raise SystemExit(f"error: --models {item}: give KIND=PATH, KIND one of {', '.join(KINDS)}")
        models[kind] = Path(path)
    return models


def reference(models: dict[str, Path], mels: np.ndarray, out: Path) -> int:
    """The logits tfsep-edge's own runtime gives (its onnxruntime session and options; host only)."""
    import onnxruntime as ort

    from tfsep_edge.runtime.classifier import session_options
    from tfsep_edge.runtime.model_info import session_logits

    logits = {}
    for kind, path in models.items():
        session = ort.InferenceSession(str(path), session_options(1), providers=["CPUExecutionProvider"])
        logits[kind] = session_logits(session, path)(mels).tolist()
    out.write_text(json.dumps({"runtime": f"onnxruntime {ort.__version__}", "logits": logits}))
    return 0


def run(models: dict[str, Path], mels: np.ndarray, out: Path, label: str | None, no_vnni: bool) -> int:
    """Compile every model in each precision and run the inputs one at a time (batch 1)."""
    import openvino as ov

    core = ov.Core()
    result = {
        "cpu": label or f"{platform.machine()} (native)",
        "arch": platform.machine(),
        "openvino": ov.__version__,
        "no_vnni": no_vnni,
        "runs": {},
    }
    for kind, path in models.items():
        for precision, extra in PRECISIONS.items():
            entry: dict = {}
            try:
                compiled = core.compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": 1} | extra)
                entry["inference_precision"] = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
                entry["logits"] = np.concatenate([compiled({0: m[None]})[compiled.output(0)] for m in mels]).tolist()
            except Exception as exc:  # a refused graph is the finding: keep its message
                entry["error"] = " ".join(str(exc).split())[:600]
            result["runs"][f"{kind} {precision}"] = entry
            print(f"{result['cpu']}: {kind} {precision}: {'error' if 'error' in entry else 'ran'}", flush=True)
    out.write_text(json.dumps(result))
    return 0


def bound(kind: str, precision: str, no_vnni: bool, spread: float) -> tuple[float, str]:
    if precision == "f32" and kind == "fp32":
        return FP32_F32_ABS, "f32, float graph"
    if precision == "f32" and not no_vnni:
        return EXACT_INT8_ABS, "f32, 32-bit int8 accumulation"
    reason = "x86 without VNNI (saturating u8 x s8 pairs)" if no_vnni and kind != "fp32" else "default precision"
    return LOOSE_SPREAD * spread, reason


def compare(ref_file: Path, run_files: list[Path]) -> int:
    ref = {k: np.array(v) for k, v in json.loads(ref_file.read_text())["logits"].items()}
    failures = []
    print("| CPU | model | precision | inference precision | top-1 vs onnxruntime | max abs d logit | bound |")
    print("|---|---|---|---|---|---|---|")
    for f in run_files:
        r = json.loads(f.read_text())
        for name, entry in r["runs"].items():
            kind, precision = name.split()
            if "error" in entry:
                failures.append(f"{r['cpu']}: {name}: {entry['error']}")
                print(f"| {r['cpu']} | {kind} | {precision} | - | refused | - | - |")
                continue
            got, want = np.array(entry["logits"]), ref[kind]
            if got.size == 0 and KNOWN_EMPTY_BATCH[0] in r["cpu"] and kind in KNOWN_EMPTY_BATCH[1]:
                row = f"| {r['cpu']} | {kind} | {precision} | {entry['inference_precision']}"
                print(f"{row} | empty batch (known, see KNOWN_EMPTY_BATCH) | - | - |")
                continue
            top1 = float((got.argmax(1) == want.argmax(1)).mean())
            diff = float(np.abs(got - want).max())
            limit, why = bound(kind, precision, r["no_vnni"], float(np.ptp(want, axis=1).mean()))
            print(
                f"| {r['cpu']} | {kind} | {precision} | {entry['inference_precision']} | {top1:.1%} | {diff:.3g} | "
                f"{limit:.3g} ({why}) |"
            )
            if top1 < MIN_TOP1 or diff > limit:
                failures.append(f"{r['cpu']}: {name}: top-1 {top1:.1%}, max |d| {diff:.3g} > {limit:.3g}")
    for line in failures:
        print("FAIL", line, file=sys.stderr)
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    for mode in ("reference", "run"):
        p = sub.add_parser(mode)
        p.add_argument("--out", type=Path, required=True)
        p.add_argument("--models", nargs="+", required=True, help=f"KIND=PATH, KIND one of {', '.join(KINDS)}")
        p.add_argument("--mels", type=Path, required=True, help="log-mels (N, 1, 128, 44) as .npy")
        if mode == "run":
            p.add_argument("--label", help="what the CPU is, where platform cannot say (emulated)")
            p.add_argument("--no-vnni", action="store_true", help="an x86 without VNNI (emulated Haswell, EPYC-Rome)")
    c = sub.add_parser("compare")
    c.add_argument("reference", type=Path)
    c.add_argument("runs", type=Path, nargs="+")
    args = parser.parse_args()
    if args.mode == "compare":
        return compare(args.reference, args.runs)
    models, mels = parse_models(args.models), np.load(args.mels).astype(np.float32)
    if args.mode == "reference":
        return reference(models, mels, args.out)
    return run(models, mels, args.out, args.label, args.no_vnni)


if __name__ == "__main__":
    sys.exit(main())
