"""`tfsep-edge verify MODEL_FILE SOURCE`: the export rule on an .onnx / .tflite that already exists
(made earlier, or by another tool) against the checkpoint or `tfsep-edge quantize` folder it
should equal: an FP32 file against the float model, an INT8 file against the fake-quant twin.

What the file is (INT8 or not, waveform or log-mel input) comes from its metadata, else from its
graph (the backend's `inspect`). The validation is the export's own (driver.py's backend), on the
same audio, and the summary prints the same lines. A file that fails the rule raises
rule.ExportValidationError (the CLI exits 1); a file or source that cannot be checked raises
TfsepError (exit 2).
"""

from __future__ import annotations

from pathlib import Path

from tfsep_edge.core.errors import TfsepError
from tfsep_edge.core.kinds import Kind, require_kind
from tfsep_edge.export.driver import Backend, FileFacts, format_summary
from tfsep_edge.export.metadata import budget_figures
from tfsep_edge.export.onnx_export import ONNX
from tfsep_edge.export.reference import validation_set
from tfsep_edge.export.source import Source, load_source
from tfsep_edge.export.tflite_export import TFLITE

BACKENDS: dict[Kind, Backend] = {Kind.ONNX: ONNX, Kind.TFLITE: TFLITE}


def source_for(model_file: Path, facts: FileFacts, source_path: Path) -> Source:
    """The checkpoint or quantize folder, loaded as the file needs it; TfsepError naming the fix
    when it cannot be the file's source (wrong kind, float for an INT8 file, another width or input)."""
    hint = f"give the checkpoint or `tfsep-edge quantize` folder {model_file.name} was exported from"
    kind = require_kind(source_path, (Kind.CHECKPOINT, Kind.QUANTIZED), "verify", hint)
    if facts.int8 and kind is Kind.CHECKPOINT:
        raise TfsepError(
            f"{source_path}: a float checkpoint, but {model_file} is INT8; give the `tfsep-edge quantize` "
            "folder it was exported from"
        )
    source = load_source(source_path, facts.int8)
    width = source.float_model.config.width
    if facts.width is not None and facts.width != width:
        raise TfsepError(f"{model_file}: a width-{facts.width} model, {source_path} is width {width}; {hint}")
    cfg = source.frontend
    expected = (cfg.clip_samples,) if facts.frontend else (1, cfg.n_mels, cfg.n_frames)
    shape = facts.input_shape
    if len(shape) != len(expected) or any(d is not None and d != e for d, e in zip(shape, expected, strict=True)):
        raise TfsepError(
            f"{model_file}: takes inputs of shape {list(shape)}, {source_path}'s front end gives "
            f"{list(expected)}; {hint}"
        )
    return source


def verify(model_file: str | Path, source_path: str | Path, echo=print) -> dict:
    """Validate `model_file` against `source_path` by the export rule; returns the summary dict.

    Raises TfsepError (user error: exit 2) or ExportValidationError (fails the rule: exit 1).
    """
    from tfsep_edge.budget.stored_bytes import read_graph_file

    model_file, source_path = Path(model_file), Path(source_path)
    hint = "give the exported .onnx or .tflite first, then its checkpoint or quantize folder"
    kind = require_kind(model_file, tuple(BACKENDS), "verify", hint)
    backend = BACKENDS[kind]
    facts = backend.inspect(model_file)
    source = source_for(model_file, facts, source_path)
    data = model_file.read_bytes()
    waves, described = validation_set(source.frontend)
    check = backend.validate(model_file, source, facts.int8, facts.frontend, waves) | {"input_sources": described}
    stored = read_graph_file(model_file, kind).stored
    summary = {
        "file": str(model_file),
        "source": str(source_path),
        **backend.facts(data),
        "precision": "int8" if facts.int8 else "fp32",
        "input": "waveform" if facts.frontend else "logmel",
        "bytes": len(data),
        "validation": check,
        "budget": budget_figures(source.float_model, stored, source.frontend),
    }
    echo(format_summary(summary, backend, verb="verified", path_key="file"))
    return summary
