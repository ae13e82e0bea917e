"""The report's Table 3 ablation, trained here at equal settings on SYNTHETIC tau-like data.

Rows (the first of --widths, C=40 by default): BC-ResNet + ResNorm; TF-SepNet + ResNorm;
+ AdaResNorm (1); + AdaResNorm + device simulation (2) (`--devsim offline`, the CLI's default: the
report's proportion). Then, for each further width (C=12 by default), a pair with device simulation:
TF-SepNet + ResNorm + (2) against + (1)(2), the report's small-model recipe. Every row is one
`tfsep_edge.train.loop.train` run (the `tfsep-edge train` code) on the same `synth --preset tau-like`
set with the same seed, epochs, warm-up, batch, learning rate and augmentation: only --model,
--norm and --devsim differ. Per row: params and MACs (counted: torchinfo, NeSsi rule, on the trained
model), the last epoch's accuracy on the held-out evaluate split overall and per device (the
`tfsep-edge evaluate` code on last.pt; the best epoch's figure is recorded too, but it is picked on
that same split), and the training time. The report's figures (100 epochs on TAU22) stand beside
ours for reference only.

    .venv/bin/python benchmarks/table3.py --epochs 30                      # C=40 ablation + C=12 pair
    .venv/bin/python benchmarks/table3.py --epochs 2 --widths 12 --results /tmp/t3   # a quick look
    .venv/bin/python benchmarks/table3.py --render                         # rewrite the .md from the .json
    .venv/bin/python benchmarks/table3.py --combine s0/table3.json s1/table3.json s2/table3.json
                                                                # runs with other --seed: mean and spread

Writes benchmarks/results/table3.json and table3.md (atomically) with the machine record; --combine
writes table3_seeds.json and .md from runs that differ only in --seed. SYNTHETIC
audio: the rows show that the ablation runs end to end at equal settings, not TAU22 accuracy.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tfsep_edge.bench.machine import machine_info  # noqa: E402
from tfsep_edge.bench.report import machine_line  # noqa: E402
from tfsep_edge.budget.table3 import REPORT_ROWS  # noqa: E402
from tfsep_edge.core.config import SEEN_DEVICES, UNSEEN_DEVICES  # noqa: E402
from tfsep_edge.core.fileio import write_text_atomic  # noqa: E402
from tfsep_edge.datasets.synth import PRESETS  # noqa: E402

OUT = REPO / "benchmarks" / "results"
DEVICES = (*SEEN_DEVICES, *UNSEEN_DEVICES)
# The report's Table 3 accuracies as printed (%, TAU22 development set, 100 epochs): A B C S1..S6, Acc.
# Params/MACs come from tfsep_edge.budget.table3.REPORT_ROWS (the `budget --table3` constants).
REPORT_ACCURACY = {
    "BC-ResNet, C=40 + ResNorm": (66.0, 52.4, 56.7, 54.2, 55.1, 59.0, 50.2, 50.4, 43.3, 54.2),
    "TF-SepNet, C=40 + ResNorm": (67.9, 57.8, 63.5, 56.4, 52.4, 57.5, 53.4, 55.5, 50.6, 57.2),
    "+ AdaResNorm (1)": (67.3, 58.4, 64.1, 57.0, 52.4, 56.5, 54.8, 55.0, 51.8, 57.5),
    "+ Device Simulation (2)": (76.5, 60.3, 68.4, 63.2, 61.6, 67.1, 61.9, 61.4, 58.6, 64.3),
    "TF-SepNet, C=12 + (1)(2)": (62.1, 49.8, 56.4, 47.7, 50.4, 53.8, 52.5, 49.9, 44.8, 51.9),
    "TF-SepNet, C=20 + (1)(2)": (69.6, 56.0, 61.0, 54.3, 54.5, 59.5, 56.5, 56.1, 50.3, 57.5),
    "TF-SepNet, C=60 + (1)(2)": (79.2, 62.1, 69.2, 64.6, 61.1, 68.8, 64.6, 66.2, 59.5, 66.2),
}
REPORT_COUNTS = {label: (k, m) for label, k, m, _name, _opts in REPORT_ROWS}


def row_specs(widths: list[int]) -> list[dict]:
    """(label, the report's row it corresponds to or None, train options) per row."""
    big = widths[0]

    def report(label: str, width: int) -> str | None:
        return label if width in (12, 20, 40, 60) and label in REPORT_ACCURACY else None

    specs = [
        (f"BC-ResNet, C={big} + ResNorm", {"model": "bcresnet", "devsim": "none"}),
        (f"TF-SepNet, C={big} + ResNorm", {"model": "tfsepnet", "norm": "resnorm", "devsim": "none"}),
        ("+ AdaResNorm (1)", {"model": "tfsepnet", "norm": "adaresnorm", "devsim": "none"}),
        ("+ Device Simulation (2)", {"model": "tfsepnet", "norm": "adaresnorm", "devsim": "offline"}),
    ]
    rows = [
        {"label": label, "report_row": report(label, big) if big == 40 else None, "options": {**o, "width": big}}
        for label, o in specs
    ]
    for w in widths[1:]:
        rows.append(
            {
                "label": f"TF-SepNet, C={w} + ResNorm + (2)",
                "report_row": None,
                "options": {"model": "tfsepnet", "norm": "resnorm", "devsim": "offline", "width": w},
            }
        )
        label = f"TF-SepNet, C={w} + (1)(2)"
        rows.append(
            {
                "label": label,
                "report_row": report(label, w),
                "options": {"model": "tfsepnet", "norm": "adaresnorm", "devsim": "offline", "width": w},
            }
        )
    return rows


def one_row(spec: dict, data: Path, run_dir: Path, recipe: dict) -> dict:
    from tfsep_edge.budget.count import official_count
    from tfsep_edge.model.checkpoint import load_checkpoint
    from tfsep_edge.runtime.evaluate import evaluate
    from tfsep_edge.train.loop import train

    t0 = time.perf_counter()
    summary = train(data, run_dir, given={**recipe, **spec["options"]}, progress=False)
    wall = time.perf_counter() - t0
    model, info = load_checkpoint(run_dir / "last.pt")
    cfg = info["frontend"]
    params, macs, _ = official_count(model, cfg.n_mels, cfg.n_frames)
    ev = evaluate(run_dir / "last.pt", data, "evaluate", threads=recipe["threads"], progress=False)
    with open(run_dir / "metrics.csv", newline="") as f:
        history = list(csv.DictReader(f))
    best = max(history, key=lambda r: float(r["val_acc"]))
    epoch_s = [float(r["seconds"]) for r in history]
    return {
        **spec,
        "params": int(params),
        "macs": int(macs),
        "train_clips": summary["train_clips"],
        "evaluate_clips": ev["clips"],
        "accuracy": ev["accuracy"],
        "log_loss": ev["log_loss"],
        "per_device": {d: ev["per_device"].get(d) for d in DEVICES},
        "device_counts": {d: ev["device_counts"].get(d, 0) for d in DEVICES},
        "seen_accuracy": ev["seen_accuracy"],
        "unseen_accuracy": ev["unseen_accuracy"],
        "last_val_acc_in_training": summary["last_val_acc"],
        "best_epoch": int(best["epoch"]),
        "best_epoch_accuracy": float(best["val_acc"]),
        "train_seconds": round(summary["seconds"], 1),
        "seconds_per_epoch_median": round(sorted(epoch_s)[len(epoch_s) // 2], 2) if epoch_s else None,
        "wall_seconds": round(wall, 1),
    }


def made_by(data: Path) -> str:
    """How the set was written, from its README ("Written by `tfsep-edge synth ...`")."""
    readme = (data / "README.txt").read_text(errors="replace") if (data / "README.txt").is_file() else ""
    line = next((ln for ln in readme.splitlines() if ln.startswith("Written by")), "")
    return line.removeprefix("Written by ").split(" (tfsep_edge")[0] or str(data)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def markdown(result: dict) -> str:
    m, r = result["machine"], result["recipe"]
    rows = result["rows"]
    chance = 1 / 10
    lines = [
        "# Table 3's ablation at equal settings, on SYNTHETIC data (`benchmarks/table3.py`)",
        "",
        f"**SYNTHETIC data, not TAU22**: {result['data']} ({result['train_clips']} train clips, "
        f"{result['evaluate_clips']} held-out evaluate clips; devices s4-s6 only in evaluate). "
        f"Every row: {r['epochs']} epochs ({r['warmup_epochs']:g} of linear warm-up, then cosine), seed {r['seed']}, "
        f"batch {r['batch_size']}, lr {r['lr']:g}, Mixup and Freq-MixStyle at the report's settings, "
        f"{r['threads']} thread; only `--model`, `--norm` and `--devsim` differ. The report trained 100 epochs "
        "on TAU22: its figures stand beside ours for reference, not as a target these runs should meet.",
        "",
        f"Measured {result['created']} on {machine_line(m)}; load average at start "
        f"{', '.join(f'{x:.1f}' for x in result['load_average_start'])}, at the end "
        f"{', '.join(f'{x:.1f}' for x in result['load_average_end'])} (a shared machine: times are indicative).",
        "",
        "## Accuracy and size: ours (SYNTHETIC) and the report's (TAU22)",
        "",
        f"**SYNTHETIC** tau-like data ({result['train_clips']} train / {result['evaluate_clips']} evaluate clips), "
        f"**{r['epochs']} epochs** per row at equal settings (the report: TAU22, 100 epochs). "
        'Ours: the last epoch\'s model (last.pt) on the evaluate split; "best epoch" is the highest evaluate '
        "accuracy of any epoch, picked on that same split (optimistic). Params and MACs: counted (torchinfo, "
        "the NeSsi rule). Report: Table 3 as printed.",
        "",
        "| row | `train` options | params | MACs | acc (ours) | best epoch (ours) | seen / unseen (ours) "
        "| report acc | report params | report MACs | train time |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        o = row["options"]
        opts = f"--model {o['model']} --width {o['width']}" + (f" --norm {o['norm']}" if o.get("norm") else "")
        opts += f" --devsim {o['devsim']}"
        rep = row.get("report_row")
        acc = REPORT_ACCURACY.get(rep) if rep else None
        k, mm = REPORT_COUNTS.get(rep, (None, None)) if rep else (None, None)
        lines.append(
            f"| {row['label']} | `{opts}` | {row['params']:,} | {row['macs']:,} | {_pct(row['accuracy'])}% | "
            f"{_pct(row['best_epoch_accuracy'])}% (epoch {row['best_epoch']}) | "
            f"{_pct(row['seen_accuracy'])} / {_pct(row['unseen_accuracy'])} | "
            f"{f'{acc[-1]:.1f}%' if acc else '-'} | {f'{k:.2f} K' if k else '-'} | {f'{mm:.2f} M' if mm else '-'} | "
            f"{row['train_seconds'] / 60:.1f} min ({row['train_clips']:,} clips/epoch) |"
        )
    head = " | ".join(d.upper() if len(d) == 1 else d.upper() for d in DEVICES)
    lines += [
        "",
        "## Per device (%): ours (SYNTHETIC, last epoch) over the report's (TAU22)",
        "",
        f"| row | {head} | acc |",
        "|---|" + "---|" * (len(DEVICES) + 1),
    ]
    for row in rows:
        rep = REPORT_ACCURACY.get(row.get("report_row") or "")
        cells = []
        for i, d in enumerate(DEVICES):
            ours = _pct(row["per_device"][d])
            cells.append(f"{ours} / {rep[i]:.1f}" if rep else ours)
        acc = f"{_pct(row['accuracy'])} / {rep[-1]:.1f}" if rep else _pct(row["accuracy"])
        lines.append(f"| {row['label']} | " + " | ".join(cells) + f" | {acc} |")
    counts = rows[0]["device_counts"]
    lines += [
        "",
        "Evaluate clips per device: " + ", ".join(f"{d} {counts[d]}" for d in DEVICES) + ".",
        "",
        "## Reading",
        "",
    ]
    lines += reading(rows, chance, r)
    return "\n".join(lines) + "\n"


def reading(rows: list[dict], chance: float, recipe: dict) -> list[str]:
    """What the rows can and cannot say, from the figures themselves."""
    out = []
    accs = [row["accuracy"] for row in rows]
    if max(accs) < chance + 0.1:
        out.append(
            f"- Every row is within 10 points of chance (10%) after {recipe['epochs']} epoch(s): at this length the "
            "table says nothing about the networks; run it longer (`--epochs`)."
        )
    clips = len(rows) and rows[0]["evaluate_clips"]
    se = 100 * (0.25 / max(clips, 1)) ** 0.5
    out.append(
        f"- One run per row, one seed, {clips} evaluate clips: a single accuracy carries a sampling error of about "
        f"{se:.1f} points (binomial, at 50%) before seed-to-seed variation; differences of a few points between rows "
        "are within noise. The report's steps (below) come from TAU22's far larger evaluate split."
    )
    noise = 1.96 * 2**0.5 * se
    out += ["", "| step | ours (pp) | report (pp) |", "|---|---|---|"]
    for step, (a, b), report_ab in steps(rows):
        ours = 100 * (rows[b]["accuracy"] - rows[a]["accuracy"])
        rep = f"{report_ab:+.1f}" if report_ab is not None else "-"
        out.append(f"| {step} | {ours:+.1f}{'' if abs(ours) >= noise else ' (within noise)'} | {rep} |")
    out += [
        "",
        f'"Within noise": smaller than {noise:.1f} points, the 95% band of a difference between two accuracies '
        f"on {clips} clips each from sampling alone.",
        "",
    ]
    beyond = [name for name, (a, b), _ in steps(rows) if abs(rows[b]["accuracy"] - rows[a]["accuracy"]) >= noise / 100]
    if beyond:
        out.append(
            f"- Beyond the clips' sampling noise ({'; '.join(beyond)}) is not beyond seed-to-seed variation, which "
            "one run per row does not measure: rerun with another `--seed` (and more `--epochs`) before reading "
            "such a step as a property of the network."
        )
    out.append(
        "- Same epochs is not the same training: device simulation adds simulated clips (the `clips/epoch` "
        "column), so its rows take more optimizer steps per epoch."
    )
    bc = next((row for row in rows if row["options"]["model"] == "bcresnet"), None)
    if bc is not None:
        out.append(
            f"- BC-ResNet here is easy_dcase_task1's BCResNet ({bc['params']:,} params at C={bc['options']['width']}; "
            "the report's C=40 has 87.04 K: `tfsep-edge budget --table3` says where the difference likely comes "
            "from); the TF-SepNet counts match the report's."
        )
    return out


def steps(rows: list[dict]) -> list[tuple[str, tuple[int, int], float | None]]:
    """(step, (row index before, after), the report's difference in points or None) of the ablation."""

    def report_diff(a: int, b: int) -> float | None:
        ra, rb = (REPORT_ACCURACY.get(rows[i].get("report_row") or "") for i in (a, b))
        return rb[-1] - ra[-1] if ra and rb else None

    out = [
        ("BC-ResNet -> TF-SepNet (both ResNorm)", (0, 1)),
        ("ResNorm -> AdaResNorm", (1, 2)),
        ("+ device simulation", (2, 3)),
    ]
    for i in range(4, len(rows) - 1, 2):
        out.append(
            (f"C={rows[i]['options']['width']}: ResNorm -> AdaResNorm (both with device simulation)", (i, i + 1))
        )
    return [(name, ab, report_diff(*ab)) for name, ab in out]


def combine(paths: list[Path]) -> dict:
    """Runs of the same rows, data and recipe that differ only in the training seed, side by side."""
    runs = [json.loads(p.read_text()) for p in paths]
    first = runs[0]

    def setting(r: dict) -> tuple:  # what the runs must share: all but the seed
        return {**r["recipe"], "seed": None}, r["data"], [row["label"] for row in r["rows"]]

    for path, r in zip(paths, runs, strict=True):
        if setting(r) != setting(first):
            sys.exit(f"{path}: not the same rows, data and recipe as {paths[0]} (only --seed may differ)")
    seeds = [r["recipe"]["seed"] for r in runs]
    if len(set(seeds)) != len(seeds):
        sys.exit(f"--combine: seeds {seeds} repeat; give runs with different --seed")
    rows = []
    for k, row in enumerate(first["rows"]):
        per_seed = [r["rows"][k] for r in runs]
        rows.append(
            {
                "label": row["label"],
                "report_row": row.get("report_row"),
                "options": row["options"],
                "params": row["params"],
                "accuracy": [x["accuracy"] for x in per_seed],
                "seen_accuracy": [x["seen_accuracy"] for x in per_seed],
                "unseen_accuracy": [x["unseen_accuracy"] for x in per_seed],
            }
        )
    made = [{"seed": r["recipe"]["seed"], "created": r["created"], "cpu": r["machine"].get("cpu_model")} for r in runs]
    return {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "synthetic_data": True,
        "data": first["data"],
        "train_clips": first["train_clips"],
        "evaluate_clips": first["evaluate_clips"],
        "recipe": {**first["recipe"], "seed": seeds},
        "runs": made,
        "rows": rows,
    }


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def seeds_markdown(result: dict) -> str:
    r, rows, seeds = result["recipe"], result["rows"], result["recipe"]["seed"]
    lines = [
        "# Table 3's ablation over training seeds, on SYNTHETIC data (`benchmarks/table3.py --combine`)",
        "",
        f"**SYNTHETIC data, not TAU22**: {result['data']} ({result['train_clips']} train / "
        f"{result['evaluate_clips']} held-out evaluate clips). The same rows, data and recipe as "
        f"`table3.md` ({r['epochs']} epochs, batch {r['batch_size']}, lr {r['lr']:g}, {r['threads']} thread), "
        f"trained once per seed ({', '.join(map(str, seeds))}); accuracy of last.pt on the evaluate split. Runs: "
        + "; ".join(f"seed {x['seed']} measured {x['created']} on {x['cpu']}" for x in result["runs"])
        + ".",
        "",
        "| row | params | acc per seed (%) | mean +- sd (%) | seen / unseen, mean (%) | report acc (TAU22) |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        mean, sd = _mean_sd(row["accuracy"])
        seen, unseen = (_mean_sd(row[k])[0] for k in ("seen_accuracy", "unseen_accuracy"))
        rep = REPORT_ACCURACY.get(row.get("report_row") or "")
        lines.append(
            f"| {row['label']} | {row['params']:,} | {' / '.join(_pct(a) for a in row['accuracy'])} | "
            f"{100 * mean:.1f} +- {100 * sd:.1f} | {100 * seen:.1f} / {100 * unseen:.1f} | "
            f"{f'{rep[-1]:.1f}' if rep else '-'} |"
        )
    lines += [
        "",
        "## The ablation's steps over seeds",
        "",
        "Each step's difference in accuracy, per seed (the same seed on both sides), then their mean and "
        'standard deviation; "same sign" says whether every seed moved the same way.',
        "",
        "| step | per seed (pp) | mean +- sd (pp) | same sign | report (pp) |",
        "|---|---|---|---|---|",
    ]
    consistent, mixed = [], []
    for step, (a, b), report_ab in steps(rows):
        diffs = [100 * (y - x) for x, y in zip(rows[a]["accuracy"], rows[b]["accuracy"], strict=True)]
        mean, sd = _mean_sd(diffs)
        sign = "yes" if all(d > 0 for d in diffs) or all(d < 0 for d in diffs) else "no"
        rep = f"{report_ab:+.1f}" if report_ab is not None else "-"
        lines.append(
            f"| {step} | {' / '.join(f'{d:+.1f}' for d in diffs)} | {mean:+.1f} +- {sd:.1f} | {sign} | {rep} |"
        )
        (consistent if sign == "yes" else mixed).append(step)
    spread = max(_mean_sd(row["accuracy"])[1] for row in rows)
    lines += [
        "",
        f"Reading: seed to seed, a row's accuracy moves by up to {100 * spread:.1f} points (sd) at these settings. "
        + (f"Every seed moved the same way only for: {'; '.join(consistent)}. " if consistent else "")
        + (
            f"The other steps ({'; '.join(mixed)}) changed sign between seeds: at {r['epochs']} epochs on "
            f"{result['train_clips']} clips they are not a property of the networks. "
            if mixed
            else ""
        )
        + "Larger sets and longer training (the report: TAU22, 100 epochs) narrow this spread.",
    ]
    return "\n".join(lines) + "\n"


def render(folder: Path = OUT) -> None:
    saved = json.loads((folder / "table3.json").read_text())
    write_text_atomic(folder / "table3.md", markdown(saved))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--warmup-epochs", type=float, help="default: a tenth of --epochs (docs/quantization.md's 3 of 30)")
    ap.add_argument("--widths", type=int, nargs="+", default=[40, 12], help="ablation width, then a pair per width")
    ap.add_argument("--clips-per-class", type=int, default=100)
    ap.add_argument("--data-seed", type=int, default=1, help="the synth set's seed (docs/quantization.md: 1)")
    ap.add_argument("--seed", type=int, default=0, help="training seed, the same for every row")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", type=Path, help="an existing `synth --preset tau-like` folder (else one is written)")
    ap.add_argument("--runs", type=Path, help="keep the run folders here (else a temporary folder)")
    ap.add_argument("--results", type=Path, default=OUT, help="where table3.json/.md go")
    ap.add_argument("--render", action="store_true", help="only rewrite the .md from the committed .json")
    ap.add_argument("--combine", type=Path, nargs="+", metavar="JSON", help="table3.json of runs with other --seed")
    args = ap.parse_args()
    if args.render:
        render(args.results)
        return
    if args.combine:
        result = combine(args.combine)
        write_text_atomic(args.results / "table3_seeds.json", json.dumps(result, indent=1) + "\n")
        write_text_atomic(args.results / "table3_seeds.md", seeds_markdown(result))
        print(seeds_markdown(result))
        return
    from tfsep_edge.datasets.synth import synthesize
    from tfsep_edge.datasets.tau import read_split

    recipe = {
        "epochs": args.epochs,
        "warmup_epochs": args.warmup_epochs if args.warmup_epochs is not None else args.epochs / 10,
        "seed": args.seed,
        "threads": args.threads,
        "batch_size": 32,
        "lr": 0.01,
    }
    load_start = list(os.getloadavg())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or synthesize(
            Path(tmp) / "tau_like",
            clips_per_class=args.clips_per_class,
            seed=args.data_seed,
            overlap=PRESETS["tau-like"],
        )
        runs = args.runs or Path(tmp) / "runs"
        for i, spec in enumerate(row_specs(args.widths)):
            rows.append(
                one_row(spec, data, runs / f"{i}-{spec['options']['model']}-c{spec['options']['width']}", recipe)
            )
            print(json.dumps({k: rows[-1][k] for k in ("label", "accuracy", "params", "train_seconds")}), flush=True)
        result = {
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "synthetic_data": True,
            "data": made_by(data),
            "train_clips": len(read_split(data, "train")),
            "evaluate_clips": len(read_split(data, "evaluate")),
            "recipe": recipe,
            "machine": machine_info(args.threads),
            "load_average_start": load_start,
            "load_average_end": list(os.getloadavg()),
            "report": "Cai et al., DCASE 2023 Task 1 technical report, Table 3 (TAU22, 100 epochs), as printed",
            "report_accuracy": REPORT_ACCURACY,
            "rows": rows,
        }
    args.results.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.results / "table3.json", json.dumps(result, indent=1) + "\n")
    write_text_atomic(args.results / "table3.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
