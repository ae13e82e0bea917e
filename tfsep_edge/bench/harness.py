"""`tfsep-edge bench`: one timing harness for every runtime, side by side in one process.

Why it works this way, with the measurements that decided it:
docs/bench.md (figures go stale in code, so they live there).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tfsep_edge.core.config import DEFAULT_FRONTEND, FrontendConfig
from tfsep_edge.core.errors import TfsepError, check_at_least_one, first_line
from tfsep_edge.core.kinds import Kind, artifact_kind
from tfsep_edge.runtime.torch_models import load_torch_model, official_macs, torch_log_mel, width_macs

SCHEMA = "tfsep-edge/bench"
SCHEMA_VERSION = 1
DEFAULT_RUNS = 1000
DEFAULT_SECONDS = 10.0
MAX_RUNS = 1_000_000  # a cap on stored samples when only --seconds limits the loop
BLOCK = 10  # consecutive calls per model per round-robin turn


def rss_mb() -> float | None:
    """Current resident memory of this process (Linux /proc/self/statm)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * resource.getpagesize() / 2**20


def ru_maxrss_mb() -> float:
    """getrusage's peak (KiB on Linux, bytes on macOS). Caveat: Linux carries it across exec, so a
    process started by a big parent (a test runner, a benchmark script) inherits the parent's peak."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def peak_rss_mb() -> float:
    """Peak resident memory of this process: VmHWM (this address space only), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return ru_maxrss_mb()


@dataclass
class Runner:
    """One model under test: how to prepare its input and how to call it."""

    name: str
    path: str
    runtime: str  # "onnxruntime" | "litert" | "torch-fp32" | "torch-int8"
    precision: str
    width: int | None
    input_kind: str  # what the timed model call takes: "logmel" or "waveform"
    load_ms: float
    frontend: Callable  # (B, samples) float32 windows -> the model's input
    model: Callable  # model input -> (B, 10) logits as numpy
    macs: int | None = None
    macs_source: str | None = None
    extra: dict = field(default_factory=dict)
    rss_load_mb: float | None = None


def count_macs_torch(model, cfg: FrontendConfig) -> tuple[int | None, str | None]:
    """MACs of one clip by the budget's official (NeSsi/torchinfo) count; None if unavailable."""
    try:
        return official_macs(model, cfg), "counted (budget.official_count)"
    except Exception:  # a missing torchinfo must not stop a latency run
        return None, None


def count_macs_width(width: int | None, cfg: FrontendConfig) -> tuple[int | None, str | None]:
    """For an ONNX file without a budget in its metadata: count the float model of its width, but
    only when torch is already loaded (a light-runtime run must not import it for this)."""
    if width is None or "torch" not in sys.modules:
        return None, None
    try:
        return width_macs(width, cfg), "counted (budget.official_count)"
    except Exception:
        return None, None


def load_onnx(path: Path, threads: int) -> Runner:
    """An ONNX file on onnxruntime, or a .tflite on LiteRT (XNNPACK): runtime.classifier.open_classifier decides."""
    from tfsep_edge.runtime.classifier import open_classifier

    before = rss_mb()
    t0 = time.perf_counter_ns()
    clf = open_classifier(path, threads=threads, check=False)  # its first inference is measured below
    load_ms = (time.perf_counter_ns() - t0) / 1e6
    litert = type(clf).__name__ == "TfliteClassifier"
    macs = clf.info.budget.get("macs")
    known = isinstance(macs, (int, float)) and macs > 0
    meta = "TFLite" if litert else "ONNX"
    macs, source = (
        (int(macs), f"{meta} metadata (tfsep_edge.budget)") if known else count_macs_width(clf.width, clf.frontend)
    )
    threads_key = "litert_threads" if litert else "onnxruntime_threads"
    return Runner(
        name=path.name,
        path=str(path),
        runtime="litert" if litert else "onnxruntime",
        precision=clf.precision,
        width=clf.width,
        input_kind=clf.input_kind,
        load_ms=load_ms,
        frontend=clf.model_input,
        model=clf.run,
        macs=macs,
        macs_source=source,
        extra={threads_key: threads, "frontend_in_model": clf.input_kind == "waveform"},
        rss_load_mb=_delta(before),
    )


def load_torch(path: Path, kind: Kind, threads: int) -> Runner:
    """A PyTorch eager runner (runtime.torch_models loads it): MACs and width from its float model."""
    before = rss_mb()
    tm = load_torch_model(path, kind, threads)
    macs, source = count_macs_torch(tm.float_model, tm.frontend)

    def call(x):
        import torch

        with torch.inference_mode():
            return tm.module(x).numpy()

    return Runner(
        name=path.name,
        path=str(path),
        runtime=f"torch-{tm.precision}",
        precision=tm.precision,
        width=tm.float_model.width,
        input_kind="logmel",
        load_ms=tm.load_ms,
        frontend=torch_log_mel(tm.frontend),
        model=call,
        macs=macs,
        macs_source=source,
        extra=tm.extra,
        rss_load_mb=_delta(before),
    )


def _delta(before: float | None) -> float | None:
    after = rss_mb()
    return None if before is None or after is None else round(after - before, 1)


def load_runner(path: Path, threads: int) -> Runner:
    """Pick the runtime from what the path holds (core.kinds)."""
    kind = artifact_kind(path)
    if kind.needs_torch:
        return load_torch(path, kind, threads)
    return load_onnx(path, threads)  # Kind.ONNX or Kind.TFLITE


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
    after the other pays for its memory traffic (seen: +0.25 ms on log_mel right after the
    reference), which is not the steady state `predict` runs in.
    """
    from tfsep_edge.signal.frontend import _RFFT_HAS_OUT, _frames, log_mel, log_mel_reference, rfft_frames

    calls = {"numpy": lambda: log_mel(windows, cfg), "reference": lambda: log_mel_reference(windows, cfg)}
    if _RFFT_HAS_OUT:  # log_mel's FFT step alone: the floor of any numpy front end
        frames = np.ascontiguousarray(_frames(windows.astype(np.float32), cfg))
        spectrum = np.empty(frames.shape[:-1] + (cfg.n_fft // 2 + 1,), np.complex64)
        calls["fft"] = lambda: rfft_frames(frames, spectrum)
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
    from tfsep_edge.bench.machine import machine_info, measure_peak_macs

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
    cfg = DEFAULT_FRONTEND
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


# ---- output -------------------------------------------------------------------------------------

COLUMNS = (
    ("model", lambda m, r: r["name"]),
    ("runtime", lambda m, r: r["runtime"]),
    ("prec", lambda m, r: r["precision"]),
    ("C", lambda m, r: "-" if r["width"] is None else str(r["width"])),
    ("load ms", lambda m, r: f"{r['load_ms']:.1f}"),
    ("first ms", lambda m, r: f"{r['first_ms']:.2f}"),
    ("p50 ms", lambda m, r: f"{r['latency_ms']['p50']:.3f}"),
    ("p90", lambda m, r: f"{r['latency_ms']['p90']:.3f}"),
    ("p99", lambda m, r: f"{r['latency_ms']['p99']:.3f}"),
    ("min", lambda m, r: f"{r['latency_ms']['min']:.3f}"),
    ("max", lambda m, r: f"{r['latency_ms']['max']:.3f}"),
    ("mean", lambda m, r: f"{r['latency_ms']['mean']:.3f}"),
    ("std", lambda m, r: f"{r['latency_ms']['std']:.3f}"),
    ("clips/s", lambda m, r: f"{r['throughput_per_s']:.0f}"),
    ("front end", lambda m, r: _frontend_cell(r)),
    ("x ORT fp32", lambda m, r: "-" if r.get("vs_ort_fp32") is None else f"{r['vs_ort_fp32']:.2f}"),
    ("MMACs", lambda m, r: "-" if not r["macs_per_clip"] else f"{r['macs_per_clip'] / 1e6:.2f}"),
    ("eff.", lambda m, r: "-" if r.get("efficiency") is None else f"{100 * r['efficiency']:.1f}%"),
    ("runs", lambda m, r: str(r["runs"])),
)


def _grid(header: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), *(fmt.format(*row) for row in rows)])


def machine_line(m: dict) -> str:
    freq = (m.get("frequency_mhz") or {}).get("max") or (m.get("frequency_mhz") or {}).get("current")
    isa = ",".join(m.get("isa") or []) or "-"
    v = m.get("versions") or {}
    return (
        f"{m.get('cpu_model')} ({m.get('arch')}, {m.get('cores')} cores"
        + (f", {freq:.0f} MHz" if freq else "")
        + f"; {isa}); {m.get('os')}; Python {m.get('python')}, onnxruntime {v.get('onnxruntime')}, "
        + (f"LiteRT {v['ai-edge-litert']}, " if v.get("ai-edge-litert") else "")
        + f"numpy {v.get('numpy')}, torch {v.get('torch') or 'not installed'}"
    )


def _frontend_cell(r: dict) -> str:
    """The front end's share of wav -> label; a model with the front end in its graph cannot be
    split from outside (its numpy share is only the input copy)."""
    if r.get("frontend_in_model"):
        return "in graph"
    return "-" if r["frontend_share"] is None else f"{100 * r['frontend_share']:.0f}%"


def precision_advice(models: list[dict]) -> list[str]:
    """Which precision to deploy, per runtime and width measured in both: the faster median here
    (int8 pays only where the CPU's int8 kernels beat its float ones)."""
    groups: dict[tuple, dict[str, dict]] = {}
    for r in models:
        if r["precision"] in ("fp32", "int8") and r["width"] is not None:
            groups.setdefault((r["runtime"], r["width"]), {})[r["precision"]] = r
    lines = []
    for (runtime, width), by in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        if len(by) == 2:
            f, i = by["fp32"]["latency_ms"]["p50"], by["int8"]["latency_ms"]["p50"]
            best = "INT8" if i < f else "FP32"
            lines.append(f"deploy on this machine, {runtime} C={width}: {best} (p50 INT8 {i:.3f} ms, FP32 {f:.3f} ms)")
    return lines


def format_report(result: dict, markdown: bool = False) -> str:
    m, s = result["machine"], result["settings"]
    rows = [[fn(m, r) for _, fn in COLUMNS] for r in result["models"]]
    fe = result["frontend_comparison"]
    peak = result["peak_mac_rate"]
    ov = result["harness_overhead_ns"]
    torch_state = "loaded" if result["torch_imported"] else "not loaded"
    notes = [
        f"machine: {machine_line(m)}",
        f"settings: {s['mode']}, batch {s['batch']}, {s['threads']} thread(s), {s['warmup']} warm-up rounds, "
        f"round-robin in blocks of {BLOCK}, latency per call (all clips of the batch)",
        f"harness overhead (empty call): p50 {ov['p50']:.0f} ns (included in every sample, not subtracted)",
        f"front end, batch {fe['batch']}: numpy log_mel p50 {fe['numpy_ms']['p50']:.3f} ms"
        + (f" (its float32 FFT alone {fe['fft_ms']['p50']:.3f} ms)" if fe.get("fft_ms") else "")
        + f" vs straightforward log_mel_reference {fe['reference_ms']['p50']:.3f} ms: {fe['speedup_p50']:.1f}x",
        "peak MAC rate: "
        + (
            f"{peak['macs_per_s'] / 1e9:.1f} GMAC/s ({peak['method']}, {peak['threads']} thread(s))"
            if peak.get("macs_per_s")
            else "not measured"
        ),
        f"peak RSS of the process: {result['peak_rss_mb']:.0f} MB (torch {torch_state})",
        *precision_advice(result["models"]),
    ]
    table = _grid([h for h, _ in COLUMNS], rows, markdown)
    prefix = "- " if markdown else ""
    return table + "\n\n" + "\n".join(prefix + n for n in notes)


def load_result(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TfsepError(f"{path}: no such result file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise TfsepError(
            f"{path}: not a JSON result file ({type(exc).__name__}); pass files from bench --json"
        ) from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise TfsepError(f"{path}: not a tfsep-edge bench result (schema {SCHEMA!r}); pass files from bench --json")
    return data


def load_results(path: Path) -> list[dict]:
    """The bench results in a file: one from `bench --json`, or every run of a
    benchmarks/run_standard.py file (schema tfsep-edge/bench-standard)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        data = None  # load_result says what is wrong
    if isinstance(data, dict) and data.get("schema") == SCHEMA + "-standard":
        parts = [*data.get("runs", {}).values(), data.get("light_runtime"), data.get("light_runtime_wav")]
        return [r for r in parts if isinstance(r, dict) and r.get("schema") == SCHEMA]
    return [load_result(path)]


def machine_label(m: dict) -> str:
    board = (m.get("board") or {}).get("board")
    return board or f"{m.get('cpu_model')} {m.get('arch')}"


def compare_rows(results: list[tuple[Path, dict]]) -> list[dict]:
    rows = []
    for path, res in results:
        for r in res["models"]:
            rows.append(
                {
                    "file": str(path),
                    "machine": machine_label(res["machine"]),
                    "mode": res["settings"]["mode"],
                    "threads": res["settings"]["threads"],
                    "batch": res["settings"]["batch"],
                    "model": r["name"],
                    "runtime": r["runtime"],
                    "precision": r["precision"],
                    "width": r["width"],
                    "p50": r["latency_ms"]["p50"],
                    "p90": r["latency_ms"]["p90"],
                    "p99": r["latency_ms"]["p99"],
                    "throughput_per_s": r["throughput_per_s"],
                    "efficiency": r.get("efficiency"),
                    "peak_rss_mb": res["peak_rss_mb"],
                }
            )
    return rows


def format_compare(rows: list[dict], markdown: bool) -> str:
    header = [
        "machine",
        "mode",
        "thr",
        "batch",
        "model",
        "runtime",
        "prec",
        "C",
        "p50 ms",
        "p90",
        "p99",
        "clips/s",
        "eff.",
    ]
    body = [
        [
            r["machine"],
            r["mode"],
            str(r["threads"]),
            str(r["batch"]),
            r["model"],
            r["runtime"],
            r["precision"],
            "-" if r["width"] is None else str(r["width"]),
            f"{r['p50']:.3f}",
            f"{r['p90']:.3f}",
            f"{r['p99']:.3f}",
            f"{r['throughput_per_s']:.0f}",
            "-" if r["efficiency"] is None else f"{100 * r['efficiency']:.1f}%",
        ]
        for r in rows
    ]
    return _grid(header, body, markdown)


def plot_compare(rows: list[dict], out: Path) -> None:
    """Horizontal bars: median latency per (machine, model, mode, threads), p90 as a whisker."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise TfsepError("--plot needs matplotlib; install it with: pip install 'tfsep-edge[plot]'") from None
    from tfsep_edge.core.fileio import atomic_path

    labels = [f"{r['machine']} | {r['model']} ({r['runtime']}, {r['mode']}, {r['threads']}t)" for r in rows]
    p50 = [r["p50"] for r in rows]
    p90 = [r["p90"] - r["p50"] for r in rows]
    fig, ax = plt.subplots(figsize=(10, 0.4 * len(rows) + 1.5))
    ax.barh(range(len(rows)), p50, xerr=[[0] * len(rows), p90], color="tab:blue", ecolor="gray")
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("latency per call, ms (bar: median, whisker: p90)")
    ax.set_title("tfsep-edge bench: latency by machine and model")
    fig.tight_layout()
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def compare_command(files: list[Path], markdown: bool, plot: Path | None, json_out: Path | None) -> int:
    from tfsep_edge.core.fileio import check_output_file, write_text_atomic

    if not files:
        raise TfsepError("--compare: pass one or more result files from bench --json")
    for out in (plot, json_out):  # before any work: a bad output path is not found at the end
        if out is not None:
            check_output_file(out)
    results = [(f, res) for f in files for res in load_results(f)]
    rows = compare_rows(results)
    print(format_compare(rows, markdown))
    for f, res in results:
        print(f"{'- ' if markdown else ''}{f}: {machine_line(res['machine'])}")
    if plot is not None:
        plot_compare(rows, plot)
        print(f"wrote {plot}", file=sys.stderr)
    if json_out is not None:
        write_text_atomic(json_out, json.dumps({"schema": SCHEMA + "/compare", "rows": rows}, indent=1) + "\n")
    return 0


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
