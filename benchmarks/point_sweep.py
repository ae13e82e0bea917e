"""Where a quantized model's int8 loss sits: each activation quantization point of its fake-quant
twin removed alone, the logit SQNR it gives back (quant.analysis.point_sensitivity).

For each checkpoint (trained on a SYNTHETIC `synth --preset tau-like` set; pass last.pt): the
quantize command's defaults (`run_quantize`, PTQ), then the sweep on the first --windows held-out
clips of the set's evaluate split.

    .venv/bin/python benchmarks/point_sweep.py --data HARD_SET --checkpoints bc40/last.pt [c40/last.pt]

Writes benchmarks/results/point_sweep.json and .md. SYNTHETIC audio.
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

from benchmarks.integer_fidelity import made_by  # noqa: E402
from tfsep_edge.bench.machine import machine_info  # noqa: E402
from tfsep_edge.bench.report import machine_line  # noqa: E402
from tfsep_edge.core.fileio import write_text_atomic  # noqa: E402
from tfsep_edge.datasets.calibration import select_eval  # noqa: E402
from tfsep_edge.model.checkpoint import load_model  # noqa: E402
from tfsep_edge.model.families import get_family  # noqa: E402
from tfsep_edge.quant.analysis import point_sensitivity  # noqa: E402
from tfsep_edge.quant.artifact import load_quantized  # noqa: E402
from tfsep_edge.quant.pipeline import QuantizeRequest, eval_data, run_quantize  # noqa: E402

OUT = REPO / "benchmarks" / "results"


def one(checkpoint: Path, data: Path, work: Path, windows: int, top: int) -> dict:
    out = work / f"q{len(list(work.iterdir()))}"
    run_quantize(QuantizeRequest(checkpoint, data, out=out, sensitivity=False), log=lambda _m: None)
    art = load_quantized(out)
    held_out = eval_data(select_eval(data), art.frontend, lambda _m: None, "evaluation", str(data))
    base, rows = point_sensitivity(art, held_out.windows[:windows])
    config = load_model(checkpoint).config
    return {
        "checkpoint": f"{get_family(config.family).title.split(' (')[0]} C={config.width} ({checkpoint.name})",
        "checkpoint_path": str(checkpoint),
        "windows": min(windows, len(held_out.windows)),
        "points": len(rows),
        "logit_sqnr_db": round(base, 2),
        "top": [r | {"sqnr_gain_db": round(r["sqnr_gain_db"], 2)} for r in rows[:top]],
    }


def markdown(result: dict) -> str:
    lines = [
        "# Where the int8 loss sits: each quantization point removed alone (SYNTHETIC tau-like data)",
        "",
        f"Measured {result['created']} on {machine_line(result['machine'])}: `benchmarks/point_sweep.py`. "
        f"Data: {result['data']}, held-out evaluate clips. The model: `quantize`'s defaults (PTQ). Logit SQNR of "
        "the fake-quant twin against the fused float model; gain: the SQNR with one activation point removed "
        "from the twin, minus that.",
    ]
    for r in result["rows"]:
        lines += [
            "",
            f"## {r['checkpoint']}: {r['logit_sqnr_db']:.1f} dB over {r['windows']} clips, {r['points']} points",
            "",
            "| point | SQNR gain |",
            "|---|---|",
        ]
        lines += [f"| {p['point']} | {p['sqnr_gain_db']:+.2f} dB |" for p in r["top"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="a `synth --preset tau-like` folder")
    ap.add_argument("--checkpoints", type=Path, nargs="+", required=True)
    ap.add_argument("--windows", type=int, default=128, help="held-out clips the sweep runs on [128]")
    ap.add_argument("--top", type=int, default=15, help="points listed per checkpoint [15]")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [one(ck, args.data, Path(tmp), args.windows, args.top) for ck in args.checkpoints]
    result = {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(1),
        "data": made_by(args.data),
        "rows": rows,
    }
    write_text_atomic(OUT / "point_sweep.json", json.dumps(result, indent=1) + "\n")
    write_text_atomic(OUT / "point_sweep.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
