#!/usr/bin/env python
"""The light runtime's front end against the model it feeds, and predict --jobs.

    .venv/bin/python benchmarks/frontend_speed.py [--model C12_FP32.tflite] [--before REV] [--files 300]

1. In one process, round-robin in blocks (so load drift hits all alike), batch 1, one thread:
   the FP32 .tflite at C=12 alone; `log_mel` with each FFT backend (numpy; scipy.fft when
   installed); each backend's FFT step alone; wav -> label (front end + model); listen's
   per-window front end (StreamLogMel) at the default hop (0.5 s) and at 22 frame hops; the
   straightforward `log_mel_reference`; with --before REV, log_mel as of that git revision.
2. `tfsep-edge bench MODEL --include-frontend` and `--model-only`, each backend, repeated: the
   README's measure (wav -> label p50 over the model part's p50 of the same run).
3. `tfsep-edge predict --jobs 1` and `--jobs 2` over a folder of generated 10-s WAVs: clips/s,
   and whether the CSVs are byte-identical.

With --presets, only `log_mel` of each named front end (core.config.FRONTENDS) per FFT backend,
round-robin in one process, and with --before REV the default front end as of that revision
(its frontend.py with its own config.py): no model needed. Writes
benchmarks/results/frontend_presets.json and .md.

Without --model it makes an untrained C=12 checkpoint (randomised statistics: latency does not
depend on the weights) and exports it with `tfsep-edge export --tflite` (needs torch and the
[tflite] extra). Writes benchmarks/results/frontend_speed.json and .md with the machine record
and the load average: the development VMs are shared, so trust the ratios within one run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one thread, as bench --threads 1 pins it
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from tfsep_edge.bench.harness import summarize  # noqa: E402
from tfsep_edge.bench.machine import machine_info, package_version  # noqa: E402
from tfsep_edge.bench.report import machine_line  # noqa: E402
from tfsep_edge.core.config import DEFAULT_FRONTEND as CFG  # noqa: E402
from tfsep_edge.core.fileio import write_text_atomic  # noqa: E402
from tfsep_edge.signal import frontend  # noqa: E402

OUT = REPO / "benchmarks" / "results"
FRAME_HOPS_22 = 22 * CFG.hop_length  # 0.5115 s: consecutive windows share 18 interior frames


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tfsep_edge.cli", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            **(env or {}),
        },
    )


def make_model(folder: Path) -> Path:
    from benchmarks.models import make_checkpoint

    ckpt = make_checkpoint(12, folder / "c12.pt")
    out = folder / "c12_fp32.tflite"
    done = cli("export", ckpt, "--tflite", out)
    if done.returncode != 0:
        raise SystemExit(f"export failed: {done.stderr.strip()[-600:]}")
    return out


def _module_at(rev: str, repo_path: str, name: str):
    """A module as of git revision `rev`, imported from a temporary copy under another name."""
    text = subprocess.run(["git", "show", f"{rev}:{repo_path}"], cwd=REPO, capture_output=True, text=True, check=True)
    path = Path(tempfile.mkdtemp()) / (name + ".py")  # a temporary copy
    path.write_text(text.stdout)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def load_before(rev: str):
    """The front end module as of git revision `rev`, bound to that revision's config.py (so its
    FrontendConfig, the cache key of every lookup, is the one it ran with)."""
    key = "tfsep_edge.core.config"
    current = sys.modules[key]
    sys.modules[key] = _module_at(rev, "tfsep_edge/core/config.py", "config_before")
    try:
        return _module_at(rev, "tfsep_edge/signal/frontend.py", "frontend_before")
    finally:
        sys.modules[key] = current


def round_robin(calls: dict, rounds: int, block: int = 20) -> dict:
    """p50 etc. of each call, in blocks of `block` calls per entry per round (first of a block dropped)."""
    samples: dict[str, list[int]] = {k: [] for k in calls}
    for _ in range(rounds):
        for key, (prepare, fn) in calls.items():
            prepare()
            for i in range(block + 1):
                t0 = time.perf_counter_ns()
                fn()
                if i:
                    samples[key].append(time.perf_counter_ns() - t0)
    return {k: summarize(v) for k, v in samples.items()}


def micro(model: Path, rounds: int, before_rev: str | None) -> dict:
    from tfsep_edge.runtime.classifier import open_classifier

    clf = open_classifier(model)
    rng = np.random.default_rng(0)
    stream = (0.1 * rng.standard_normal(CFG.clip_samples * 4)).astype(np.float32)
    wave = stream[None, : CFG.clip_samples].copy()
    x = np.ascontiguousarray(frontend.log_mel(wave)[:, None])
    backends = ["numpy"] + (["scipy"] if package_version("scipy") else [])
    nothing = lambda: None  # noqa: E731
    calls: dict = {"model alone": (nothing, lambda: clf.run(x))}

    def use(name):
        return lambda: frontend.set_fft_backend(name)

    for b in backends:
        frontend.set_fft_backend(b)
        fft = frontend.fft_frames_call(wave)
        calls[f"front end ({b} FFT)"] = (use(b), lambda: frontend.log_mel(wave))
        calls[f"FFT step alone ({b})"] = (use(b), fft)
        calls[f"wav -> label ({b} FFT)"] = (use(b), lambda: clf.run(clf.model_input(wave)).argmax(axis=-1))
        for hop, label in ((round(0.5 * CFG.sample_rate), "0.5 s"), (FRAME_HOPS_22, "22 frame hops")):
            state = {"lm": frontend.StreamLogMel(), "end": CFG.clip_samples}

            def window(state=state, hop=hop):  # the next window of the stream, as listen's scorer takes it
                end = state["end"]
                if end > len(stream):
                    state["lm"], end = frontend.StreamLogMel(), CFG.clip_samples
                state["lm"](stream[end - CFG.clip_samples : end], end)
                state["end"] = end + hop

            calls[f"listen window, hop {label} ({b} FFT)"] = (use(b), window)
    calls["log_mel_reference (float64, dense)"] = (nothing, lambda: frontend.log_mel_reference(wave))
    if before_rev:
        before = load_before(before_rev).log_mel
        calls[f"front end as of {before_rev}"] = (nothing, lambda: before(wave))
    stats = round_robin(calls, rounds)
    frontend.set_fft_backend(None)
    model_p50 = stats["model alone"]["p50"]
    rows = [
        {"what": k, "p50_ms": v["p50"], "min_ms": v["min"], "p90_ms": v["p90"], "over_model": v["p50"] / model_p50}
        for k, v in stats.items()
    ]
    return {"backends": backends, "rounds": rounds, "block": 20, "rows": rows}


def presets(rounds: int, before_rev: str | None) -> dict:
    """log_mel of a 1-s clip per preset and FFT backend (and the default as of before_rev), round-robin."""
    from tfsep_edge.core.config import FRONTENDS

    wave = (0.1 * np.random.default_rng(0).standard_normal((1, CFG.clip_samples))).astype(np.float32)
    backends = ["numpy"] + (["scipy"] if package_version("scipy") else [])
    before = load_before(before_rev) if before_rev else None
    if before:  # the same arithmetic, so the same bits: otherwise the comparison means nothing
        np.testing.assert_array_equal(before.log_mel(wave), frontend.log_mel(wave))
    calls: dict = {}
    for b in backends:
        for name, cfg in FRONTENDS.items():
            shape = f"{cfg.n_mels} x {cfg.n_frames}"
            calls[f"{name}, {shape} ({b} FFT)"] = (
                lambda b=b: frontend.set_fft_backend(b),
                lambda cfg=cfg: frontend.log_mel(wave, cfg),
            )
        if before:
            calls[f"cpjku as of {before_rev} ({b} FFT)"] = (
                lambda b=b: before.set_fft_backend(b),
                lambda: before.log_mel(wave),
            )
    stats = round_robin(calls, rounds)
    frontend.set_fft_backend(None)
    rows = [{"what": k, "p50_ms": v["p50"], "min_ms": v["min"], "p90_ms": v["p90"]} for k, v in stats.items()]
    ratios = {}
    if before:
        for b in backends:
            now = stats[f"cpjku, {CFG.n_mels} x {CFG.n_frames} ({b} FFT)"]
            then = stats[f"cpjku as of {before_rev} ({b} FFT)"]
            ratios[b] = {"p50": now["p50"] / then["p50"], "min": now["min"] / then["min"]}
    return {"backends": backends, "rounds": rounds, "block": 20, "before": before_rev, "rows": rows, "ratios": ratios}


def presets_markdown(result: dict) -> str:
    p = result["presets"]
    lines = [
        "# Front end speed per preset (generated by benchmarks/frontend_speed.py --presets; do not edit)",
        "",
        f"Machine: {machine_line(result['machine'])}; scipy {result['scipy'] or 'not installed'}.",
        f"Load average (1, 5, 15 min) at start {result['load_start']}, at end {result['load_end']}: "
        "a shared 2-vCPU VM; trust the ratios within one run, not the absolute times.",
        "",
        f"`log_mel` of one 1-s clip, batch 1, one thread, round-robin in one process ({p['rounds']} rounds of "
        f"{p['block']} calls each).",
        "",
        "| what | p50 ms | min ms | p90 ms |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r['what']} | {r['p50_ms']:.3f} | {r['min_ms']:.3f} | {r['p90_ms']:.3f} |" for r in p["rows"]]
    if p["ratios"]:
        lines += ["", f"Default front end (cpjku) now / as of {p['before']}, same run (outputs bit-equal):", ""]
        lines += [f"- {b} FFT: p50 {r['p50']:.3f}x, min {r['min']:.3f}x" for b, r in p["ratios"].items()]
    return "\n".join(lines) + "\n"


def bench_runs(model: Path, repeats: int, seconds: float) -> list[dict]:
    """`tfsep-edge bench` wav -> label and model-only, per backend, alternating, `repeats` times."""
    backends = ["numpy"] + (["scipy"] if package_version("scipy") else [])
    out = []
    for r in range(repeats):
        for b in backends:
            with tempfile.TemporaryDirectory() as tmp:
                res = {}
                for flag in ("--include-frontend", "--model-only"):
                    js = Path(tmp) / f"{flag}.json"
                    args = ["bench", model, flag, "--seconds", str(seconds), "--json", js]
                    done = cli(*args, env={"TFSEP_EDGE_FFT": b})
                    if done.returncode != 0:
                        raise SystemExit(f"bench failed: {done.stderr.strip()[-600:]}")
                    res[flag] = json.loads(js.read_text())
            wav, only = res["--include-frontend"]["models"][0], res["--model-only"]["models"][0]
            out.append(
                {
                    "repeat": r + 1,
                    "fft": b,
                    "wav_to_label_p50_ms": wav["latency_ms"]["p50"],
                    "frontend_p50_ms": wav["frontend_ms"]["p50"],
                    "model_part_p50_ms": wav["model_part_ms"]["p50"],
                    "model_only_run_p50_ms": only["latency_ms"]["p50"],
                    "wav_over_model_part": wav["latency_ms"]["p50"] / wav["model_part_ms"]["p50"],
                    "wav_over_model_only_run": wav["latency_ms"]["p50"] / only["latency_ms"]["p50"],
                    "fft_backend_reported": res["--include-frontend"]["frontend_comparison"].get("fft_backend"),
                }
            )
    return out


def predict_jobs(model: Path, n_files: int, repeats: int) -> dict:
    import soundfile as sf

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "audio"
        folder.mkdir()
        rng = np.random.default_rng(1)
        for i in range(n_files):
            noise = np.cumsum(rng.standard_normal(10 * 44_100)) * 0.002 + 0.05 * rng.standard_normal(10 * 44_100)
            sf.write(folder / f"clip{i:04d}.wav", (noise / max(1.0, np.abs(noise).max())).astype(np.float32), 44_100)
        runs, csvs = [], {}
        for r in range(repeats):
            for jobs in (1, 2):
                csv = Path(tmp) / f"jobs{jobs}_{r}.csv"
                t0 = time.perf_counter()
                done = cli("predict", model, folder, "--csv", csv, "--jobs", str(jobs))
                seconds = time.perf_counter() - t0
                if done.returncode != 0:
                    raise SystemExit(f"predict failed: {done.stderr.strip()[-600:]}")
                csvs.setdefault(jobs, csv.read_bytes())
                identical = csv.read_bytes() == csvs[1]
                runs.append(
                    {"repeat": r + 1, "jobs": jobs, "seconds": seconds, "files_per_s": n_files / seconds}
                    | {"csv_identical_to_jobs_1": identical}
                )
        by = {j: [x["files_per_s"] for x in runs if x["jobs"] == j] for j in (1, 2)}
        return {
            "files": n_files,
            "file_seconds": 10,
            "format": "44.1 kHz mono float WAV (resampled to 32 kHz by predict)",
            "fft": frontend.fft_backend(),
            "runs": runs,
            "median_files_per_s": {j: float(np.median(v)) for j, v in by.items()},
            "speedup_2_over_1": float(np.median(by[2]) / np.median(by[1])),
            "csv_identical": all(x["csv_identical_to_jobs_1"] for x in runs),
            "note": "wall time of the whole command (start, model load, reading and resampling included)",
        }


def markdown(result: dict) -> str:
    m = result["micro"]
    lines = [
        "# Front end speed (generated by benchmarks/frontend_speed.py; do not edit)",
        "",
        f"Machine: {machine_line(result['machine'])}; scipy {result['scipy'] or 'not installed'}.",
        f"Load average (1, 5, 15 min) at start {result['load_start']}, at end {result['load_end']}: "
        "a shared 2-vCPU VM, other work running; trust the ratios within one run, not the absolute times.",
        "",
        f"## In one process, round-robin (batch 1, one thread; {m['rounds']} rounds of {m['block']} calls each)",
        "",
        f"Model: {result['model']} (FP32 .tflite, C=12, LiteRT). `over model` = p50 / the model's p50, same run.",
        "",
        "| what | p50 ms | min ms | p90 ms | over model |",
        "|---|---|---|---|---|",
    ]
    for r in m["rows"]:
        lines.append(
            f"| {r['what']} | {r['p50_ms']:.3f} | {r['min_ms']:.3f} | {r['p90_ms']:.3f} | {r['over_model']:.2f} |"
        )
    lines += [
        "",
        "## `tfsep-edge bench MODEL --include-frontend` / `--model-only` (fresh process each)",
        "",
        "| repeat | FFT | wav -> label p50 ms | front end p50 ms | model part p50 ms | model-only run p50 ms "
        "| wav -> label / model part | wav -> label / model-only run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["bench"]:
        lines.append(
            f"| {r['repeat']} | {r['fft']} | {r['wav_to_label_p50_ms']:.3f} | {r['frontend_p50_ms']:.3f} | "
            f"{r['model_part_p50_ms']:.3f} | {r['model_only_run_p50_ms']:.3f} | {r['wav_over_model_part']:.2f} | "
            f"{r['wav_over_model_only_run']:.2f} |"
        )
    p = result.get("predict")
    if p:
        lines += [
            "",
            f"## `tfsep-edge predict --jobs N` over {p['files']} generated {p['file_seconds']}-s files",
            "",
            f"{p['format']}; FFT: {p['fft']}; {p['note']}.",
            "",
            "| repeat | jobs | seconds | files/s | CSV identical to --jobs 1 |",
            "|---|---|---|---|---|",
        ]
        for r in p["runs"]:
            lines.append(
                f"| {r['repeat']} | {r['jobs']} | {r['seconds']:.2f} | {r['files_per_s']:.1f} | "
                f"{'yes' if r['csv_identical_to_jobs_1'] else '**no**'} |"
            )
        med = p["median_files_per_s"]
        lines += [
            "",
            f"Median: {med[1]:.1f} files/s with 1 job, {med[2]:.1f} with 2: **{p['speedup_2_over_1']:.2f}x** "
            f"(target >= 1.7x on 2 quiet cores; these 2 vCPUs were shared).",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--model", type=Path, help="FP32 .tflite at C=12 [made here]")
    ap.add_argument("--before", help="also time log_mel as of this git revision")
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--bench-repeats", type=int, default=2)
    ap.add_argument("--bench-seconds", type=float, default=4.0)
    ap.add_argument("--files", type=int, default=300)
    ap.add_argument("--predict-repeats", type=int, default=2)
    ap.add_argument("--presets", action="store_true", help="only log_mel per named front end (and --before)")
    args = ap.parse_args()
    load_start = [round(x, 2) for x in os.getloadavg()]
    if args.presets:
        result = {
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_info(1),
            "scipy": package_version("scipy"),
            "load_start": load_start,
            "presets": presets(args.rounds, args.before),
            "load_end": [round(x, 2) for x in os.getloadavg()],
        }
        write_text_atomic(OUT / "frontend_presets.json", json.dumps(result, indent=1) + "\n")
        write_text_atomic(OUT / "frontend_presets.md", presets_markdown(result))
        print(presets_markdown(result))
        return
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or make_model(Path(tmp))
        result = {
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_info(1),
            "scipy": package_version("scipy"),
            "model": "untrained C=12 (randomised statistics) exported by tfsep-edge" if not args.model else model.name,
            "load_start": load_start,
            "micro": micro(model, args.rounds, args.before),
            "bench": bench_runs(model, args.bench_repeats, args.bench_seconds),
            "predict": predict_jobs(model, args.files, args.predict_repeats) if args.files else None,
        }
    result["load_end"] = [round(x, 2) for x in os.getloadavg()]
    write_text_atomic(OUT / "frontend_speed.json", json.dumps(result, indent=1) + "\n")
    write_text_atomic(OUT / "frontend_speed.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
