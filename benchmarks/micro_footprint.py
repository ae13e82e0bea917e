"""What each .tflite kind needs on a microcontroller, measured in TensorFlow Lite Micro.

For untrained TF-SepNets at each width (benchmarks/models.py: randomised statistics; the arena and
the operators do not depend on the weights): the FP32 .tflite, today's INT8 .tflite (float stem
and norm islands), and the integer .tflite of `quantize --integer` with float and with int8 io,
and with `--int16-norms none` and `all` (int8 io).
Per file: the smallest TFLM arena (runtime/micro.smallest_arena: a binary search with real
interpreter builds, reference kernels, x86-64 bookkeeping), flash (file bytes), operators and
tensors, float tensors between input and logits, and whether TFLM's outputs equal LiteRT's
reference kernels bit for bit on 8 noise log-mels. Writes benchmarks/results/micro_footprint.json
and .md with the machine record.

With `--tflm ROOT` (a tensorflow/tflite-micro checkout with its downloads, arm-none-eabi-g++ and
qemu-system-arm) each file also runs on an emulated Cortex-M4 (benchmarks/cortex_m.py): the pair
`--micro` writes, built with TFLM for the core; its smallest arena there (4-byte pointers: the
figure a device needs), the program's flash, and whether its logits equal TFLM's on this host.

    .venv/bin/python benchmarks/micro_footprint.py [--widths 12 40] [--tflm ROOT]
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
KINDS = (
    "FP32",
    "INT8 (float islands)",
    "integer, float io",
    "integer, int8 io",
    "integer --int16-norms none, int8 io",
    "integer --int16-norms all, int8 io",
)


def measure(path: Path, mels, tflm: Path | None = None) -> dict:
    from tfsep_edge.core.tflite_format import float_activations, operator_counts, schema
    from tfsep_edge.runtime import micro

    data = path.read_bytes()
    sub = schema().ModelT.InitFromPackedBuf(data, 0).subgraphs[0]
    floats = float_activations(data)
    names = {sub.tensors[int(i)].name.decode() for i in (*sub.inputs, *sub.outputs)}
    compared = micro.compare_with_reference(data, mels)
    row = {
        "arena_bytes": micro.smallest_arena(data),
        "flash_bytes": len(data),
        "operators": sum(operator_counts(data).values()),
        "tensors": len(sub.tensors),
        "float_tensors_inside": len([t for t in floats["tensors"] if t not in names]),
        "tflm_equals_litert_reference": bool(compared["bit_exact"]),
    }
    if tflm is not None:
        row["cortex_m4"] = on_cortex_m4(path, mels, tflm, row["arena_bytes"])
    return row


def on_cortex_m4(path: Path, mels, tflm: Path, host_arena: int) -> dict:
    """The file's --micro pair built for a Cortex-M4 and run in QEMU, against TFLM on this host."""
    import numpy as np

    from benchmarks import cortex_m
    from tfsep_edge.export.micro_source import write_micro_source
    from tfsep_edge.runtime import micro

    work = path.parent / f"{path.stem}_m4"
    work.mkdir()
    write_micro_source(path, work / "pair", allow_float=True, arena_size=host_arena)
    elf = cortex_m.build(tflm, work / "pair", work / "build", cortex_m.default_lib_dir())
    got = cortex_m.run(elf, mels, work)
    host = micro.MicroInterpreter(path).run(mels)
    return {
        "smallest_arena": got["smallest_arena"],
        "arena_used": got["arena_used"],
        "program_flash_bytes": cortex_m.flash_bytes(elf),
        "equals_host_tflm": bool(np.array_equal(got["logits"], host)),
        "max_abs_diff_vs_host_tflm": float(np.abs(got["logits"] - host).max()),
    }


def one_width(width: int, work: Path, tflm: Path | None = None) -> dict:
    from tfsep_edge.export.tflite_export import export_tflite

    quiet = {"echo": lambda _s: None, "timing": False}
    ckpt = make_checkpoint(width, work / f"c{width}.pt")
    ptq = make_quantized(ckpt, work / f"q{width}")
    integer = make_quantized(ckpt, work / f"i{width}", integer=True)
    int16_none = make_quantized(ckpt, work / f"n{width}", integer=True, int16_norms="none")
    int16_all = make_quantized(ckpt, work / f"a{width}", integer=True, int16_norms="all")
    files = {
        KINDS[0]: export_tflite(ckpt, work / f"fp32_{width}.tflite", **quiet),
        KINDS[1]: export_tflite(ptq, work / f"int8_{width}.tflite", int8=True, **quiet),
        KINDS[2]: export_tflite(integer, work / f"integer_{width}.tflite", int8=True, **quiet),
        KINDS[3]: export_tflite(integer, work / f"integer_io_{width}.tflite", int8=True, io="int8", **quiet),
        KINDS[4]: export_tflite(int16_none, work / f"int8_norms_{width}.tflite", int8=True, io="int8", **quiet),
        KINDS[5]: export_tflite(int16_all, work / f"int16_all_{width}.tflite", int8=True, io="int8", **quiet),
    }
    mels = noise_logmels(8, seed=1).numpy()
    return {kind: measure(Path(summary["out"]), mels, tflm) for kind, summary in files.items()}


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
    for width, kind, r, target in file_rows(result):
        exact = "yes" if r["tflm_equals_litert_reference"] else "NO"
        lines.append(
            f"| {width} | {kind} | {r['arena_bytes']:,} | {target} | {r['flash_bytes']:,} | {r['operators']} | "
            f"{r['tensors']} | {r['float_tensors_inside']} | {exact} |"
        )
    if result.get("cortex_m4"):
        lines += cortex_m4_table(result)
    return "\n".join(lines) + "\n"


def file_rows(result: dict):
    """(width, file kind, its figures, issue 20's arena target on the integer files' rows) per file."""
    for width, rows in result["widths"].items():
        for kind, r in rows.items():
            target = f"{TARGETS[int(width)]:,}" if kind.startswith("integer") and int(width) in TARGETS else ""
            yield width, kind, r, target


def cortex_m4_table(result: dict) -> list[str]:
    m4 = result["cortex_m4"]
    lines = [
        "",
        "**On a Cortex-M4 (emulated).**",
        "",
        f"Each file's `--micro` pair built with TensorFlow Lite Micro {m4['tflm_commit'] or '(commit unknown)'} "
        f"for a Cortex-M4F ({m4['compiler']}, -O2, reference kernels) and run in {m4['qemu']}, board "
        f"{m4['board']}, with semihosting (`benchmarks/cortex_m.py`, deploy/microcontroller/qemu). The smallest "
        "arena is found on the core by the same binary search (16-byte steps, each size one interpreter build "
        "and one invoke): TFLM's bookkeeping with the core's 4-byte pointers, the figure a device needs. "
        "Program flash: the whole test program's text and data (TFLM's kernels for the file's operators, "
        "newlib with printf, the model). Logits: the 8 "
        "log-mels above, compared with TFLM on this host (float files: float32 kernels compiled for another core "
        "differ in the last bits). QEMU counts no cycles: no timings.",
        "",
        "| width | file | Cortex-M4 arena bytes | x86-64 arena bytes | target | program flash bytes | "
        "logits = host TFLM |",
        "|---|---|---|---|---|---|---|",
    ]
    for width, kind, r, target in file_rows(result):
        if (c := r.get("cortex_m4")) is None:
            continue
        same = "bit for bit" if c["equals_host_tflm"] else f"max abs diff {c['max_abs_diff_vs_host_tflm']:.2g}"
        lines.append(
            f"| {width} | {kind} | {c['smallest_arena']:,} | {r['arena_bytes']:,} | {target} | "
            f"{c['program_flash_bytes']:,} | {same} |"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[12, 40])
    ap.add_argument("--tflm", type=Path, help="a tensorflow/tflite-micro checkout: also run each file on a Cortex-M4")
    args = ap.parse_args()
    if args.tflm is not None:
        from benchmarks import cortex_m

        if why := cortex_m.missing(args.tflm):
            print(f"--tflm: {why}", file=sys.stderr)
            sys.exit(2)
    with tempfile.TemporaryDirectory() as tmp:
        widths = {str(w): one_width(w, Path(tmp), args.tflm) for w in args.widths}
    result = {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(1),
        "tflite_micro": package_version("tflite-micro"),
        "widths": widths,
    }
    if args.tflm is not None:
        result["cortex_m4"] = {
            "tflm_commit": cortex_m.tflm_commit(args.tflm),
            "board": cortex_m.BOARD,
            **cortex_m.versions(),
        }
    write_text_atomic(OUT / "micro_footprint.json", json.dumps(result, indent=1) + "\n")
    write_text_atomic(OUT / "micro_footprint.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
