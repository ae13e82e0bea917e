"""The light runtime on aarch64 (under qemu-user) against x86: same labels, logits within tolerance.

Runs in two places with the same code:
  python check.py run --out R.json --models A.onnx B.onnx --wavs X.wav ...   (x86 host, and aarch64 guest)
  python check.py compare HOST.json GUEST.json [GUEST2.json ...]             (host)
`run` classifies every WAV with every model through the user's path (`tfsep-edge predict`,
called in-process: the guest cannot spawn processes without binfmt), keeps the per-file logits
(the classifier's predict_file, the function `predict` uses), and checks `tfsep-edge bench` runs.
Bench times under emulation mean nothing and are never kept.
`run --plain-ort` opens the ONNX models with onnxruntime's default session options instead of
the runtime's (what a program that is not tfsep-edge does; .tflite models are unaffected);
`--label` names an emulated CPU whose /proc/cpuinfo is the host's (x86 under `qemu-x86_64 -cpu
Haswell`: AVX2 without VNNI).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import platform
import sys
import tempfile
from pathlib import Path

# Max |logit difference| accepted between the architectures. FP32: the same graph in float32 with
# different SIMD kernels (NEON vs AVX) and FFT paths: sums in another order (seen: 1-2e-7).
# INT8: compared arm INT8 vs x86 INT8 (never vs FP32, whose gap is quantization error, ~5e-2
# here, not an architecture difference). A float rounding difference upstream of a
# QuantizeLinear can move a value across a rounding boundary: one step of one activation, which
# shows in the logits as ~1e-4 (seen: 6e-8 and 1.05e-4 on two exports). 2e-3 allows a few such
# steps while a wrong kernel (the notes' u8 overflow: 6e-2) still fails.
# .tflite: FP32 as above (XNNPACK's NEON vs AVX kernels). INT8 on XNNPACK requantizes differently
# per architecture (ARM: fixed-point multiplier and rounding shift; x86: float multiply), so a value
# on a rounding edge moves one step at any int8 op, not only downstream of float noise: seen
# 3.7e-3 on aarch64 (C=12, 0.45 of its output step 8.2e-3; 0 under -cpu Haswell). 1e-2,
# about one output step, still fails a wrong kernel (6e-2 above).
TOL = {"fp32": 1e-5, "int8": 2e-3, "int8.tflite": 1e-2}


def cli(*args: str) -> tuple[int, str, str]:
    """Run `tfsep-edge ARGS` in this process; (exit code, stdout, stderr)."""
    from tfsep_edge.cli import app

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            app(list(args), prog_name="tfsep-edge")
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def run(models: list[Path], wavs: list[Path], out: Path, plain_ort: bool = False, label: str | None = None) -> int:
    from tfsep_edge.bench.machine import machine_info
    from tfsep_edge.runtime import classifier as runtime
    from tfsep_edge.runtime.classifier import open_classifier

    if plain_ort:  # onnxruntime's defaults (QDQ fusions on, all optimizations), one thread
        import onnxruntime as ort

        def plain_options(threads: int = 1):
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            return opts

        runtime.session_options = plain_options
    result = {"arch": platform.machine(), "machine": machine_info(1), "models": {}, "label": label}
    if plain_ort:
        result["label"] = f"{label or platform.machine()}, onnxruntime default session options"
    for model in models:
        clf = open_classifier(model)  # onnxruntime for .onnx, LiteRT (XNNPACK) for .tflite
        with tempfile.TemporaryDirectory() as tmp:
            table = Path(tmp) / "p.csv"
            code, _, err = cli("predict", str(model), *map(str, wavs), "--csv", str(table))
            if code != 0:
                print(f"predict {model.name} failed ({code}): {err.strip()[-500:]}", file=sys.stderr)
                return 1
            rows = list(csv.reader(table.open(newline=""), delimiter="\t"))[1:]
        labels = {row[0]: row[1] for row in rows}
        result["models"][model.name] = {
            "precision": clf.precision,
            "files": {
                str(w): {"label": labels[str(w)], "logits": clf.predict_file(w).astype(float).tolist()} for w in wavs
            },
        }
        code, _, err = cli("bench", str(model), "--runs", "3", "--warmup", "1")
        if code != 0:
            print(f"bench {model.name} failed ({code}): {err.strip()[-500:]}", file=sys.stderr)
            return 1
        result["models"][model.name]["bench_ran"] = True
    result["isa"] = result["machine"]["isa"]
    out.write_text(json.dumps(result, indent=1))
    print(f"{platform.machine()}: {len(models)} models x {len(wavs)} files classified; bench ran")
    return 0


def compare(host_file: Path, guest_files: list[Path]) -> int:
    import numpy as np

    host = json.loads(host_file.read_text())
    failures = 0
    for guest_file in guest_files:
        guest = json.loads(guest_file.read_text())
        cpu = guest["machine"].get("cpu_model")
        what = guest.get("label") or f"{guest['arch']} ({cpu}), ISA {','.join(guest['isa'])}"
        print(f"{guest_file.name}: {what}")
        fp32 = next((name for name, m in host["models"].items() if m["precision"] == "fp32"), None)
        for name, hm in host["models"].items():
            gm = guest["models"][name]
            tol = TOL.get(f"{hm['precision']}{Path(name).suffix}", TOL.get(hm["precision"], TOL["int8"]))
            diffs, same = [], 0
            for wav, hf in hm["files"].items():
                gf = gm["files"][wav]
                diffs.append(float(np.abs(np.subtract(hf["logits"], gf["logits"])).max()))
                same += hf["label"] == gf["label"]
            worst = max(diffs)
            ok = worst <= tol and same == len(hm["files"]) and gm.get("bench_ran")
            failures += not ok
            vs_fp32 = ""
            if fp32 and name != fp32 and hm["precision"] == "int8":
                ref = host["models"][fp32]["files"]
                gap = max(float(np.abs(np.subtract(gm["files"][w]["logits"], ref[w]["logits"])).max()) for w in ref)
                vs_fp32 = f"; vs x86 FP32 max |d| {gap:.2e} (quantization error, not checked)"
            print(
                f"  {'ok  ' if ok else 'FAIL'} {name} ({hm['precision']}): labels {same}/{len(hm['files'])} equal, "
                f"max |d logit| vs x86 {worst:.2e} (tolerance {tol:.0e}){vs_fp32}; bench ran"
            )
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--models", type=Path, nargs="+", required=True)
    r.add_argument("--wavs", type=Path, nargs="+", required=True)
    r.add_argument("--plain-ort", action="store_true", help="onnxruntime's default session options")
    r.add_argument("--label", help="what the CPU is, where /proc/cpuinfo cannot say (emulated x86)")
    c = sub.add_parser("compare")
    c.add_argument("host", type=Path)
    c.add_argument("guests", type=Path, nargs="+")
    args = parser.parse_args()
    if args.cmd == "run":
        return run(args.models, args.wavs, args.out, args.plain_ort, args.label)
    return compare(args.host, args.guests)


if __name__ == "__main__":
    sys.exit(main())
