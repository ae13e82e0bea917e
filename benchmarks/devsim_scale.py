"""Offline device simulation at a data set's own scale: the report's proportion (the default) vs
the literal "7,500 clips per response" (capped by what exists), online, and none (SYNTHETIC data).

Trains C=12 with the project's own loop on one SYNTHETIC TAU22-layout set per setting, same
seed and epochs, and reports the best evaluate accuracy (unseen devices s4-s6 included).

    .venv/bin/python benchmarks/devsim_scale.py [--clips-per-class 30] [--epochs 4]
    # the committed table (the issue's scale: ~1,300 train clips, 30 epochs; ~1 hour on 2 cores):
    .venv/bin/python benchmarks/devsim_scale.py --clips-per-class 220 --epochs 30 --threads 2 --skip-literal

Writes benchmarks/results/devsim_scale.json and devsim_scale.md. Numbers are from SYNTHETIC audio
on a shared machine; they show the method, not TAU22 accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tfsep_edge.core.fileio import write_text_atomic  # noqa: E402
from tfsep_edge.datasets.synth import synthesize  # noqa: E402
from tfsep_edge.datasets.tau import read_split  # noqa: E402

OUT = REPO / "benchmarks" / "results"
SETTINGS = (
    ("offline, the report's proportion (default)", {"devsim": "offline"}),
    ("offline, literal 7,500 per response", {"devsim": "offline", "devsim_clips": 7500}),
    ("online", {"devsim": "online"}),
    ("none", {"devsim": "none"}),
)


def run(data: Path, work: Path, epochs: int, threads: int, skip_literal: bool) -> list[dict]:
    from tfsep_edge.train.loop import train

    n_train = len(read_split(data, "train"))
    rows = []
    for name, extra in SETTINGS:
        if skip_literal and "devsim_clips" in extra:
            continue
        given = {"width": 12, "epochs": epochs, "warmup_epochs": 1, "threads": threads, **extra}
        summary = train(data, work / name.split(",")[0] / str(len(rows)), given=given, progress=False)
        rows.append(
            {
                "devsim": name,
                "simulated_clips": summary["train_clips"] - n_train,
                "real_clips": n_train,
                "best_evaluate_accuracy": summary["best_val_acc"],
                "seconds": round(summary["seconds"], 1),
            }
        )
        print(rows[-1], flush=True)
    return rows


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        "# Offline device simulation at a small data set's scale",
        "",
        f"SYNTHETIC data ({meta['real_clips']} train clips, {meta['device_a']} of them device A; "
        f"{meta['evaluate_clips']} evaluate clips with unseen devices; C=12, {meta['epochs']} epochs, seed 0, "
        f"{meta.get('threads', 1)} thread(s)), not TAU22 accuracy. Shared 2-core machine; seconds are indicative only.",
        "",
        "| `--devsim` | simulated clips added | real clips | best evaluate accuracy | seconds |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['devsim']} | {r['simulated_clips']:,} | {r['real_clips']:,} | "
            f"{r['best_evaluate_accuracy']:.1%} | {r['seconds']} |"
        )
    lines += [
        "",
        "Reading: the same number of epochs is not the same training: a setting that adds N simulated clips",
        "takes (real + N) / real times the optimizer steps per epoch. The report's proportion adds new devices",
        "the size of a real non-A device each.",
    ]
    if any("literal" in r["devsim"] for r in rows):
        lines[-1] += " The literal 7,500 per response (capped by what exists) convolves every device-A"
        lines.append("clip with every response on a small set: many times the real data.")
    return "\n".join(lines) + "\n"


def rewrite_markdown() -> None:
    """Rebuild the .md from the committed .json (after a change of the table's text only)."""
    saved = json.loads((OUT / "devsim_scale.json").read_text())
    write_text_atomic(OUT / "devsim_scale.md", markdown(saved["rows"], saved["meta"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips-per-class", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", type=Path, help="an existing synthetic set written by `synth` (else one is written)")
    ap.add_argument("--runs", type=Path, help="keep the run folders here (else a temporary folder)")
    ap.add_argument("--skip-literal", action="store_true", help="leave out the literal 7,500-per-response row")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.data:
            data = args.data
        else:
            data = synthesize(Path(tmp) / "synth", clips_per_class=args.clips_per_class, seed=0)
        train_clips = read_split(data, "train")
        meta = {
            "data": "SYNTHETIC",
            "clips_per_class": None if args.data else args.clips_per_class,
            "epochs": args.epochs,
            "threads": args.threads,
            "real_clips": len(train_clips),
            "device_a": sum(c.device == "a" for c in train_clips),
            "evaluate_clips": len(read_split(data, "evaluate")),
        }
        rows = run(data, args.runs or Path(tmp) / "runs", args.epochs, args.threads, args.skip_literal)
    OUT.mkdir(parents=True, exist_ok=True)
    write_text_atomic(OUT / "devsim_scale.json", json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    write_text_atomic(OUT / "devsim_scale.md", markdown(rows, meta))
    print(markdown(rows, meta))


if __name__ == "__main__":
    main()
