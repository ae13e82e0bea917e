"""Every family's FP32 .tflite against the stock `litert_torch.convert` of the same module.

Untrained models with randomised BatchNorm (and AdaResNorm) statistics (latency does not depend on
the weights): TF-SepNet C=40 with AdaResNorm and with ResNorm, BC-ResNet C=40, and TF-SepNet-64
(depth 17) at its own input, 1 x 512 x 64. For each, two FP32 .tflite files of the same module:
- tfsep-edge's: `tfsep-edge export --tflite` (export_tflite, validated by the export rule) where the
  export takes the checkpoint; else the graph that export builds (tflite_easy_nets.build_family_fp32),
  packed as it is (for TF-SepNet-64 at 512 x 64: the export refuses a checkpoint on a front end
  other than the report's log-mel until CpMel is wired in; the graph builder is the same);
- stock: `litert_torch.convert(model, (x,))` of the same torch module;
- tfsep-edge's INT8 .tflite of the same model (`quantize`'s defaults, PTQ, calibrated on 32 other
  noise log-mels; the graph `export --int8 --tflite` writes), checked against its fake-quant twin
  by the INT8 export rule: which precision to deploy, per family, on this CPU.
The FP32 files are checked against PyTorch before timing, one input at a time (32 noise log-mels at the
family's input), within the FP32 export rule (1e-4 + 1e-5 x max |logit|); one beyond it is reported
as wrong and not timed. Then every file is timed by tfsep_edge.bench.harness.measure, round-robin in
one process, batch 1, one thread (LiteRT + XNNPACK, the same plain interpreter call for both), the
same input for both files of a family. Per file also the operators by kind: where a graph differs.

    PYTHONPATH=. /work/venv-peers/bin/python benchmarks/peers_families.py [--runs 300]
    .../python benchmarks/peers_families.py --render     # rewrite the .md from the .json

Needs litert-torch (the [peers] extra, in its own venv: benchmarks/README.md). Writes
benchmarks/results/peers_families.json and .md (atomically) with the machine record.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from tfsep_edge.core.fileio import write_text_atomic  # noqa: E402

OUT = REPO / "benchmarks" / "results"
FAMILIES = (  # key, label, --model, options, front end (its input shape)
    ("tfsepnet", "TF-SepNet C=40 (AdaResNorm)", "tfsepnet", {"width": 40}, "cpjku"),
    ("tfsepnet-resnorm", "TF-SepNet C=40 + ResNorm", "tfsepnet", {"width": 40, "norm": "resnorm"}, "cpjku"),
    ("bcresnet", "BC-ResNet C=40", "bcresnet", {"width": 40}, "cpjku"),
    ("tfsepnet-v2", "TF-SepNet-64, depth 17", "tfsepnet-v2", {"depth": 17}, "cpmel"),
)
PROBES = 32


def random_family_model(name: str, options: dict, seed: int = 0):
    """An untrained model of the family with randomised BatchNorm / AdaResNorm statistics (as
    tfsepnet.random_model does for TF-SepNet), eval mode."""
    import torch

    from tfsep_edge.model.families import build_model, make_config
    from tfsep_edge.model.tfsepnet import randomise_statistics

    torch.manual_seed(seed)
    return randomise_statistics(build_model(make_config(name, **options)).eval())


def probe_inputs(cfg, n: int = PROBES, seed: int = 3) -> np.ndarray:
    """Log-mels of coloured noise through the family's front end configuration (torch version)."""
    import torch

    from tfsep_edge.signal.frontend import log_mel_torch

    rng = np.random.default_rng(seed)
    white = rng.standard_normal((n, cfg.clip_samples)).astype(np.float32)
    gains = rng.uniform(0.01, 0.3, size=(n, 1)).astype(np.float32)
    coloured = np.cumsum(white, axis=1) * 0.02 + white
    waves = torch.from_numpy((gains * coloured / np.abs(coloured).max(axis=1, keepdims=True)).astype(np.float32))
    with torch.no_grad():
        return np.ascontiguousarray(log_mel_torch(waves, cfg).numpy(), dtype=np.float32)


def ours(model, cfg, folder: Path, key: str) -> tuple[Path, str]:
    """tfsep-edge's FP32 .tflite and how it was made."""
    from tfsep_edge.core.errors import TfsepError, first_line
    from tfsep_edge.export.tflite_easy_nets import build_family_fp32
    from tfsep_edge.export.tflite_export import export_tflite
    from tfsep_edge.model.checkpoint import save_checkpoint

    ckpt, out = folder / f"{key}.pt", folder / f"{key}_ours.tflite"
    save_checkpoint(model, ckpt, frontend=cfg, meta={"note": "untrained, randomised statistics (latency only)"})
    try:
        export_tflite(ckpt, out, echo=lambda _s: None, timing=False)
        return out, "`tfsep-edge export --tflite` (validated by the export rule)"
    except TfsepError as exc:
        graph, x_in, y = build_family_fp32(model, cfg)
        out.write_bytes(graph.pack([x_in], [y], {}, "tfsep-edge FP32 (graph builder)"))
        return out, f"the export's graph builder, packed directly (the export says: {first_line(exc, 140)})"


def stock(model, cfg, folder: Path, key: str) -> Path:
    """What a user gets from litert-torch: the module as it is."""
    import litert_torch
    import torch

    out = folder / f"{key}_stock.tflite"
    args = (torch.zeros(1, 1, cfg.n_mels, cfg.n_frames),)
    out.write_bytes(litert_torch.convert(model.eval(), args).model_content())
    return out


def ours_int8(model, cfg, folder: Path, key: str, mels: np.ndarray) -> tuple[Path, object, float]:
    """tfsep-edge's INT8 .tflite (PTQ with quantize's defaults, calibrated on noise log-mels
    other than `mels`), its fake-quant twin's logits on `mels` and the twin's output step."""
    import torch

    from tfsep_edge.export.tflite_int8 import build_int8
    from tfsep_edge.quant.calibrate import QuantOptions
    from tfsep_edge.quant.quantize import quantize_model
    from tfsep_edge.quant.ready import stem_layers
    from tfsep_edge.quant.twin import output_step

    calib = torch.from_numpy(probe_inputs(cfg, seed=11))
    options = QuantOptions().with_float_layers(stem_layers(model))
    art, _ = quantize_model(model, calib.split(16), options, frontend=cfg)
    fq = art.fake_quant_model("int8")
    with torch.no_grad():
        twin = fq(torch.from_numpy(mels)).numpy()
    graph, x_in, y = build_int8(fq, cfg)
    out = folder / f"{key}_int8.tflite"
    out.write_bytes(graph.pack([x_in], [y], {}, "tfsep-edge INT8 (PTQ)"))
    return out, twin, output_step(fq)


def check_int8_file(run, mels: np.ndarray, twin: np.ndarray, step: float) -> dict:
    """The INT8 export rule (max |d logit| <= 3 output steps of the twin), one input at a time."""
    from tfsep_edge.export.rule import int8_tolerance

    got = np.concatenate([run(mels[i : i + 1]) for i in range(len(mels))])
    diff, tol = float(np.abs(got - twin).max()), int8_tolerance(step)
    return {
        "inputs": len(mels),
        "max_abs_logit_diff": diff,
        "tolerance": tol,
        "reference": "fake-quant twin",
        "top1_vs_pytorch": float((got.argmax(1) == twin.argmax(1)).mean()),
        "status": "ok" if diff <= tol else f"wrong: max |d logit| {diff:.2g} > {tol:.2g}",
    }


def interpreter_runner(path: Path, name: str, x: np.ndarray):
    """A bench Runner calling the .tflite on LiteRT + XNNPACK, one thread, batch 1: set, invoke, get."""
    from ai_edge_litert.interpreter import Interpreter

    from tfsep_edge.bench.runners import Runner

    t0 = time.perf_counter_ns()
    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    load_ms = (time.perf_counter_ns() - t0) / 1e6
    (inp,), (out,) = it.get_input_details(), it.get_output_details()
    if tuple(inp["shape"]) != x.shape[1:] and tuple(inp["shape"]) != (1, *x.shape[1:]):
        raise RuntimeError(f"{path.name}: input {tuple(inp['shape'])}, expected {(1, *x.shape[1:])}")

    def run(batch: np.ndarray) -> np.ndarray:
        it.set_tensor(inp["index"], batch)
        it.invoke()
        return it.get_tensor(out["index"]).reshape(len(batch), -1)

    first = x[:1]
    return Runner(name, str(path), "litert", "fp32", None, "logmel", load_ms, lambda _w: first, run), run


def partitions(path: Path) -> int:
    """XNNPACK partitions LiteRT made of the graph (DELEGATE nodes): more than 1 means ops between
    them that XNNPACK does not take run on LiteRT's own kernels, with a hand-over at each border."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    return sum(op["op_name"] == "DELEGATE" for op in it._get_ops_details())


def op_hint(model, cfg, runs: int) -> dict:
    """Where tfsep-edge's graph spends its time: each operator alone (peers.one_op_models: a one-op
    model with the graph's own shapes and weights, LiteRT + XNNPACK, one thread, round-robin),
    summed by kind, and whether XNNPACK takes that kind (a DELEGATE node in the one-op model)."""
    from ai_edge_litert.interpreter import Interpreter
    from peers import one_op_models, one_op_samples

    from tfsep_edge.export.tflite_easy_nets import build_family_fp32

    g = build_family_fp32(model, cfg)[0]
    rng = np.random.default_rng(0)
    calls = []
    for kind, data, _ins in one_op_models(g):
        it = Interpreter(model_content=data, num_threads=1)
        it.allocate_tensors()
        for d in it.get_input_details():
            it.set_tensor(d["index"], rng.standard_normal(d["shape"]).astype(np.float32))
        delegated = any(op["op_name"] == "DELEGATE" for op in it._get_ops_details())
        calls.append((kind.removesuffix(" (float in)"), delegated, it))
    samples = one_op_samples([it for _, _, it in calls], runs)
    rows: dict = {}
    for (kind, delegated, _), v in zip(calls, samples, strict=True):
        row = rows.setdefault(kind, {"ops": 0, "ms": 0.0, "xnnpack": delegated})
        row["ops"] += 1
        row["ms"] += float(np.median(v)) / 1e6
        row["xnnpack"] = row["xnnpack"] and delegated
    return dict(sorted(rows.items(), key=lambda kv: -kv[1]["ms"]))


def check(run, mels: np.ndarray, reference: np.ndarray) -> dict:
    from tfsep_edge.export.rule import fp32_tolerance

    got = np.concatenate([run(mels[i : i + 1]) for i in range(len(mels))])
    diff, tol = float(np.abs(got - reference).max()), fp32_tolerance(reference, False)
    return {
        "inputs": len(mels),
        "max_abs_logit_diff": diff,
        "tolerance": tol,
        "top1_vs_pytorch": float((got.argmax(1) == reference.argmax(1)).mean()),
        "status": "ok" if diff <= tol else f"wrong: max |d logit| {diff:.2g} > {tol:.2g}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=300, help="measured calls per file")
    ap.add_argument("--profile-runs", type=int, default=60, help="rounds of the per-op profile (where ours is slower)")
    ap.add_argument("--families", nargs="+", default=[k for k, *_ in FAMILIES])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--render", action="store_true", help="only rewrite peers_families.md from its .json")
    args = ap.parse_args()
    if args.render:
        write_text_atomic(
            args.out / "peers_families.md", markdown(json.loads((args.out / "peers_families.json").read_text()))
        )
        return
    import torch

    torch.set_num_threads(1)
    from tfsep_edge.bench.harness import bench_windows, measure
    from tfsep_edge.bench.machine import machine_info, package_version
    from tfsep_edge.budget.count import official_count
    from tfsep_edge.core.config import DEFAULT_FRONTEND, FRONTENDS
    from tfsep_edge.core.tflite_format import operator_counts

    started = time.time()
    rows, timed = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for key, label, name, options, fe in FAMILIES:
            if key not in args.families:
                continue
            cfg = FRONTENDS[fe]
            model = random_family_model(name, options)
            mels = probe_inputs(cfg)
            with torch.no_grad():
                reference = model(torch.from_numpy(mels)).numpy()
            params, macs, _ = official_count(model, cfg.n_mels, cfg.n_frames)
            row = {
                "key": key,
                "family": label,
                "model": name,
                "options": options,
                "input": [1, cfg.n_mels, cfg.n_frames],
                "frontend": fe,
                "params": int(params),
                "macs": int(macs),
                "files": {},
            }
            paths = {}
            paths["ours"], row["ours_made_by"] = ours(model, cfg, Path(tmp), key)
            paths["stock"] = stock(model, cfg, Path(tmp), key)
            paths["int8"], twin, step = ours_int8(model, cfg, Path(tmp), key, mels)
            for which, path in paths.items():
                runner, run = interpreter_runner(path, f"{key} {which}", mels)
                ops = operator_counts(path.read_bytes())
                row["files"][which] = {
                    "bytes": path.stat().st_size,
                    "operators": sum(ops.values()),
                    "ops_by_kind": dict(sorted(ops.items())),
                    "xnnpack_partitions": partitions(path),
                    "check": check_int8_file(run, mels, twin, step) if which == "int8" else check(run, mels, reference),
                }
                if row["files"][which]["check"]["status"] == "ok":
                    timed.append((key, which, runner))
            rows.append(row)
            print(json.dumps({key: {w: f["check"]["status"] for w, f in row["files"].items()}}), flush=True)
        measured = measure(
            [r for *_, r in timed],
            bench_windows(1, DEFAULT_FRONTEND),
            False,
            warmup=30,
            runs=args.runs,
            seconds=None,
            progress=False,
        )
    by_key = {r["key"]: r for r in rows}
    for (key, which, _), m in zip(timed, measured, strict=True):
        by_key[key]["files"][which]["latency_ms"] = {k: m["latency_ms"][k] for k in ("p50", "p90", "mean")}
    for row in rows:
        o, s, q = (row["files"][w].get("latency_ms", {}).get("p50") for w in ("ours", "stock", "int8"))
        row["stock_time_over_ours"] = s / o if o and s else None
        row["int8_time_over_fp32"] = q / o if o and q else None
        if row["stock_time_over_ours"] is not None and row["stock_time_over_ours"] < 1:
            _key, _label, name, options, fe = next(f for f in FAMILIES if f[0] == row["key"])
            row["ours_op_profile"] = op_hint(random_family_model(name, options), FRONTENDS[fe], args.profile_runs)
    report = {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(1),
        "peer_versions": {p: package_version(p) for p in ("litert-torch", "ai-edge-litert", "torch")},
        "runs_per_file": args.runs,
        "rows": rows,
        "seconds": round(time.time() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "peers_families.json", json.dumps(report, indent=1) + "\n")
    write_text_atomic(args.out / "peers_families.md", markdown(report))
    print(markdown(report))


def _ms(f: dict) -> str:
    lat = f.get("latency_ms")
    return f"{lat['p50']:.3f}" if lat else f"not timed ({f['check']['status']})"


def markdown(rep: dict) -> str:
    from tfsep_edge.bench.report import machine_line

    lines = [
        "# Each family's FP32 .tflite against the stock `litert_torch.convert` (generated by "
        "benchmarks/peers_families.py; do not edit)",
        "",
        f"Measured {rep['created']} on {machine_line(rep['machine'])}; "
        + ", ".join(f"{k} {v}" for k, v in rep["peer_versions"].items() if v)
        + f". Median ms of {rep['runs_per_file']} calls per file, batch 1, one thread, model only (LiteRT + "
        "XNNPACK, a plain interpreter call for both files), all files round-robin in one process "
        "(tfsep_edge.bench.harness.measure); untrained weights with randomised statistics. A shared VM: read the "
        "ratios, not the times.",
        "",
        "| family | input | params / MACs | tfsep-edge ms | stock ms | stock time / ours | operators ours / stock "
        "| XNNPACK partitions ours / stock | tfsep-edge INT8 ms | INT8 / FP32 time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rep["rows"]:
        o, s = r["files"]["ours"], r["files"]["stock"]
        ratio = r.get("stock_time_over_ours")
        q, q_ratio = r["files"].get("int8"), r.get("int8_time_over_fp32")
        lines.append(
            f"| {r['family']} | {'x'.join(map(str, r['input']))} | {r['params']:,} / {r['macs']:,} | {_ms(o)} | "
            f"{_ms(s)} | {f'{ratio:.2f}' if ratio else '-'} | {o['operators']} / {s['operators']} | "
            f"{o['xnnpack_partitions']} / {s['xnnpack_partitions']} | {_ms(q) if q else '-'} | "
            f"{f'{q_ratio:.2f}' if q_ratio else '-'} |"
        )
    lines += [
        "",
        "stock time / ours > 1: tfsep-edge's file is faster (issue 22's target: at least as fast, >= 1.00). "
        "INT8 / FP32 < 1: tfsep-edge's INT8 .tflite (PTQ, its float islands included) is the faster one here.",
        "",
        "## Checked against PyTorch before timing",
        "",
        f"Each file on {rep['rows'][0]['files']['ours']['check']['inputs'] if rep['rows'] else 0} noise log-mels "
        "at the family's input, one at a time: max abs d logit / the FP32 export rule's tolerance, top-1 "
        "agreement with PyTorch.",
        "",
        "| family | tfsep-edge | stock | tfsep-edge's file made by | tfsep-edge INT8 vs its twin (INT8 rule) |",
        "|---|---|---|---|---|",
    ]
    for r in rep["rows"]:
        cells = []
        for w in ("ours", "stock", "int8"):
            c = r["files"].get(w, {}).get("check")
            if c is None:
                cells.append("-")
                continue
            verdict = "" if c["status"] == "ok" else " **wrong**"
            cells.append(
                f"{c['max_abs_logit_diff']:.2g} / {c['tolerance']:.2g}, top-1 {c['top1_vs_pytorch']:.0%}{verdict}"
            )
        lines.append(f"| {r['family']} | {cells[0]} | {cells[1]} | {r['ours_made_by']} | {cells[2]} |")
    lines += [
        "",
        "## Operators by kind (ours / stock)",
        "",
    ]
    for r in rep["rows"]:
        o, s = r["files"]["ours"]["ops_by_kind"], r["files"]["stock"]["ops_by_kind"]
        kinds = sorted(set(o) | set(s), key=lambda k: -(o.get(k, 0) + s.get(k, 0)))
        lines.append(f"- {r['family']}: " + ", ".join(f"{k} {o.get(k, 0)}/{s.get(k, 0)}" for k in kinds))
    slower = [r for r in rep["rows"] if "ours_op_profile" in r]
    if slower:
        lines += [
            "",
            "## Where tfsep-edge's file is slower: its operators timed alone",
            "",
            "Each operator of tfsep-edge's graph as a one-op model (its own shapes and weights; LiteRT + XNNPACK, "
            'one thread, round-robin), median ms summed by kind; "XNNPACK" says whether XNNPACK takes the kind '
            "(one it does not runs on LiteRT's own kernel and splits the graph's XNNPACK partition there). "
            "Alone, an op pays a per-call cost, so the sums exceed the model's time.",
            "",
        ]
        for r in slower:
            lines += [f"{r['family']}:", "", "| op kind | ops | ms | XNNPACK |", "|---|---|---|---|"]
            for kind, v in r["ours_op_profile"].items():
                lines.append(f"| {kind} | {v['ops']} | {v['ms']:.3f} | {'yes' if v['xnnpack'] else '**no**'} |")
            lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
