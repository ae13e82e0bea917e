"""Which int16 ops an int16 normalisation could use: each op alone, in LiteRT's reference kernels
and in TensorFlow Lite Micro, with different scales on its tensors, and whether the two give the
same integers.

The integer model's first norm loses most of its fidelity in its int8 statistics
(docs/quantization.md); int16 statistics are the next step, and they must run in both
interpreters with one result (the export checks TFLM = LiteRT reference bit for bit). Per op: a
one-op .tflite (int16 tensors, zero point 0 as TFLite requires for int16; QUANTIZE between int8 and
int16), --trials random integer inputs (positive for RSQRT), LiteRT with
OpResolverType.BUILTIN_REF against TFLM (runtime/micro.py).

    .venv/bin/python benchmarks/int16_ops.py [--trials 200]

Writes benchmarks/results/int16_ops.json and .md with the machine record.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tfsep_edge.bench.machine import machine_info, package_version  # noqa: E402
from tfsep_edge.bench.report import machine_line  # noqa: E402
from tfsep_edge.core.fileio import write_text_atomic  # noqa: E402
from tfsep_edge.export.tflite_flatbuffer import FlatGraph, Quant  # noqa: E402

OUT = REPO / "benchmarks" / "results"
SHAPE, STAT = (1, 4, 4, 3), (1, 4, 1, 1)  # a (B, F, T, C) tensor and a per-row statistic
A, B, C = (Quant.per_tensor(s, 0) for s in (0.00137, 0.00071, 0.00213))
Q8 = Quant.per_tensor(0.0123, -7)


def one_op(code: str, inputs: list[tuple], out: tuple, options=None, axes=None) -> bytes:
    """A .tflite of one op: inputs and output as (shape, type, Quant)."""
    g = FlatGraph()
    ins = [g.activation(f"in{i}", *spec) for i, spec in enumerate(inputs)]
    y = g.activation("out", *out)
    extra = [g.const("axes", np.array(axes, np.int32))] if axes is not None else []
    g.op(code, ins + extra, [y], options(g) if options else None)
    return g.pack(ins, [y], {}, code)


def cases() -> dict:
    i16 = "INT16"
    binary = {code: opts for code, opts in (("SUB", "SubOptions"), ("MUL", "MulOptions"), ("ADD", "AddOptions"))}
    out = {
        f"{code} int16 (broadcast statistic)": one_op(
            code, [(SHAPE, i16, A), (STAT, i16, B)], (SHAPE, i16, C), lambda g, o=opts: g.options(o)
        )
        for code, opts in binary.items()
    }
    out["SQUARED_DIFFERENCE int16"] = one_op(
        "SQUARED_DIFFERENCE",
        [(SHAPE, i16, A), (STAT, i16, A)],
        (SHAPE, i16, C),
        lambda g: g.options("SquaredDifferenceOptions"),
    )
    out["MEAN int16 over (T, C)"] = one_op(
        "MEAN", [(SHAPE, i16, A)], (STAT, i16, C), lambda g: g.options("ReducerOptions", keepDims=True), axes=[2, 3]
    )
    out["RSQRT int16"] = one_op("RSQRT", [(STAT, i16, A)], (STAT, i16, C))
    out["QUANTIZE int8 -> int16"] = one_op("QUANTIZE", [(SHAPE, "INT8", Q8)], (SHAPE, i16, A))
    out["QUANTIZE int16 -> int8"] = one_op("QUANTIZE", [(SHAPE, i16, A)], (SHAPE, "INT8", Q8))
    return out


def compare(name: str, data: bytes, trials: int) -> dict:
    from tfsep_edge.core.errors import first_line
    from tfsep_edge.runtime import micro

    rng = np.random.default_rng(0)
    try:
        ref = micro.reference_interpreter(data)
        ref.allocate_tensors()
    except Exception as exc:  # noqa: BLE001 - a refused op is the finding
        return {"litert_reference": first_line(exc, 160), "tflm": "not tried", "equal": None}
    try:
        tflm = micro.MicroInterpreter(data).interpreter
    except Exception as exc:  # noqa: BLE001
        return {"litert_reference": "loads", "tflm": first_line(exc, 160), "equal": None}
    differing, largest = 0, 0
    off_exact = {"litert_reference": 0, "tflm": 0}  # RSQRT: steps from round(1 / sqrt(x) / scale)
    for _ in range(trials):
        for k, d in enumerate(ref.get_input_details()):
            lo, hi = (-128, 128) if d["dtype"] == np.int8 else (-3000, 3000)
            v = rng.integers(1 if name.startswith("RSQRT") else lo, hi, size=d["shape"]).astype(d["dtype"])
            ref.set_tensor(d["index"], v)
            tflm.set_input(v, k)
        status = {}
        for who, invoke in (("litert_reference", ref.invoke), ("tflm", tflm.invoke)):
            try:
                invoke()
                status[who] = "runs"
            except Exception as exc:  # noqa: BLE001 - a refused op is the finding
                status[who] = first_line(exc, 160)
        if status != {"litert_reference": "runs", "tflm": "runs"}:
            return status | {"equal": None}
        a = ref.get_tensor(ref.get_output_details()[0]["index"])
        b = np.asarray(tflm.get_output(0)).reshape(a.shape)
        differing += int(not np.array_equal(a, b))
        largest = max(largest, int(np.abs(a.astype(np.int64) - b.astype(np.int64)).max()))
        if name.startswith("RSQRT"):
            exact = np.clip(np.round(1 / np.sqrt(v.astype(np.float64) * A.scale[0]) / C.scale[0]), -32768, 32767)
            for who, got in (("litert_reference", a), ("tflm", b)):
                off_exact[who] = max(off_exact[who], int(np.abs(got.astype(np.int64) - exact.astype(np.int64)).max()))
    return {
        "litert_reference": "runs",
        "tflm": "runs",
        "equal": differing == 0,
        "differing_trials": differing,
        "largest_difference_steps": largest,
    } | ({"steps_from_exact": off_exact} if name.startswith("RSQRT") else {})


def markdown(result: dict) -> str:
    lines = [
        "# int16 ops for an int16 normalisation: LiteRT's reference kernels against TFLite Micro",
        "",
        f"Measured {result['created']} on {machine_line(result['machine'])}; tflite-micro "
        f"{result['tflite_micro']}: `benchmarks/int16_ops.py`. One-op graphs with different scales on their "
        f"tensors (zero point 0), {result['trials']} random integer inputs each (positive for RSQRT).",
        "",
        "| op | LiteRT reference | TFLite Micro | same integers |",
        "|---|---|---|---|",
    ]
    for name, r in result["ops"].items():
        same = "-" if r["equal"] is None else "yes"
        if r["equal"] is False:
            same = f"NO: {r['differing_trials']} trials differ, by up to {r['largest_difference_steps']} steps"
        if "steps_from_exact" in r:
            e = r["steps_from_exact"]
            same += f" (from round(1/sqrt(x)): LiteRT {e['litert_reference']}, TFLM {e['tflm']} steps)"
        lines.append(f"| {name} | {r['litert_reference']} | {r['tflm']} | {same} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    args = ap.parse_args()
    ops = {name: compare(name, data, args.trials) for name, data in cases().items()}
    result = {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(1),
        "tflite_micro": package_version("tflite-micro"),
        "trials": args.trials,
        "ops": ops,
    }
    write_text_atomic(OUT / "int16_ops.json", json.dumps(result, indent=1) + "\n")
    write_text_atomic(OUT / "int16_ops.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
