"""Bench results as tables, files and cross-machine comparisons (no timing here: harness.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tfsep_edge.core.errors import TfsepError

SCHEMA = "tfsep-edge/bench"

SCHEMA_VERSION = 1

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
        f"round-robin in blocks of {s.get('block', 10)}, latency per call (all clips of the batch)",  # 10: older files
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
