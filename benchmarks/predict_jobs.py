"""`predict --jobs N` against one job over a folder of recordings: wall time, clips/s, speed-up,
and whether the CSVs are identical.

Runs the installed CLI (`tfsep-edge predict MODEL FOLDER --csv ...`) alternately with 1 and N
jobs, `--rounds` times each, so the machine's load hits both alike; the speed-up is median over
median. A folder at TAU22's format (`synth --size tau22 --clips 12000`: 44.1 kHz, 24-bit, resampled
on reading) is what the DCASE evaluate split looks like. Writes benchmarks/results/predict_jobs.md
and .json with the machine record.

    .venv/bin/python benchmarks/predict_jobs.py MODEL FOLDER [--jobs 2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import filecmp
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tfsep_edge.bench.machine import machine_info  # noqa: E402
from tfsep_edge.bench.report import machine_line  # noqa: E402
from tfsep_edge.core.fileio import write_text_atomic  # noqa: E402

OUT = REPO / "benchmarks" / "results"
CLI = [sys.executable, "-m", "tfsep_edge.cli"]


def run_predict(model: Path, folder: Path, jobs: int, csv: Path) -> float:
    start = time.perf_counter()
    args = [*CLI, "predict", str(model), str(folder), "--jobs", str(jobs), "--csv", str(csv)]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def markdown(r: dict) -> str:
    lines = [
        "# predict --jobs: one process per core over a folder of recordings",
        "",
        f"Measured {r['created']} on {machine_line(r['machine'])}: `benchmarks/predict_jobs.py`. "
        f"{r['files']:,} files in {r['folder']} ({r['format']}), model {r['model']}; jobs 1 and "
        f"{r['jobs']} alternately, {r['rounds']} rounds each; median wall time (every run: "
        f"{r['runs']}).",
        "",
        "| jobs | wall s (median) | clips/s | speed-up | CSV identical to one job |",
        "|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        lines.append(
            f"| {row['jobs']} | {row['seconds']:.2f} | {row['clips_per_s']:.0f} | {row['speedup']:.2f}x | "
            f"{'yes' if row['identical_csv'] else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    files = sorted(p for p in args.folder.iterdir() if p.suffix.lower() == ".wav")
    times: dict[int, list[float]] = {1: [], args.jobs: []}
    with tempfile.TemporaryDirectory() as tmp:
        csvs = {j: Path(tmp) / f"jobs{j}.csv" for j in times}
        for _ in range(args.rounds):
            for jobs in times:
                times[jobs].append(run_predict(args.model, args.folder, jobs, csvs[jobs]))
        identical = filecmp.cmp(csvs[1], csvs[args.jobs], shallow=False)
    one = statistics.median(times[1])
    rows = []
    for jobs, t in times.items():
        median = statistics.median(t)
        rows.append(
            {
                "jobs": jobs,
                "seconds": median,
                "clips_per_s": len(files) / median,
                "speedup": one / median,
                "identical_csv": True if jobs == 1 else identical,
            }
        )
    import soundfile as sf

    info = sf.info(str(files[0]))
    result = {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(args.jobs),
        "model": args.model.name,
        "folder": args.folder.name,
        "format": f"{info.samplerate} Hz, {info.subtype}, {info.duration:.1f} s",
        "files": len(files),
        "jobs": args.jobs,
        "rounds": args.rounds,
        "runs": {str(j): [round(s, 2) for s in t] for j, t in times.items()},
        "rows": rows,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    write_text_atomic(OUT / "predict_jobs.json", json.dumps(result, indent=2) + "\n")
    write_text_atomic(OUT / "predict_jobs.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
