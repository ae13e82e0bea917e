"""The pipeline at TAU22's size (or a proportional share of it): wall time and peak memory per stage.

Writes a SYNTHETIC set with TAU22's proportions (`synth --size tau22 --fraction F`), then runs each
stage as its own process, as a user would: the waveform cache of both fold-1 splits, offline
device simulation in the report's proportion (32 responses x 7.34% of the device-A clips each),
one training epoch at C=12 (with --workers), `evaluate` of that checkpoint, `quantize`
calibration, the ONNX export `predict` needs, and `predict` over the evaluate split's files with
1 and 2 jobs.

Memory per stage, two ways: the peak RSS of its largest process (exact: the kernel's high-water
mark, from wait4) and the peak of the summed RSS of its process tree (sampled every 0.2 s from
/proc; workers count, shared pages are counted once per process that maps them).

    .venv/bin/python benchmarks/scale.py --fraction 0.02 [--fraction 0.005 ...] [--workers 2]

Each fraction is a separate run on a fresh set; benchmarks/results/scale.json and scale.md hold
every run, and a least-squares line per stage (seconds and MB against clips) extrapolated to
TAU22's 230,350 clips, labelled as such. SYNTHETIC audio; a shared machine: the load average
at the start of each stage is recorded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tfsep_edge.bench.machine import machine_info  # noqa: E402
from tfsep_edge.core.fileio import write_text_atomic  # noqa: E402
from tfsep_edge.datasets.synth import TAU22_CLIPS, clips_of_fraction  # noqa: E402

OUT = REPO / "benchmarks" / "results"
MB = 2**20
LIMIT_MB = 4096  # the bound at full size


# --- one stage as a measured process ----------------------------------------------------------


def _tree_rss_mb(root: int) -> float:
    """Summed VmRSS of `root` and its descendants (from /proc; processes that vanish are skipped)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        pid, ppid = int(entry), int(fields.get("PPid", "0").strip() or 0)
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0] or 0)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += children.get(pid, [])
    return total / 1024


def run_stage(name: str, args: list[str], log: Path, env: dict) -> dict:
    """Run `args` (a command) to the end; its wall time, exit status, largest-process peak RSS
    (wait4) and sampled peak tree RSS. A failing stage stops the benchmark with its log's tail."""
    load = os.getloadavg()[0]
    start = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(args, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=env)
    peak_tree = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            peak_tree[0] = max(peak_tree[0], _tree_rss_mb(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = log.read_text()[-3000:]
        raise SystemExit(f"stage {name} failed (exit {proc.returncode}):\n{tail}")
    row = {
        "stage": name,
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux: KiB; the largest process's high-water mark
        "peak_tree_rss_mb": round(max(peak_tree[0], usage.ru_maxrss / 1024), 1),
        "load_at_start": round(load, 2),
    }
    print(f"  {name}: {row['seconds']} s, peak RSS {row['peak_rss_mb']} MB (tree {row['peak_tree_rss_mb']} MB)")
    return row


# --- a stage killed midway and started again -------------------------------------------------------


def _digests(folders: list[Path]) -> dict[str, str]:
    """blake2b of every file in `folders` (read in 16 MB chunks: the caches are GBs), by relative name."""
    out = {}
    for folder in folders:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            h = hashlib.blake2b(digest_size=16)
            with open(path, "rb") as f:
                while chunk := f.read(1 << 24):
                    h.update(chunk)
            out[f"{folder.name}/{path.relative_to(folder)}"] = h.hexdigest()
    return out


def _complete(folder: Path) -> bool:
    index = folder / "index.json"
    try:
        return index.is_file() and bool(json.loads(index.read_text()).get("complete"))
    except ValueError:
        return False


def kill_and_restart(name: str, args: list[str], outputs: list[Path], kill_after: float, log: Path, env: dict) -> dict:
    """The fault at this size. The stage's finished outputs (`outputs`: cache folders) are hashed and
    removed; the stage starts again and its whole process group gets SIGKILL after `kill_after`
    seconds (as a crash or `kill -9` of the job would); what it left is inspected (a folder that
    reads as complete must hold the same bytes as before); then it starts once more and runs to
    the end, and its outputs must equal the uninterrupted run's byte for byte."""
    before = _digests(outputs)
    for folder in outputs:
        shutil.rmtree(folder)
    with open(log, "w") as f:
        proc = subprocess.Popen(args, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        proc.wait(timeout=kill_after)
        raise SystemExit(f"fault try: stage {name} ended (exit {proc.returncode}) before the kill at {kill_after} s")
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    time.sleep(1.0)  # the group's workers are gone once their parent's pipes close
    parent = outputs[0].parent
    complete = [p for p in outputs if _complete(p)]
    partial = _digests(complete)
    complete_ok = all(before.get(k) == v for k, v in partial.items())
    temporaries = sorted(str(p.relative_to(parent)) for p in parent.rglob(".*.tmp"))
    row = run_stage(f"{name} (restarted)", args, log.with_suffix(".restart.log"), env)
    after = _digests(outputs)
    fault = {
        "stage": name,
        "killed_after_s": kill_after,
        "complete_after_kill": [p.name for p in complete],
        "complete_after_kill_identical": complete_ok,
        "temporaries_after_kill": temporaries,
        "temporaries_after_restart": sorted(str(p.relative_to(parent)) for p in parent.rglob(".*.tmp")),
        "restart_seconds": row["seconds"],
        "restart_peak_rss_mb": row["peak_rss_mb"],
        "files_compared": len(after),
        # a later stage may have added files this one does not write (evaluate's float32 copy)
        "not_written_by_the_stage": sorted(before.keys() - after.keys()),
        "identical_to_uninterrupted": all(before.get(k) == v for k, v in after.items()),
        "differing_files": sorted(k for k, v in after.items() if before.get(k) != v),
    }
    print(f"  fault {name}: {json.dumps(fault)}", flush=True)
    if not (complete_ok and fault["identical_to_uninterrupted"] and not fault["temporaries_after_restart"]):
        raise SystemExit(f"fault try: stage {name} did not restart cleanly: {fault}")
    return fault


# --- the pipeline ------------------------------------------------------------------------------

PY = sys.executable
CLI = [PY, "-m", "tfsep_edge.cli"]
CACHE = (
    "from tfsep_edge.datasets.cache import load_split; import sys\n"
    "for split in ('train', 'evaluate'):\n"
    "    print(split, len(load_split(sys.argv[1], split, workers=int(sys.argv[2]))), 'clips cached', flush=True)\n"
)
DEVSIM = (
    "import sys, torch\n"
    "from pathlib import Path\n"
    "from tfsep_edge.train.options import TrainOptions\n"
    "from tfsep_edge.train.processes import distributed_env\n"
    "from tfsep_edge.train.training_data import load_training_data\n"
    "opts = TrainOptions.resolve({'devsim': 'offline', 'workers': int(sys.argv[2])})\n"
    "d = load_training_data(Path(sys.argv[1]), opts, torch.device('cpu'), distributed_env(), False, print)\n"
    "print(len(d.train), 'training clips with the simulated ones', flush=True)\n"
)


def run_fraction(fraction: float, workers: int, work: Path, faults: tuple[str, ...] = ()) -> dict:
    clips = clips_of_fraction(fraction)
    data, run, logs = work / "data", work / "run", work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    w = str(workers)
    print(f"fraction {fraction} ({clips:,} clips) in {work}", flush=True)
    stages = []

    def stage(name: str, args: list) -> None:
        stages.append(run_stage(name, [str(a) for a in args], logs / f"{name.split()[0]}.log", env))

    synth = ["synth", data, "--size", "tau22", "--clips", clips, "--workers", w, "--preset", "tau-like"]
    stage("synth", CLI + synth)
    stage("cache", [PY, "-c", CACHE, data, w])
    stage("devsim", [PY, "-c", DEVSIM, data, w])
    train = ["train", data, "-o", run, "--epochs", "1", "--warmup-epochs", "1", "--width", "12"]
    stage("train", CLI + train + ["--workers", w, "--threads", "1", "--json"])
    stage("evaluate", CLI + ["evaluate", run / "best.pt", data])
    stage("quantize", CLI + ["quantize", run / "best.pt", "--calib", data, "--no-sensitivity", "-o", work / "q"])
    stage("export", CLI + ["export", run / "best.pt", "--onnx", work / "model.onnx"])
    eval_dir = work / "evaluate_files"  # the evaluate split's files as one folder for `predict` (hard links)
    eval_dir.mkdir()
    rows = (data / "evaluation_setup" / "fold1_evaluate.csv").read_text().splitlines()[1:]
    for row in rows:
        name = row.split("\t")[0]
        os.link(data / name, eval_dir / Path(name).name)
    for jobs in (1, 2):
        csv = work / f"predict_jobs{jobs}.csv"
        stage(f"predict --jobs {jobs}", CLI + ["predict", work / "model.onnx", eval_dir, "--jobs", jobs, "--csv", csv])
    # the criterion: N processes give one process's output, row for row
    stages[-1]["csv_identical_to_jobs_1"] = (work / "predict_jobs2.csv").read_bytes() == (
        work / "predict_jobs1.csv"
    ).read_bytes()
    tried = []
    cache_dir = data / ".tfsep-cache"
    for name in faults:  # after the measured stages, so that their figures are a clean run's
        seconds = next(s["seconds"] for s in stages if s["stage"] == name)
        prefixes = ("devsim-",) if name == "devsim" else ("train-", "evaluate-")
        outputs = sorted(p for p in cache_dir.iterdir() if p.name.startswith(prefixes))
        args = [PY, "-c", DEVSIM if name == "devsim" else CACHE, str(data), w]
        tried.append(kill_and_restart(name, args, outputs, round(seconds / 2, 1), logs / f"{name}.fault.log", env))
    for row in stages:
        if row["stage"].startswith("predict"):
            row["clips_per_s"] = round(len(rows) / row["seconds"], 1)
    setup = data / "evaluation_setup"
    counts = {s: len((setup / f"fold1_{s}.csv").read_text().splitlines()) - 1 for s in ("train", "evaluate")}
    disk = sum(p.stat().st_size for p in work.rglob("*") if p.is_file() and not p.is_symlink()) / 2**30
    return {"fraction": fraction, "clips": clips, **counts, "workers": workers, "disk_gb": round(disk, 2)} | {
        "stages": stages,
        "faults": tried,
    }


# --- extrapolation ---------------------------------------------------------------------------------


def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares (intercept, slope); with one point, a line through the origin."""
    if len(xs) == 1:
        return 0.0, ys[0] / xs[0]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return my - slope * mx, slope


FIXED_SIZE = ("quantize", "export")  # --num-calib files at most, one model: nothing grows with the set


def extrapolate(runs: list[dict]) -> list[dict]:
    names = [s["stage"] for s in runs[0]["stages"]]
    out = []
    for name in names:
        xs = [r["clips"] for r in runs]
        row = {"stage": name}
        for key in ("seconds", "peak_rss_mb", "peak_tree_rss_mb"):
            ys = [next(s[key] for s in r["stages"] if s["stage"] == name) for r in runs]
            a, b = (sum(ys) / len(ys), 0.0) if name in FIXED_SIZE else fit(xs, ys)
            row[f"{key}_intercept"], row[f"{key}_per_1k_clips"] = round(a, 2), round(b * 1000, 3)
            row[f"{key}_at_tau22"] = round(a + b * TAU22_CLIPS, 1)
        out.append(row)
    return out


def markdown(result: dict) -> str:
    m = result["machine"]
    runs = result["runs"]
    lines = [
        "# The pipeline at TAU22's size and at shares of it",
        "",
        f"SYNTHETIC data with TAU22's proportions (`synth --size tau22 --clips N`); machine: {m['cpu_model']}, "
        f"{m['cores']} cores, {result['memory_gb']} GB memory; a machine SHARED with other work (the load "
        "average at each stage's start is in scale.json): seconds are indicative. `benchmarks/scale.py`.",
        "",
        "Peak RSS: the largest process's high-water mark (wait4); tree: the sampled peak of the summed RSS of "
        "the stage's processes (workers included).",
        "",
    ]
    for r in runs:
        lines += [
            f"## Measured: fraction {r['fraction']} ({r['clips']:,} clips: {r['train']:,} train, "
            f"{r['evaluate']:,} evaluate; --workers {r['workers']}; {r['disk_gb']} GB on disk)",
            "",
            "| stage | seconds | peak RSS MB | tree peak RSS MB | clips/s |",
            "|---|---|---|---|---|",
        ]
        for s in r["stages"]:
            cps = s.get("clips_per_s", "")
            lines.append(f"| {s['stage']} | {s['seconds']} | {s['peak_rss_mb']} | {s['peak_tree_rss_mb']} | {cps} |")
        lines.append("")
        jobs = {s["stage"]: s for s in r["stages"] if s["stage"].startswith("predict --jobs")}
        one, two = jobs.get("predict --jobs 1"), jobs.get("predict --jobs 2")
        if one and two:
            same = two.get("csv_identical_to_jobs_1")
            verdict = {True: "identical", False: "DIFFERENT", None: "not compared (a run from before the check)"}
            lines += [
                f"`predict --jobs 2` ran {one['seconds'] / two['seconds']:.2f}x as fast as `--jobs 1` over the "
                f"evaluate split; its CSV against one job's: {verdict[same]}.",
                "",
            ]
        for f in r.get("faults", []):
            done = ", ".join(f["complete_after_kill"]) or "none"
            lines += [
                f"Fault: `{f['stage']}` run again from scratch, its process group SIGKILLed after "
                f"{f['killed_after_s']} s; outputs that read as complete after the kill: {done} "
                f"({'same bytes as the uninterrupted run' if f['complete_after_kill_identical'] else 'DIFFERENT'}); "
                f"temporaries left: {len(f['temporaries_after_kill'])}. Started again: {f['restart_seconds']} s, "
                f"peak RSS {f['restart_peak_rss_mb']} MB; its {f['files_compared']} files "
                f"{'equal the uninterrupted run byte for byte' if f['identical_to_uninterrupted'] else 'DIFFER'}, "
                f"{len(f['temporaries_after_restart'])} temporaries left.",
                "",
            ]
    full = next((r for r in runs if r["clips"] >= TAU22_CLIPS), None)
    heading = (
        "## How linear each stage is: a line through every run, evaluated at full size"
        if full
        else f"## EXTRAPOLATION to TAU22's {TAU22_CLIPS:,} clips (not measured)"
    )
    lines += [
        heading,
        "",
        "A least-squares line per stage through the runs above (clips -> seconds, clips -> MB), evaluated "
        f"at {TAU22_CLIPS:,} clips. Stages whose work does not grow with the set (quantize: at most "
        "--num-calib calibration files; export: one model) take the mean of the runs. With one run the line "
        "goes through the origin."
        + (" The full-size run above is the measurement; this fit shows how linear each stage is." if full else ""),
        "",
        "| stage | s per 1k clips | s at TAU22 size | MB per 1k clips | peak RSS MB at TAU22 | tree MB at TAU22 |",
        "|---|---|---|---|---|---|",
    ]
    for e in result["extrapolation"]:
        lines.append(
            f"| {e['stage']} | {e['seconds_per_1k_clips']} | {e['seconds_at_tau22']:,.0f} | "
            f"{e['peak_rss_mb_per_1k_clips']} | {e['peak_rss_mb_at_tau22']:,.0f} | "
            f"{e['peak_tree_rss_mb_at_tau22']:,.0f} |"
        )
    if full:
        total = sum(st["seconds"] for st in full["stages"] if st["stage"] != "synth")
        lines += ["", f"Measured wall time of the stages after synth at full size: {total / 3600:.2f} h.", ""]
    else:
        total = sum(e["seconds_at_tau22"] for e in result["extrapolation"] if e["stage"] != "synth")
        lines += ["", f"Extrapolated wall time of the stages after synth: {total / 3600:.1f} h on this machine.", ""]
    if result.get("notes"):
        lines += ["## Notes", "", *result["notes"], ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fraction", type=float, action="append", help="share of TAU22's clips (repeatable) [0.005]")
    ap.add_argument("--workers", type=int, default=2, help="synth, cache and training loader processes [2]")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder [a temporary one, removed]")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    ap.add_argument("--no-write", action="store_true", help="print only; leave benchmarks/results alone")
    ap.add_argument("--note", action="append", default=[], help="a line for the Notes section")
    ap.add_argument(
        "--fault",
        action="append",
        choices=["cache", "devsim"],
        default=[],
        help="after the measured stages, run this stage again, SIGKILL it halfway, restart it, compare",
    )
    ap.add_argument("--render", action="store_true", help="rewrite scale.md (and the fit) from scale.json only")
    ap.add_argument(
        "--add",
        action="store_true",
        help="keep the committed runs of other fractions (same machine kind) and fit through all of them",
    )
    args = ap.parse_args()
    if args.render:
        result = json.loads((OUT / "scale.json").read_text())
        result["extrapolation"] = extrapolate(result["runs"])
        result["notes"] = args.note or result.get("notes", [])
        write_text_atomic(OUT / "scale.json", json.dumps(result, indent=2) + "\n")
        write_text_atomic(OUT / "scale.md", markdown(result))
        return
    fractions = sorted(args.fraction or [0.005])
    base = args.work or Path(tempfile.mkdtemp(prefix="tfsep-scale-"))
    runs = []
    try:
        for f in fractions:
            runs.append(run_fraction(f, args.workers, base / f"f{f:g}", tuple(args.fault)))
            if not args.keep:
                shutil.rmtree(base / f"f{f:g}", ignore_errors=True)
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(base, ignore_errors=True)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    notes = args.note
    if args.add and (OUT / "scale.json").is_file():
        old = json.loads((OUT / "scale.json").read_text())
        if old["machine"].get("cpu_model") != machine_info(1).get("cpu_model"):
            sys.exit(f"--add: the committed runs are from {old['machine'].get('cpu_model')}, not this CPU")
        new = {r["fraction"] for r in runs}
        runs = sorted([r for r in old["runs"] if r["fraction"] not in new] + runs, key=lambda r: r["fraction"])
        notes = notes or old.get("notes", [])
    result = {
        "machine": machine_info(1),
        "memory_gb": round(memory, 1),
        "synthetic_data": True,
        "runs": runs,
        "extrapolation": extrapolate(runs),
        "extrapolated_to_clips": TAU22_CLIPS,
        "rss_limit_mb": LIMIT_MB,
        "notes": notes,
    }
    text = markdown(result)
    print(text)
    if not args.no_write:
        write_text_atomic(OUT / "scale.json", json.dumps(result, indent=2) + "\n")
        write_text_atomic(OUT / "scale.md", text)


if __name__ == "__main__":
    main()
