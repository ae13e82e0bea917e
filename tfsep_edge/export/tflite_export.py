"""The TFLite backend of the export driver (driver.py): `tfsep-edge export MODEL --tflite OUT.tflite [--int8]`.

FP32 from a checkpoint (tflite_fp32.build_fp32), INT8 from a `tfsep-edge quantize` folder
(tflite_int8.py writes the INT8 model described once in int8_graph.py: the scales, zero points
and int8 weights of the PyTorch INT8 model and the INT8 ONNX). Labels, front end, width,
precision and budget go into the file's metadata under the same keys as every format
(config.META_*), so the runtime needs nothing else.

Validation, before OUT exists, in LiteRT with XNNPACK as users run it, by the rule every export
uses: FP32 against the PyTorch float model, INT8 against the fake-quant twin in output steps
(agreement with PyTorch INT8 reported as information), and each input alone against the batch
(the batch axis is dynamic). A .tflite takes log-mels (the runtime computes them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfsep_edge.core.errors import TfsepError, first_line
from tfsep_edge.export import arena_plan, rule
from tfsep_edge.export.driver import FileFacts, export_model
from tfsep_edge.export.metadata import budget_figures, description, io_metadata, model_metadata
from tfsep_edge.export.reference import check_logits, reference_logits
from tfsep_edge.export.rule import ExportValidationError
from tfsep_edge.export.source import Source


def build(source: Source, int8: bool, io: str = "float") -> bytes:
    """The flatbuffer with its metadata: the budget's stored bytes are counted on the graph itself.
    `io` "int8": int8 input and output tensors (an integer model), their points in META_IO."""
    from tfsep_edge.budget.stored_bytes import stored_bytes, tflite_constants

    extra: dict[str, str] = {}
    if int8:
        from tfsep_edge.export.tflite_int8 import build_int8

        graph, x_in, out = build_int8(source.artifact.fake_quant_model("int8"), source.frontend, int8_io=io == "int8")
        if io == "int8":
            extra = io_metadata(*((float(t.quant.scale[0]), int(t.quant.zero_point[0])) for t in (x_in, out)))
    else:
        from tfsep_edge.export.tflite_easy_nets import build_family_fp32

        try:
            graph, x_in, out = build_family_fp32(source.float_model, source.frontend)
        except TfsepError as exc:  # what the graph cannot hold (SubSpectralNorm sub-bands): name the file
            raise TfsepError(f"{source.path}: {exc}") from None
    precision, width = ("int8" if int8 else "fp32"), source.float_model.config.width
    desc = description(width, precision, "logmel")
    draft = graph.pack([x_in], [out], {}, desc)
    budget = budget_figures(source.float_model, stored_bytes(tflite_constants(draft)), source.frontend)
    meta = model_metadata("logmel", precision, width, source.frontend, budget) | extra
    plan = {arena_plan.METADATA_KEY: arena_plan.offline_plan(graph, [x_in], [out])}
    return graph.pack([x_in], [out], meta | plan, desc)


TFLM_INPUTS = 8  # validation inputs run through TFLM and LiteRT's reference kernels (slow kernels)


def micro_check(path: Path, mels: np.ndarray) -> dict:
    """An integer .tflite in TFLite Micro: bit for bit LiteRT's reference kernels on the first
    validation inputs, and the smallest arena it runs in; raises ExportValidationError if they
    differ. {"tflm": "not installed"} without tflite-micro (the [micro] extra)."""
    from tfsep_edge.core.tflite_format import float_activations
    from tfsep_edge.runtime import micro

    data = path.read_bytes()
    floats = float_activations(data)
    inner = [t for t in floats["tensors"] if t not in ("logmel", "logits")]
    facts: dict = {"float_tensors_inside": len(inner)}
    try:
        micro._runtime()
    except TfsepError:
        return facts | {"tflm": "not installed"}
    compared = micro.compare_with_reference(data, mels[:TFLM_INPUTS])
    if not compared["bit_exact"]:
        raise ExportValidationError(
            f"TFLite Micro differs from LiteRT's reference kernels by {compared['max_abs']:.3g} on "
            f"{compared['samples']} inputs: an op the two compute differently"
        )
    return facts | {"tflm": compared, "tflm_arena_bytes": micro.smallest_arena(data)}


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
    result = {"inputs": int(len(waves))}
    if not (int8 and source.artifact.options.integer):
        return result | check_logits(source, mels, float_logits, single, out, int8, False)
    # The integer model: the rule on LiteRT's reference kernels (what the twin mirrors), XNNPACK
    # within rule.XNNPACK_INTEGER_STEPS of them, TFLite Micro bit for bit equal to them.
    from tfsep_edge.runtime.micro import reference_logits as litert_reference

    reference = litert_reference(path.read_bytes(), mels)
    result["validated_in"] = " in LiteRT's reference kernels"
    result |= check_logits(source, mels, float_logits, reference, reference, int8, False)
    step = result["output_step"]
    result |= rule.check_xnnpack_integer(single, reference, step)
    result |= rule.check_batch(single, out, rule.int8_tolerance(step))
    return result | micro_check(path, mels)


def file_facts(path: Path, data: bytes) -> FileFacts:
    """What a .tflite says it is: its metadata, else its graph (int8 tensors make it INT8)."""
    from tfsep_edge.core.tflite_format import read_metadata, schema

    s = schema()
    try:
        model = s.ModelT.InitFromPackedBuf(data, 0)
        meta = read_metadata(data)
        sub = model.subgraphs[0]
        shape = tuple(int(d) for d in sub.tensors[int(sub.inputs[0])].shape)
        any_int8 = any(t.type == s.TensorType.INT8 for t in sub.tensors)
    except Exception as exc:  # a cut or corrupted flatbuffer fails deep in the bindings
        raise TfsepError(f"{path}: not a readable TFLite model ({first_line(exc, 80)}); export it again") from None
    facts = FileFacts.read(meta, any_int8, shape)
    if facts.frontend:
        raise TfsepError(
            f"{path}: takes waveforms; tfsep-edge checks .tflite models that take log-mels, as it exports them"
        )
    return facts


class TfliteBackend:
    name = "TFLite"
    suffix = ".tflite"
    runtime = "LiteRT"
    validated_in = " in LiteRT (XNNPACK)"
    int8_io = True

    def check_request(self, out: Path, frontend: bool, opset: int | None) -> None:
        from tfsep_edge.core.tflite_format import schema

        if out.suffix.lower() != self.suffix:
            raise TfsepError(f"{out}: the output must end in .tflite")
        if frontend or opset is not None:
            flag = "--frontend" if frontend else "--opset"
            raise TfsepError(
                f"{out}: {flag} applies to ONNX only; a .tflite takes log-mels (the runtime computes them)"
            )
        schema()  # a clear install hint before any work

    def build(self, source: Source, int8: bool, frontend: bool, opset: int | None, io: str = "float") -> bytes:
        return build(source, int8, io)

    def validate(self, path: Path, source: Source, int8: bool, frontend: bool, waves: np.ndarray) -> dict:
        return validate(path, source, int8, waves)

    def runner(self, path: Path):
        from tfsep_edge.runtime.tflite_classifier import TfliteClassifier

        return TfliteClassifier(path).run

    def metadata(self, data: bytes) -> dict[str, str]:
        from tfsep_edge.core.tflite_format import read_metadata

        return read_metadata(data)

    def facts(self, data: bytes) -> dict:
        from tfsep_edge.core.tflite_format import operator_counts

        return {"format": "tflite", "operators": operator_counts(data)}

    def headline(self, s: dict) -> str:
        ops = sum(s["operators"].values())
        return f"{s['precision'].upper()} {self.name}, input logmel, {s['bytes']:,} bytes, {ops} operators"

    def checks(self, validation: dict) -> list[str]:
        if "float_tensors_inside" not in validation:
            return []
        lines = [f"float tensors between input and logits: {validation['float_tensors_inside']}"]
        if "xnnpack_vs_reference_steps" in validation:
            lines.append(
                f"LiteRT with XNNPACK vs its reference kernels: {validation['xnnpack_vs_reference_steps']:.2f} output "
                f"steps (<= {rule.XNNPACK_INTEGER_STEPS}), top-1 agreement {validation['xnnpack_top1_agreement']:.1%}"
            )
        tflm = validation.get("tflm")
        if isinstance(tflm, dict):
            lines.append(
                f"TFLite Micro = LiteRT reference kernels bit for bit on {tflm['samples']} inputs, smallest "
                f"TFLM arena {validation['tflm_arena_bytes']:,} bytes"
            )
        else:
            lines.append("TFLite Micro not checked (not installed: pip install 'tfsep-edge[micro]')")
        return lines

    def inspect(self, path: Path) -> FileFacts:
        from tfsep_edge.core.tflite_format import read_model

        return file_facts(path, read_model(path))


TFLITE = TfliteBackend()


def export_tflite(
    model_path: str | Path, out: str | Path, int8: bool = False, timing: bool = True, echo=print, io: str = "float"
) -> dict:
    """Build, validate and atomically write the .tflite (driver.export_model); returns a summary dict.

    Raises TfsepError (user error: exit 2) or ExportValidationError (exit 1, nothing at OUT).
    """
    return export_model(TFLITE, model_path, out, int8=int8, timing=timing, echo=echo, io=io)
