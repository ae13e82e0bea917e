"""Agreement of the exported formats on held-out data, for trained models (SYNTHETIC data).

For each trained checkpoint: `quantize` with its defaults (PTQ, calibrated on the data's train
split), export FP32 and INT8 `.tflite` and the INT8 ONNX (each validated by the export rule),
then run every artifact on the evaluate split through the one front end and compare top-1
labels: INT8 .tflite vs FP32 .tflite, INT8 .tflite vs INT8 ONNX (onnxruntime), and the INT8 ONNX
in OpenVINO vs onnxruntime.

The last rows ask why OpenVINO and onnxruntime differ where they do: x86 int8 kernels without VNNI
(vpmaddubsw) saturate the 16-bit sum of two u8 x s8 products, which full-range 8-bit activations
can overflow. The same checkpoint is quantized again with `quantize --reduce-range` (7-bit
activations: within the calibrated range that sum cannot overflow; beyond it, up to 255, it still
can) and its INT8 ONNX run in both runtimes; its accuracy shows what the remedy costs.

    .venv/bin/python benchmarks/trained_agreement.py --data SYNTH --checkpoints c12/best.pt c40/best.pt

Needs the [tflite] and [peers] extras. Writes benchmarks/results/trained_agreement.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tfsep_edge.core.fileio import write_text_atomic  # noqa: E402

OUT = REPO / "benchmarks" / "results"


def openvino_logits(path: Path, mels: np.ndarray, f32: bool = False) -> np.ndarray:
    """OpenVINO's CPU plugin as a user gets it, or (`f32`) with float32 float parts: its default
    is bf16 on CPUs that have it."""
    import openvino as ov

    config = {"INFERENCE_NUM_THREADS": 1} | ({"INFERENCE_PRECISION_HINT": "f32"} if f32 else {})
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    return np.concatenate([request.infer({0: mels[i : i + 1]})[compiled.output(0)] for i in range(len(mels))])


def onnxruntime_logits(path: Path, mels: np.ndarray) -> np.ndarray:
    from tfsep_edge.runtime.classifier import open_session

    session = open_session(path, 1)
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: mels[i : i + 1]})[0] for i in range(len(mels))])


def top1(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.argmax(1) == b.argmax(1)).mean())


def quantize_and_export(data: Path, checkpoint: Path, qdir: Path, onnx_out: Path, reduce_range: bool) -> None:
    from tfsep_edge.export.onnx_export import export
    from tfsep_edge.quant.pipeline import QuantizeRequest, run_quantize

    req = QuantizeRequest(
        checkpoint=checkpoint, calib=data, engine="x86", sensitivity=False, out=qdir, reduce_range=reduce_range
    )
    run_quantize(req, log=lambda _m: None)
    export(qdir, onnx_out, int8=True, echo=lambda _s: None, timing=False)


def one_model(data: Path, checkpoint: Path, work: Path) -> dict:
    from tfsep_edge.datasets.cache import load_split
    from tfsep_edge.export.tflite_export import export_tflite
    from tfsep_edge.model.checkpoint import load_model
    from tfsep_edge.runtime.evaluate import load_logits_fn, split_logits
    from tfsep_edge.signal.frontend import log_mel

    width = load_model(checkpoint).width
    qdir = work / f"c{width}-int8"
    paths = {
        "tflite_fp32": work / f"c{width}_fp32.tflite",
        "tflite_int8": work / f"c{width}_int8.tflite",
        "onnx_int8": work / f"c{width}_int8.onnx",
    }
    quantize_and_export(data, checkpoint, qdir, paths["onnx_int8"], reduce_range=False)
    quiet = {"echo": lambda _s: None, "timing": False}
    export_tflite(checkpoint, paths["tflite_fp32"], **quiet)
    export_tflite(qdir, paths["tflite_int8"], int8=True, **quiet)
    reduced = work / f"c{width}_int8_reduce_range.onnx"
    quantize_and_export(data, checkpoint, work / f"c{width}-int8-rr", reduced, reduce_range=True)

    split = load_split(data, "evaluate", progress=False, dtype="float32")
    logits = {
        "pytorch_fp32": split_logits(load_logits_fn(checkpoint), split, progress=False),
        "pytorch_int8": split_logits(load_logits_fn(qdir), split, progress=False),
        **{key: split_logits(load_logits_fn(p), split, progress=False) for key, p in paths.items()},
    }
    mels = np.ascontiguousarray(log_mel(split.waves.get(np.arange(len(split))), load_logits_fn(qdir).frontend)[:, None])
    logits["onnx_int8_onnxruntime"] = onnxruntime_logits(paths["onnx_int8"], mels)
    logits["onnx_int8_openvino"] = openvino_logits(paths["onnx_int8"], mels)
    logits["onnx_int8_openvino_f32"] = openvino_logits(paths["onnx_int8"], mels, f32=True)
    logits["reduced_onnxruntime"] = onnxruntime_logits(reduced, mels)
    logits["reduced_openvino"] = openvino_logits(reduced, mels)

    def gap(a, b):
        return float(np.abs(logits[a] - logits[b]).max())

    return {
        "width": width,
        "checkpoint": str(checkpoint),
        "clips": len(split),
        "accuracy": {k: float((v.argmax(1) == split.labels).mean()) for k, v in logits.items()},
        "tflite_int8_vs_tflite_fp32_top1": top1(logits["tflite_int8"], logits["tflite_fp32"]),
        "onnx_int8_vs_fp32_top1": top1(logits["onnx_int8"], logits["pytorch_fp32"]),
        "pytorch_int8_vs_fp32_top1": top1(logits["pytorch_int8"], logits["pytorch_fp32"]),
        "tflite_int8_vs_onnx_int8_top1": top1(logits["tflite_int8"], logits["onnx_int8"]),
        "tflite_int8_vs_onnx_int8_max_abs": gap("tflite_int8", "onnx_int8"),
        "tflite_fp32_vs_pytorch_max_abs": gap("tflite_fp32", "pytorch_fp32"),
        "openvino_vs_onnxruntime_int8_top1": top1(logits["onnx_int8_openvino"], logits["onnx_int8_onnxruntime"]),
        "openvino_vs_onnxruntime_int8_max_abs": gap("onnx_int8_openvino", "onnx_int8_onnxruntime"),
        "openvino_f32_vs_onnxruntime_int8_top1": top1(
            logits["onnx_int8_openvino_f32"], logits["onnx_int8_onnxruntime"]
        ),
        "openvino_f32_vs_onnxruntime_int8_max_abs": gap("onnx_int8_openvino_f32", "onnx_int8_onnxruntime"),
        "reduced_openvino_vs_onnxruntime_top1": top1(logits["reduced_openvino"], logits["reduced_onnxruntime"]),
        "reduced_openvino_vs_onnxruntime_max_abs": gap("reduced_openvino", "reduced_onnxruntime"),
        "reduced_vs_fp32_top1": top1(logits["reduced_onnxruntime"], logits["pytorch_fp32"]),
    }


ROWS = (
    ("accuracy pytorch_fp32", "FP32 checkpoint (PyTorch) accuracy", "pct"),
    ("accuracy tflite_fp32", "FP32 .tflite accuracy", "pct"),
    ("accuracy tflite_int8", "INT8 .tflite accuracy", "pct"),
    ("accuracy pytorch_int8", "PyTorch INT8 (engine x86) accuracy", "pct"),
    ("accuracy onnx_int8", "INT8 ONNX (onnxruntime) accuracy", "pct"),
    ("accuracy onnx_int8_openvino", "INT8 ONNX (OpenVINO) accuracy", "pct"),
    ("tflite_int8_vs_tflite_fp32_top1", "INT8 .tflite vs FP32 .tflite, top-1 (target >= 97%)", "pct"),
    ("onnx_int8_vs_fp32_top1", "INT8 ONNX vs FP32 checkpoint, top-1", "pct"),
    ("pytorch_int8_vs_fp32_top1", "PyTorch INT8 (engine x86) vs FP32 checkpoint, top-1", "pct"),
    ("tflite_int8_vs_onnx_int8_top1", "INT8 .tflite vs INT8 ONNX, top-1 (target >= 99%)", "pct"),
    ("tflite_int8_vs_onnx_int8_max_abs", "INT8 .tflite vs INT8 ONNX, max abs d logit", "g"),
    ("tflite_fp32_vs_pytorch_max_abs", "FP32 .tflite vs PyTorch, max abs d logit", "g"),
    ("openvino_vs_onnxruntime_int8_top1", "INT8 ONNX: OpenVINO (default) vs onnxruntime, top-1 (target >= 99%)", "pct"),
    ("openvino_vs_onnxruntime_int8_max_abs", "INT8 ONNX: OpenVINO (default) vs onnxruntime, max abs d logit", "g"),
    ("openvino_f32_vs_onnxruntime_int8_top1", "INT8 ONNX: OpenVINO (f32 float parts) vs onnxruntime, top-1", "pct"),
    ("openvino_f32_vs_onnxruntime_int8_max_abs", "INT8 ONNX: OpenVINO (f32) vs onnxruntime, max abs d logit", "g"),
    ("reduced_openvino_vs_onnxruntime_top1", "`--reduce-range` INT8 ONNX: OpenVINO vs onnxruntime, top-1", "pct"),
    ("reduced_openvino_vs_onnxruntime_max_abs", "`--reduce-range` INT8 ONNX: OpenVINO vs onnxruntime, max abs", "g"),
    ("accuracy reduced_onnxruntime", "`--reduce-range` INT8 ONNX accuracy", "pct"),
    ("reduced_vs_fp32_top1", "`--reduce-range` INT8 ONNX vs FP32, top-1", "pct"),
)


def _value(row: dict, key: str):
    if key.startswith("accuracy "):
        return row["accuracy"][key.split()[1]]
    return row[key]


def markdown(rows: list[dict], meta: dict) -> str:
    widths = " | ".join(f"C={r['width']}" for r in rows)
    lines = [
        "# Trained models: the exported formats agree on held-out data",
        "",
        f"SYNTHETIC data ({meta['evaluate_clips']:,} held-out evaluate clips, unseen devices included; "
        f"{meta['trained']}), not TAU22 accuracy. `quantize` defaults (PTQ, engine x86), every export validated. "
        f"Machine: {meta['machine']}; {meta['versions']}.",
        "",
        f"| measure | {widths} |",
        "|---|" + "---|" * len(rows),
    ]
    for key, name, fmt in ROWS:
        cells = [f"{_value(r, key):.1%}" if fmt == "pct" else f"{_value(r, key):.2g}" for r in rows]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    lines += [
        "",
        "Reading: the deployed INT8 formats (.tflite on LiteRT, the INT8 ONNX on onnxruntime) compute the same",
        "int8 arithmetic (their rows compare them); OpenVINO runs the same INT8 ONNX with its own int8 kernels,",
        "which on an x86 without VNNI saturate the 16-bit sum of two u8 x s8 products, and by default, on a CPU",
        "with BF16, its float parts in bf16 (the f32 rows turn that off). The `--reduce-range`",
        "rows (7-bit activations: no overflow within the calibrated range) show how much of OpenVINO's",
        "difference that removes, and what the 7-bit remedy costs against FP32.",
    ]
    return "\n".join(lines) + "\n"


def rewrite_markdown() -> None:
    """Rebuild the .md from the committed .json (after a change of the table's text only)."""
    saved = json.loads((OUT / "trained_agreement.json").read_text())
    write_text_atomic(OUT / "trained_agreement.md", markdown(saved["rows"], saved["meta"]))


def main() -> None:
    from tfsep_edge.bench.machine import machine_info

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="the synthetic set the checkpoints were trained on")
    ap.add_argument("--checkpoints", type=Path, nargs="+", required=True)
    ap.add_argument("--trained", default="trained with `tfsep-edge train`", help="how (for the table's header)")
    ap.add_argument("--keep", type=Path, help="keep the quantized models and exports in this new folder")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.keep:
            args.keep.mkdir(parents=True)
            tmp = args.keep
        rows = []
        for ck in args.checkpoints:
            work = Path(tmp) / ck.parent.name
            work.mkdir()
            rows.append(one_model(args.data, ck, work))
            print(json.dumps(rows[-1], indent=1), flush=True)
    import openvino

    info = machine_info(1)
    versions = {**info["versions"], "openvino": openvino.__version__.split("-")[0]}
    meta = {
        "data": "SYNTHETIC",
        "evaluate_clips": rows[0]["clips"],
        "trained": args.trained,
        "machine": f"{info['cpu_model']} ({','.join(info['isa'] or [])})",
        "versions": ", ".join(f"{k} {v}" for k, v in sorted(versions.items()) if v),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    write_text_atomic(OUT / "trained_agreement.json", json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    write_text_atomic(OUT / "trained_agreement.md", markdown(rows, meta))
    print(markdown(rows, meta))


if __name__ == "__main__":
    main()
