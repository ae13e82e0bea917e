"""`tfsep-edge export MODEL --tflite OUT.tflite [--int8]`: one verified LiteRT model.

FP32 from a checkpoint (tflite_fp32.build_fp32), INT8 from a `tfsep-edge quantize` folder
(tflite_int8.build_int8 from the fake-quant twin: the scales, zero points and int8 weights of
the PyTorch INT8 model and the INT8 ONNX). Labels, front end, width, precision and budget go
into the file's metadata under the ONNX export's keys, so the runtime needs nothing else.

Validation before OUT exists (written next to it, checked, renamed), by export/rule.py, the one rule
every export uses, on onnx_export's validation set through the one front end, run in LiteRT with
XNNPACK as users run it: FP32 against the PyTorch float model, INT8 against the fake-quant twin in
output steps (agreement with PyTorch INT8 reported as information), and each input alone
against the batch (the batch axis is dynamic).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from tfsep_edge.core import config
from tfsep_edge.core.errors import TfsepError
from tfsep_edge.core.fileio import atomic_path, check_output_file
from tfsep_edge.export.onnx_export import (
    Source,
    budget_figures,
    check_logits,
    load_source,
    model_metadata,
    reference_logits,
    validation_set,
)
from tfsep_edge.export.rule import ExportValidationError
from tfsep_edge.export.summary import closing_lines, fp32_timing, precision_timing, step_lines


def build(source: Source, int8: bool) -> bytes:
    """The flatbuffer with its metadata: the budget's stored bytes are counted on the graph itself."""
    from tfsep_edge.budget.stored_bytes import stored_bytes, tflite_constants

    if int8:
        from tfsep_edge.export.tflite_int8 import build_int8

        graph, x_in, out = build_int8(source.artifact.fake_quant_model("int8"), source.frontend)
    else:
        from tfsep_edge.export.tflite_fp32 import build_fp32

        graph, x_in, out = build_fp32(source.float_model, source.frontend)
    precision, width = ("int8" if int8 else "fp32"), source.float_model.config.width
    desc = f"TF-SepNet width {width}, {precision}, input logmel; made by tfsep-edge {config.VERSION}"
    draft = graph.pack([x_in], [out], {}, desc)
    budget = budget_figures(source.float_model, stored_bytes(tflite_constants(draft)), source.frontend)
    return graph.pack([x_in], [out], model_metadata("logmel", precision, width, source.frontend, budget), desc)


def validate(path: Path, source: Source, int8: bool, waves: np.ndarray) -> dict:
    """LiteRT (XNNPACK) on `waves` through the one front end, by export/rule.py; raises ExportValidationError."""
    from tfsep_edge.runtime.tflite_classifier import TfliteClassifier

    mels, float_logits = reference_logits(source, waves)
    try:
        clf = TfliteClassifier(path, threads=1)
    except TfsepError as exc:
        raise ExportValidationError(f"LiteRT cannot load or run the model: {exc}") from None
    out = clf.run(mels)
    single = np.concatenate([clf.run(mels[i : i + 1]) for i in range(len(mels))])
    return {"inputs": int(len(waves))} | check_logits(source, mels, float_logits, single, out, int8, False)


def compare_precisions(int8_path: Path, source: Source, x: np.ndarray) -> dict:
    """This INT8 file against the FP32 graph of the same float weights, on LiteRT."""
    import tempfile

    from tfsep_edge.runtime.tflite_classifier import TfliteClassifier

    with tempfile.TemporaryDirectory() as tmp:
        fp32_path = Path(tmp) / "fp32.tflite"
        fp32_path.write_bytes(build(Source(source.path, source.float_model, source.frontend), False))
        return precision_timing(TfliteClassifier(int8_path).run, TfliteClassifier(fp32_path).run, x)


def export_tflite(model_path: str | Path, out: str | Path, int8: bool = False, timing: bool = True, echo=print) -> dict:
    """Build, validate and atomically write the .tflite; returns a summary dict.

    Raises TfsepError (user error: exit 2) or ExportValidationError (exit 1, nothing at OUT).
    """
    from tfsep_edge.core.tflite_format import operator_counts, read_metadata, schema

    model_path, out = Path(model_path), Path(out)
    if out.suffix.lower() != ".tflite":
        raise TfsepError(f"{out}: the output must end in .tflite")
    check_output_file(out)
    schema()  # a clear install hint before any work
    source = load_source(model_path, int8)
    started = time.perf_counter()
    data = build(source, int8)
    waves, described = validation_set(source.frontend)
    with atomic_path(out, suffix=".tflite") as tmp:
        tmp.write_bytes(data)
        check = validate(tmp, source, int8, waves) | {"input_sources": described}
        summary = {
            "out": str(out),
            "source": str(model_path),
            "format": "tflite",
            "precision": "int8" if int8 else "fp32",
            "input": "logmel",
            "bytes": len(data),
            "operators": operator_counts(data),
            "validation": check,
            "budget": json.loads(read_metadata(data)[config.META_BUDGET]),
        }
        if timing:
            x = reference_logits(source, waves[:1])[0]
            if int8:
                summary["latency"] = compare_precisions(tmp, source, x)
            else:
                from tfsep_edge.runtime.tflite_classifier import TfliteClassifier

                summary["latency"] = fp32_timing(TfliteClassifier(tmp).run, x)
    summary["seconds"] = round(time.perf_counter() - started, 2)
    echo(format_summary(summary))
    return summary


def format_summary(s: dict) -> str:
    v = s["validation"]
    ops = sum(s["operators"].values())
    lines = [
        f"wrote {s['out']}: {s['precision'].upper()} TFLite, input logmel, {s['bytes']:,} bytes, {ops} operators",
        f"validated on {v['inputs']} inputs ({v.get('input_sources', 'audio')}) in LiteRT (XNNPACK) against the "
        f"{v['reference']}: max |d logit| {v['max_abs_logit_diff']:.3g} ({v['threshold']}), top-1 agreement "
        f"{v['top1_agreement']:.1%}",
    ]
    lines += step_lines(v)
    lines.append(f"  each input alone vs in the batch: {v['batch1_max_abs_diff']:.3g}")
    lines += closing_lines(s, "LiteRT")
    return "\n".join(lines)
