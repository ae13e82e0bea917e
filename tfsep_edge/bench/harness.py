"""`tfsep-edge bench`: one timing harness for every runtime, side by side in one process.

Why it works this way, with the measurements that decided it:
docs/bench.md (figures go stale in code, so they live there).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tfsep_edge.bench.machine import machine_info, measure_peak_macs, peak_rss_mb, ru_maxrss_mb
from tfsep_edge.bench.report import SCHEMA, SCHEMA_VERSION, compare_command, format_report
from tfsep_edge.bench.runners import Runner, load_runner
from tfsep_edge.core.config import DEFAULT_FRONTEND, FrontendConfig, preset_name
from tfsep_edge.core.errors import TfsepError, check_at_least_one, first_line

DEFAULT_RUNS = 1000
DEFAULT_SECONDS = 10.0
MAX_RUNS = 1_000_000  # a cap on stored samples when only --seconds limits the loop
BLOCK = 10  # consecutive calls per model per round-robin turn


def summarize(samples_ns: list[int] | np.ndarray) -> dict:
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    return {
        "min": float(ms.min()),
        "p50": float(np.percentile(ms, 50)),
        "p90": float(np.percentile(ms, 90)),
        "p99": float(np.percentile(ms, 99)),
        "max": float(ms.max()),
        "mean": float(ms.mean()),
        "std": float(ms.std()),
    }


def _empty_call(x):
    return x


def harness_overhead(runs: int = 2000) -> dict:
    """The timing pattern around a call that does nothing: what every sample includes."""
    x = np.zeros(1, dtype=np.float32)
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        _empty_call(x)
        samples.append(time.perf_counter_ns() - t0)
    stats = summarize(samples)
    return {k: v * 1e6 for k, v in stats.items()} | {"unit": "ns", "runs": runs}


def frontend_comparison(windows: np.ndarray, cfg: FrontendConfig, runs: int, seconds: float, block: int = 5) -> dict:
    """The numpy front end against the straightforward float64/dense one on the same input.

    Alternates in blocks of `block` calls and drops each block's first call: whichever runs right
    after the other pays for its memory traffic, which is not the steady state `predict` runs
    in.
    """
    from tfsep_edge.signal.frontend import fft_backend, fft_frames_call, log_mel, log_mel_reference

    calls = {"numpy": lambda: log_mel(windows, cfg), "reference": lambda: log_mel_reference(windows, cfg)}
    calls["fft"] = fft_frames_call(windows, cfg)  # log_mel's FFT step alone: the floor of this front end
    samples: dict[str, list[int]] = {k: [] for k in calls}
    start = time.perf_counter()
    while len(samples["numpy"]) < runs:
        for key, fn in calls.items():
            for i in range(block + 1):
                t0 = time.perf_counter_ns()
                fn()
                if i:
                    samples[key].append(time.perf_counter_ns() - t0)
        if time.perf_counter() - start > seconds:
            break
    stats = {k: summarize(v) for k, v in samples.items()}
    return {
        "numpy_ms": stats["numpy"],
        "reference_ms": stats["reference"],
        "fft_ms": stats.get("fft"),
        "fft_backend": fft_backend(),
        "frontend": preset_name(cfg) or "custom",
        "frames_per_clip": cfg.n_frames,
        "speedup_p50": stats["reference"]["p50"] / stats["numpy"]["p50"],
        "runs": len(samples["numpy"]),
        "batch": len(windows),
        "method": f"alternating blocks of {block} calls, first call of each block dropped",
    }


def bench_windows(batch: int, cfg: FrontendConfig, seed: int = 0) -> np.ndarray:
    """Benchmark input: seeded noise, the same for every model (latency does not depend on content)."""
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((batch, cfg.clip_samples))).astype(np.float32)


def _make_call(runner: Runner, windows: np.ndarray, include_frontend: bool) -> Callable[[], tuple[int, int]]:
    """A closure timing one inference; returns (total ns, front-end ns). Inputs are made here, once."""
    clock = time.perf_counter_ns
    model, frontend = runner.model, runner.frontend
    if not include_frontend:
        x = frontend(windows)

        def call() -> tuple[int, int]:
            t0 = clock()
            model(x)
            return clock() - t0, 0

        return call

    def call_wav() -> tuple[int, int]:
        t0 = clock()
        feats = frontend(windows)
        t1 = clock()
        model(feats).argmax(axis=-1)
        return clock() - t0, t1 - t0

    return call_wav


def measure(
    runners: list[Runner],
    windows: np.ndarray,
    include_frontend: bool,
    warmup: int,
    runs: int | None,
    seconds: float | None,
    progress: bool = True,
) -> list[dict]:
    """First inference per model, warm-up rounds, then round-robin measured rounds."""
    from tfsep_edge.core.progress import progress_bar

    calls, firsts = [], []
    for r in runners:
        t0 = time.perf_counter_ns()
        try:
            call = _make_call(r, windows, include_frontend)  # input preparation is part of the first use
            total, _ = call()
        except TfsepError:
            raise
        except Exception as exc:  # a graph whose symbolic input dims hide another shape, a broken model
            reason = first_line(exc, 200)
            hint = (
                "make it with `tfsep-edge export`" if r.runtime in ("onnxruntime", "litert") else "check the model file"
            )
            raise TfsepError(f"{r.path}: its first inference failed ({reason}); {hint}") from None
        firsts.append((time.perf_counter_ns() - t0) / 1e6 if include_frontend else total / 1e6)
        calls.append(call)
    for _ in range(warmup):
        for call in calls:
            call()
    limit = runs if runs is not None else MAX_RUNS
    totals: list[list[int]] = [[] for _ in runners]
    fronts: list[list[int]] = [[] for _ in runners]
    start = time.perf_counter()
    shown = runs if runs is not None else None  # time-limited only: no misleading total
    done = 0
    with progress_bar(shown, unit="run", enabled=progress) as bar:
        while done < limit:
            block = min(BLOCK, limit - done)
            for i, call in enumerate(calls):
                if len(calls) > 1:
                    call()  # re-warm after the other models (not recorded)
                for _ in range(block):
                    total, front = call()
                    totals[i].append(total)
                    fronts[i].append(front)
            done += block
            bar.update(block)
            if seconds is not None and time.perf_counter() - start >= seconds:
                break
    results = []
    batch = len(windows)
    for r, first, tot, fr in zip(runners, firsts, totals, fronts, strict=True):
        lat = summarize(tot)
        model_only = summarize(np.asarray(tot) - np.asarray(fr)) if include_frontend else lat
        results.append(
            {
                "name": r.name,
                "path": r.path,
                "runtime": r.runtime,
                "precision": r.precision,
                "width": r.width,
                "input_kind": r.input_kind,
                "load_ms": r.load_ms,
                "first_ms": first,
                "runs": len(tot),
                "latency_ms": lat,
                "throughput_per_s": batch / (lat["mean"] / 1e3),
                "frontend_ms": summarize(fr) if include_frontend else None,
                "model_part_ms": model_only,
                "frontend_share": (float(np.median(fr)) / float(np.median(tot))) if include_frontend else None,
                "macs_per_clip": r.macs,
                "macs_source": r.macs_source,
                "rss_load_mb": r.rss_load_mb,
                **r.extra,
            }
        )
    return results


def add_efficiency(results: list[dict], peak: dict, batch: int) -> None:
    """MACs / (latency x peak MAC rate), on the model part's median latency."""
    rate = peak.get("macs_per_s")
    for res in results:
        macs = res["macs_per_clip"]
        if macs and rate:
            res["efficiency"] = macs * batch / (res["model_part_ms"]["p50"] / 1e3 * rate)
        else:
            res["efficiency"] = None


def add_ratios(results: list[dict]) -> None:
    """Each model's median against the ORT FP32 model of the same width in the same run."""
    base = {
        (r["width"], r["input_kind"]): r["latency_ms"]["p50"]
        for r in results
        if r["runtime"] == "onnxruntime" and r["precision"] == "fp32"
    }
    for r in results:
        ref = base.get((r["width"], "logmel"))
        r["vs_ort_fp32"] = r["latency_ms"]["p50"] / ref if ref else None


def run_bench(
    models: list[Path],
    threads: int = 1,
    warmup: int = 50,
    runs: int | None = None,
    seconds: float | None = None,
    batch: int = 1,
    include_frontend: bool = False,
    peak_probe: bool = True,
    progress: bool = True,
) -> dict:

    check_at_least_one("--threads", threads)
    check_at_least_one("--runs", runs)
    if seconds is not None and not seconds > 0:
        raise TfsepError(f"--seconds {seconds}: must be positive")
    if runs is not None and seconds is not None:
        raise TfsepError("--runs and --seconds: give one of them, not both")
    if runs is None and seconds is None:
        runs, seconds = DEFAULT_RUNS, DEFAULT_SECONDS
    if warmup < 0:
        raise TfsepError(f"--warmup {warmup}: must be 0 or more")
    check_at_least_one("--batch", batch)
    if not models:
        raise TfsepError("no models given; pass ONNX files, checkpoints or quantized model folders")
    for m in models:
        if not m.exists():
            raise TfsepError(f"{m}: no such model file or folder")
    started = dt.datetime.now(dt.timezone.utc)
    runners = [load_runner(m, threads) for m in models]
    names = [r.name for r in runners]
    for i, r in enumerate(runners):
        if names.count(r.name) > 1:
            r.name = f"{r.name}#{i + 1}"
    # Each runner computes its own model's features; the front-end comparison times the first
    # model's front end (every preset reads the same 1-s windows).
    cfg = next((r.cfg for r in runners if r.cfg is not None), DEFAULT_FRONTEND)
    windows = bench_windows(batch, cfg)
    overhead = harness_overhead()
    with contextlib.ExitStack() as stack:
        if any(r.runtime == "torch-int8" for r in runners):  # torch's known eager-INT8 deprecation notices
            from tfsep_edge.runtime.torch_models import known_warnings_silenced

            stack.enter_context(known_warnings_silenced())
        results = measure(runners, windows, include_frontend, warmup, runs, seconds, progress)
    fe_runs = min(runs or DEFAULT_RUNS, 200)
    frontend = frontend_comparison(windows, cfg, fe_runs, seconds=min(seconds or 2.0, 2.0))
    probe_seconds = 1.0 if (runs or DEFAULT_RUNS) >= 100 else 0.1  # a smoke run (tiny --runs) gets a quick probe
    peak = measure_peak_macs(threads, seconds=probe_seconds) if peak_probe else {"macs_per_s": None}
    add_efficiency(results, peak, batch)
    add_ratios(results)
    return {
        "schema": SCHEMA,
        "version": SCHEMA_VERSION,
        "created": started.isoformat(timespec="seconds"),
        "machine": machine_info(threads),
        "settings": {
            "threads": threads,
            "batch": batch,
            "warmup": warmup,
            "runs": runs,
            "seconds": seconds,
            "mode": "wav-to-label" if include_frontend else "model-only",
            "clock": "time.perf_counter_ns around the call only; inputs prepared beforehand",
            "order": f"round-robin in blocks of {BLOCK} calls per model, the first call after a switch not recorded",
            "block": BLOCK,
        },
        "harness_overhead_ns": overhead,
        "frontend_comparison": frontend,
        "peak_mac_rate": peak,
        "peak_rss_mb": peak_rss_mb(),
        "ru_maxrss_mb": ru_maxrss_mb(),
        "peak_rss_note": "VmHWM: this process's peak over all its models (the matmul probe runs in a child); "
        "ru_maxrss can include a parent's peak inherited across exec",
        "torch_imported": "torch" in sys.modules,
        "models": results,
    }


def bench_command(
    models: list[Path],
    threads: int,
    warmup: int,
    runs: int | None,
    seconds: float | None,
    batch: int,
    include_frontend: bool,
    json_out: Path | None,
    markdown: bool,
    compare: bool,
    plot: Path | None,
) -> int:
    from tfsep_edge.core.fileio import check_output_file, write_text_atomic

    if compare:
        return compare_command(models, markdown, plot, json_out)
    if plot is not None:
        raise TfsepError("--plot: draws the --compare table; use it together with --compare")
    if json_out is not None:
        check_output_file(json_out)
    result = run_bench(models, threads, warmup, runs, seconds, batch, include_frontend)
    print(format_report(result, markdown))
    if json_out is not None:
        write_text_atomic(json_out, json.dumps(result, indent=1) + "\n")
        print(f"wrote {json_out}", file=sys.stderr)
    return 0
