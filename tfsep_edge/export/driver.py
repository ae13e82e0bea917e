"""The one export driver: load the source, build the graph for a format, validate it by the rule
(rule.py), write it atomically, print the summary. A format is a small `Backend` (onnx_export.py,
tflite_export.py); a new format (a TFLite Micro C array, say) is one more.

Every export validates itself before OUT exists: it is written to a temporary file next to OUT
(core.fileio.atomic_path), run in the format's runtime on the validation audio through the one
front end (reference.validation_set) against the model it must equal by the rule (FP32: the
float model; INT8: the fake-quant twin), and only then renamed. A failed validation raises
rule.ExportValidationError (the CLI exits 1) and leaves nothing at OUT. verify.py runs the same
validation on a file that already exists.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from tfsep_edge.core.config import META_BUDGET, META_INPUT, META_PRECISION, META_WIDTH
from tfsep_edge.core.errors import TfsepError
from tfsep_edge.core.fileio import atomic_path, check_output_file
from tfsep_edge.export.reference import reference_logits, validation_set
from tfsep_edge.export.source import Source, load_source
from tfsep_edge.export.summary import closing_lines, fp32_timing, precision_timing, step_lines


@dataclass(frozen=True)
class FileFacts:
    """What a graph file says it is (its metadata, or failing that its graph): what verify needs."""

    int8: bool
    frontend: bool  # waveform input (front end inside the graph)
    width: int | None  # None: no tfsep-edge metadata says
    input_shape: tuple  # without the batch axis; None where a dimension is symbolic

    @classmethod
    def read(cls, meta: dict[str, str], graph_int8: bool, input_shape: tuple) -> FileFacts:
        """From a file's metadata where it says, else from its graph: `graph_int8` (what the
        format's reader saw), a rank-2 input takes waveforms."""
        int8 = meta[META_PRECISION] == "int8" if META_PRECISION in meta else graph_int8
        frontend = meta[META_INPUT] == "waveform" if META_INPUT in meta else len(input_shape) == 2
        width = meta.get(META_WIDTH, "")
        return cls(int8, frontend, int(width) if width.isdigit() else None, tuple(input_shape[1:]))


class Backend(Protocol):
    """One output format of the driver."""

    name: str  # as the summary names the format: "ONNX", "TFLite"
    suffix: str  # ".onnx"
    runtime: str  # what validation and timing run in, as the summary names it
    validated_in: str  # how the summary's validation line names it ("" or " in LiteRT (XNNPACK)")
    int8_io: bool  # whether an INT8 file can have int8 input and output tensors (--io int8)

    def check_request(self, out: Path, frontend: bool, opset: int | None) -> None:
        """User errors in the options (TfsepError) before any work."""

    def build(self, source: Source, int8: bool, frontend: bool, opset: int | None, io: str = "float") -> bytes:
        """The file's bytes, metadata included."""

    def validate(self, path: Path, source: Source, int8: bool, frontend: bool, waves: np.ndarray) -> dict:
        """The rule on `path` in the format's runtime; raises rule.ExportValidationError."""

    def runner(self, path: Path) -> Callable[[np.ndarray], object]:
        """x -> logits in a one-thread session of `path` (the short timing)."""

    def metadata(self, data: bytes) -> dict[str, str]:
        """The metadata entries of a built file."""

    def facts(self, data: bytes) -> dict:
        """The format's own summary fields (ONNX: opset; TFLite: operator counts)."""

    def headline(self, summary: dict) -> str:
        """What the file is, after "wrote OUT: ", e.g. "FP32 ONNX (opset 17), input logmel, ..."."""

    def checks(self, validation: dict) -> list[str]:
        """The format's own checks that passed (e.g. the ONNX checker), for the summary."""

    def inspect(self, path: Path) -> FileFacts:
        """What an existing file is (verify); TfsepError if it cannot be read as this format."""


def export_model(
    backend: Backend,
    model_path: str | Path,
    out: str | Path,
    int8: bool = False,
    frontend: bool = False,
    opset: int | None = None,
    timing: bool = True,
    echo=print,
    io: str = "float",
) -> dict:
    """Build, validate and atomically write one file of `backend`'s format; returns a summary dict.
    `io`: "float" (float input and logits) or "int8" (int8 log-mel input and int8 logits: the
    INT8 file of an integer model, either format).

    Raises TfsepError (user error: exit 2) or ExportValidationError (exit 1, nothing at OUT).
    """
    model_path, out = Path(model_path), Path(out)
    backend.check_request(out, frontend, opset)
    check_output_file(out)
    if io not in IO_KINDS:
        raise TfsepError(f"--io {io}: choose float or int8")
    source = load_source(model_path, int8)
    if io == "int8":
        check_int8_io(source, backend, int8, model_path)
        if frontend:
            raise TfsepError(
                f"{model_path}: --io int8 takes the int8 log-mel, and --frontend puts the float front end inside: "
                "drop one of the two"
            )
    started = time.perf_counter()
    data = backend.build(source, int8, frontend, opset, io=io)
    waves, described = validation_set(source.frontend)
    with atomic_path(out, suffix=backend.suffix) as tmp:
        tmp.write_bytes(data)  # one file: every weight inline
        check = backend.validate(tmp, source, int8, frontend, waves) | {"input_sources": described}
        summary = {
            "out": str(out),
            "source": str(model_path),
            **backend.facts(data),
            "precision": "int8" if int8 else "fp32",
            "input": "waveform" if frontend else "logmel",
            "bytes": len(data),
            "validation": check,
            "budget": json.loads(backend.metadata(data)[META_BUDGET]),
        }
        if timing:
            summary["latency"] = short_timing(backend, tmp, source, int8, frontend, opset, waves)
    summary["seconds"] = round(time.perf_counter() - started, 2)
    echo(format_summary(summary, backend))
    return summary


IO_KINDS = ("float", "int8")


def check_int8_io(source: Source, backend: Backend, int8: bool, model_path: Path) -> None:
    """--io int8: int8 input and output tensors only for the TFLite file of an integer model; each
    refusal names the fix that leads there (none for a family without an integer model)."""
    from tfsep_edge.quant.ready import INTEGER_FAMILIES

    family = source.float_model.config.family
    if family not in INTEGER_FAMILIES:  # quantize --integer refuses it: do not send the user there
        raise TfsepError(
            f"{model_path}: --io int8 needs an integer model, and a {family} has none (--integer builds "
            f"{' | '.join(INTEGER_FAMILIES)}); export it with float input and output (drop --io int8)"
        )
    if not (int8 and backend.int8_io):
        fix = "add --int8 (an integer model's TFLite export)" if backend.int8_io else "export a .tflite (--tflite)"
        raise TfsepError(f"{model_path}: --io int8 gives int8 input and output tensors of an integer INT8 file; {fix}")
    if not source.artifact.options.integer:
        raise TfsepError(
            f"{model_path}: --io int8 needs an integer model; quantize it with `tfsep-edge quantize CKPT "
            "--calib CALIB --integer`"
        )


def short_timing(
    backend: Backend, path: Path, source: Source, int8: bool, frontend: bool, opset: int | None, waves: np.ndarray
) -> dict:
    """Batch 1, one thread: FP32 alone, or this INT8 file against the FP32 graph of the same float weights."""
    import tempfile

    feed = waves[:1] if frontend else reference_logits(source, waves[:1])[0]
    if not int8:
        return fp32_timing(backend.runner(path), feed)
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path = Path(tmp) / f"fp32{backend.suffix}"
        fp32_path.write_bytes(backend.build(source.float_only(), False, frontend, opset, io="float"))
        return precision_timing(backend.runner(path), backend.runner(fp32_path), feed)


def validation_lines(s: dict, backend: Backend) -> list[str]:
    """The lines that say what the file was checked on and against, and what it gave."""
    v = s["validation"]
    where = v.get("validated_in", backend.validated_in)  # an integer .tflite: LiteRT's reference kernels
    lines = [
        f"validated on {v['inputs']} inputs ({v.get('input_sources', 'audio')}){where} against the "
        f"{v['reference']}: max |d logit| {v['max_abs_logit_diff']:.3g} ({v['threshold']}), top-1 agreement "
        f"{v['top1_agreement']:.1%}",
    ]
    lines += step_lines(v)
    checks = [*backend.checks(v), f"each input alone vs in the batch: {v['batch1_max_abs_diff']:.3g}"]
    if "frontend_max_abs_diff" in v:
        diff, tol = v["frontend_max_abs_diff"], v["frontend_tolerance"]
        checks.append(f"in-graph front end vs log_mel: {diff:.2g} (<= {tol:g})")
    lines.append("  " + "; ".join(checks))
    return lines


def format_summary(s: dict, backend: Backend, verb: str = "wrote", path_key: str = "out") -> str:
    lines = [f"{verb} {s[path_key]}: {backend.headline(s)}", *validation_lines(s, backend)]
    lines += closing_lines(s, backend.runtime)
    return "\n".join(lines)
