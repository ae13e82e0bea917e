"""What each .tflite kind needs on a microcontroller, measured in TensorFlow Lite Micro.

For untrained TF-SepNets at each width (benchmarks/models.py: randomised statistics; the arena and
the operators do not depend on the weights): the FP32 .tflite, today's INT8 .tflite (float stem
and norm islands), and the integer .tflite of `quantize --integer` with float and with int8 io,
and with `--int8-norms` (int8 io).
Per file: the smallest TFLM arena (runtime/micro.smallest_arena: a binary search with real
interpreter builds, reference kernels, x86-64 bookkeeping), flash (file bytes), operators and
tensors, float tensors between input and logits, and whether TFLM's outputs equal LiteRT's
reference kernels bit for bit on 8 noise log-mels. Writes benchmarks/results/micro_footprint.json
and .md with the machine record.

    .venv/bin/python benchmarks/micro_footprint.py [--widths 12 40]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.models import make_checkpoint, make_quantized, noise_logmels  # noqa: E402
from tfsep_edge.bench.machine import machine_info, package_version  # noqa: E402
from tfsep_edge.bench.report import machine_line  # noqa: E402
from tfsep_edge.core.fileio import write_text_atomic  # noqa: E402

OUT = REPO / "benchmarks" / "results"
TARGETS = {12: 80_000, 40: 256_000}  # issue 20's arena targets (bytes)
KINDS = ("FP32", "INT8 (float islands)", "integer, float io", "integer, int8 io", "integer --int8-norms, int8 io")


def measure(path: Path, mels) -> dict:
    from tfsep_edge.core.tflite_format import float_activations, operator_counts, schema
    from tfsep_edge.runtime import micro

    data = path.read_bytes()
    sub = schema().ModelT.InitFromPackedBuf(data, 0).subgraphs[0]
    floats = float_activations(data)
    names = {sub.tensors[int(i)].name.decode() for i in (*sub.inputs, *sub.outputs)}
    compared = micro.compare_with_reference(data, mels)
    return {
        "arena_bytes": micro.smallest_arena(data),
        "flash_bytes": len(data),
        "operators": sum(operator_counts(data).values()),
        "tensors": len(sub.tensors),
        "float_tensors_inside": len([t for t in floats["tensors"] if t not in names]),
        "tflm_equals_litert_reference": bool(compared["bit_exact"]),
    }


def one_width(width: int, work: Path) -> dict:
    from tfsep_edge.export.tflite_export import export_tflite

    quiet = {"echo": lambda _s: None, "timing": False}
    ckpt = make_checkpoint(width, work / f"c{width}.pt")
    ptq = make_quantized(ckpt, work / f"q{width}")
    integer = make_quantized(ckpt, work / f"i{width}", integer=True)
    int8_norms = make_quantized(ckpt, work / f"n{width}", integer=True, int8_norms=True)
    files = {
        KINDS[0]: export_tflite(ckpt, work / f"fp32_{width}.tflite", **quiet),
        KINDS[1]: export_tflite(ptq, work / f"int8_{width}.tflite", int8=True, **quiet),
        KINDS[2]: export_tflite(integer, work / f"integer_{width}.tflite", int8=True, **quiet),
        KINDS[3]: export_tflite(integer, work / f"integer_io_{width}.tflite", int8=True, io="int8", **quiet),
        KINDS[4]: export_tflite(int8_norms, work / f"int8_norms_{width}.tflite", int8=True, io="int8", **quiet),
    }
    mels = noise_logmels(8, seed=1).numpy()
    return {kind: measure(Path(summary["out"]), mels) for kind, summary in files.items()}


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        "# TF-SepNet .tflite files on a microcontroller: TensorFlow Lite Micro's arena and flash",
        "",
        f"Measured {result['created']} on {machine_line(m)}; tflite-micro "
        f"{result['tflite_micro']}: `benchmarks/micro_footprint.py`. Untrained models (the arena and the "
        "operators do not depend on the weights). The arena is the smallest with which TFLM builds and runs "
        "the model (reference kernels; its bookkeeping with x86-64 struct sizes: a 32-bit Cortex-M needs less).",
        "",
        "| width | file | arena bytes | target | flash bytes | operators | tensors | float tensors inside | "
        "TFLM = LiteRT reference |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for width, rows in result["widths"].items():
        for kind, r in rows.items():
            target = f"{TARGETS[int(width)]:,}" if kind.startswith("integer") and int(width) in TARGETS else ""
            exact = "yes" if r["tflm_equals_litert_reference"] else "NO"
            lines.append(
                f"| {width} | {kind} | {r['arena_bytes']:,} | {target} | {r['flash_bytes']:,} | {r['operators']} | "
                f"{r['tensors']} | {r['float_tensors_inside']} | {exact} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[12, 40])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        widths = {str(w): one_width(w, Path(tmp)) for w in args.widths}
    result = {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(1),
        "tflite_micro": package_version("tflite-micro"),
        "widths": widths,
    }
    write_text_atomic(OUT / "micro_footprint.json", json.dumps(result, indent=1) + "\n")
    write_text_atomic(OUT / "micro_footprint.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
