"""The ONNX backend of the export driver (driver.py): `tfsep-edge export MODEL --onnx OUT.onnx`.

FP32 graphs (from a checkpoint, onnx_fp32.py) and INT8 QDQ graphs (from a `tfsep-edge quantize`
folder: onnx_int8.py writes the INT8 model described once in int8_graph.py, with the scales and
zero points PyTorch's calibration chose) are built by hand from the weights: no trace, no
Shape/Gather chains, static shapes except the batch, no stack-trace metadata, one file.

Validation, before OUT exists: onnx.checker (full check), then onnxruntime with the runtime's
own session options on the validation audio, each input alone and in one batch, by the rule
(FP32 against the float model, INT8 against the fake-quant twin); with the front end inside the
graph, its log-mel against the one front end too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfsep_edge.core.errors import TfsepError, first_line
from tfsep_edge.export import rule
from tfsep_edge.export.driver import FileFacts, export_model
from tfsep_edge.export.metadata import budget_figures, description, io_metadata, model_metadata
from tfsep_edge.export.reference import check_float_rounding_logits, check_logits, reference_logits
from tfsep_edge.export.rule import ExportValidationError
from tfsep_edge.export.source import Source

OPSETS = (17, 18, 19, 20)  # 17: first with LayerNorm/STFT-era ops ORT runs everywhere; 20: newest we test
DEFAULT_OPSET = 17
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def check_opset(opset: int) -> int:
    if opset not in OPSETS:
        raise TfsepError(f"--opset {opset}: must be one of {', '.join(map(str, OPSETS))} (default {DEFAULT_OPSET})")
    return opset


# --- building --------------------------------------------------------------------------------


def set_metadata(model, meta: dict[str, str], doc: str) -> None:
    del model.metadata_props[:]
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    model.doc_string = doc


def build_graph(source: Source, int8: bool, frontend: bool, opset: int, io: str = "float"):
    """The ModelProto with its metadata: the budget's stored bytes are counted on the graph itself.
    `io` "int8": int8 log-mel input and int8 logits (an integer model), their points in META_IO."""
    from tfsep_edge.budget.stored_bytes import onnx_constants, stored_bytes
    from tfsep_edge.export.onnx_easy_nets import build_family_fp32
    from tfsep_edge.export.onnx_int8 import build_int8

    extra: dict[str, str] = {}
    if int8:
        fq = source.artifact.fake_quant_model()
        model = build_int8(fq, frontend, opset, source.frontend, int8_io=io == "int8")
        if io == "int8":
            extra = io_metadata((float(fq.quant.scale), int(fq.quant.zero_point)), (fq.pool.scale, fq.pool.zero_point))
    else:
        try:
            model = build_family_fp32(source.float_model, frontend, opset, source.frontend)
        except TfsepError as exc:  # what the graph cannot hold (SubSpectralNorm sub-bands): name the file
            raise TfsepError(f"{source.path}: {exc}") from None
    budget = budget_figures(source.float_model, stored_bytes(onnx_constants(model)), source.frontend)
    kind, precision = ("waveform" if frontend else "logmel"), ("int8" if int8 else "fp32")
    width = source.float_model.config.width
    meta = model_metadata(kind, precision, width, source.frontend, budget) | extra
    set_metadata(model, meta, description(width, precision, kind))
    return model


# --- validation --------------------------------------------------------------------------------


def ort_session(path: Path, threads: int = 1):
    import onnxruntime as ort

    from tfsep_edge.runtime.classifier import session_options  # the runtime's options: what users' sessions get

    return ort.InferenceSession(str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"])


def graph_logmel(path: Path, feed: np.ndarray) -> np.ndarray | None:
    """The log-mel the front end inside a waveform graph computes (its internal tensor as an
    output); None when the graph has no such tensor (a waveform graph tfsep-edge did not make)."""
    import tempfile

    import onnx
    from onnx import TensorProto, helper

    from tfsep_edge.export.onnx_fp32 import FRONTEND_OUTPUT

    model = onnx.load(str(path))
    if not any(FRONTEND_OUTPUT in node.output for node in model.graph.node):
        return None
    model.graph.output.append(helper.make_tensor_value_info(FRONTEND_OUTPUT, TensorProto.FLOAT, None))
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "frontend_probe.onnx"
        onnx.save(model, str(probe))
        session = ort_session(probe)
        return session.run([FRONTEND_OUTPUT], {session.get_inputs()[0].name: feed})[0]


def validate(path: Path, source: Source, int8: bool, frontend: bool, waves: np.ndarray) -> dict:
    """onnx.checker (full), then onnxruntime against the reference by the rule; raises
    ExportValidationError. Every input also runs alone (the batch axis must not mix examples)."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # checker raises ValidationError / InferenceError
        raise ExportValidationError(f"onnx.checker rejected the graph: {first_line(exc, 200)}") from None
    mels, float_logits = reference_logits(source, waves)
    feed = waves if frontend else mels
    try:
        run = session_runner(path)
        out = run(feed)
        single = np.concatenate([run(feed[i : i + 1]) for i in range(len(feed))])
        logmel = graph_logmel(path, feed) if frontend else None
    except Exception as exc:  # onnxruntime's own errors (a graph the checker passed but ORT cannot run)
        raise ExportValidationError(f"onnxruntime cannot load or run the model: {first_line(exc, 200)}") from None
    result = {"inputs": int(len(waves))}
    if logmel is not None:
        result |= rule.check_frontend(logmel, mels)
    try:
        return result | check_logits(source, mels, float_logits, single, out, int8, frontend)
    except ExportValidationError as exc:
        if not (int8 and source.artifact is not None and source.artifact.options.integer):
            raise
        exact_miss = str(exc)
    try:  # an integer model's Q/DQ graph: onnxruntime requantizes in float (rule.py)
        return result | check_float_rounding_logits(source, mels, single, out, exact_miss)
    except ExportValidationError as exc:
        raise ExportValidationError(f"{exc} {INTEGER_ONNX_HINT}") from None


# What to do when even the float-rounding bounds are missed: the .tflite is held to the integer
# kernels exactly (LiteRT's reference kernels, TFLite Micro).
INTEGER_ONNX_HINT = "(export the integer model with --tflite, or quantize without --integer for an ONNX)"


def session_runner(path: Path):
    """float x -> float logits in a one-thread onnxruntime session of `path` (through the int8
    input and output of an --io int8 file, as the runtime feeds it)."""
    from tfsep_edge.runtime.model_info import session_logits

    return session_logits(ort_session(path), path)


# --- the backend -------------------------------------------------------------------------------


def opset_of(model) -> int | None:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def file_facts(model) -> FileFacts:
    """What a ModelProto says it is: its metadata, else its graph (a rank-2 input takes
    waveforms; Q/DQ nodes or int8 initializers make it INT8)."""
    from onnx import TensorProto

    meta = {p.key: p.value for p in model.metadata_props}
    inits = {i.name for i in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in inits)
    dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim)
    graph_int8 = any(n.op_type in QDQ_OPS for n in model.graph.node) or any(
        i.data_type in (TensorProto.INT8, TensorProto.UINT8) for i in model.graph.initializer
    )
    return FileFacts.read(meta, graph_int8, dims)


class OnnxBackend:
    name = "ONNX"
    suffix = ".onnx"
    runtime = "onnxruntime"
    validated_in = ""
    int8_io = True

    def check_request(self, out: Path, frontend: bool, opset: int | None) -> None:
        check_opset(DEFAULT_OPSET if opset is None else opset)
        if out.suffix.lower() != self.suffix:
            raise TfsepError(f"{out}: the output must end in .onnx")

    def build(self, source: Source, int8: bool, frontend: bool, opset: int | None, io: str = "float") -> bytes:
        return build_graph(source, int8, frontend, DEFAULT_OPSET if opset is None else opset, io).SerializeToString()

    def validate(self, path: Path, source: Source, int8: bool, frontend: bool, waves: np.ndarray) -> dict:
        return validate(path, source, int8, frontend, waves)

    def runner(self, path: Path):
        return session_runner(path)

    def metadata(self, data: bytes) -> dict[str, str]:
        import onnx

        return {p.key: p.value for p in onnx.load_from_string(data).metadata_props}

    def facts(self, data: bytes) -> dict:
        import onnx

        return {"opset": opset_of(onnx.load_from_string(data))}

    def headline(self, s: dict) -> str:
        what = f"{s['precision'].upper()} {self.name} (opset {s['opset']})"
        return f"{what}, input {s['input']}, {s['bytes']:,} bytes, one file"

    def checks(self, validation: dict) -> list[str]:
        return ["onnx.checker full check passed"]

    def inspect(self, path: Path) -> FileFacts:
        from tfsep_edge.budget.stored_bytes import load_onnx

        model = load_onnx(path)
        try:
            return file_facts(model)
        except StopIteration:
            raise TfsepError(f"{path}: an ONNX graph without an input; give an exported TF-SepNet model") from None


ONNX = OnnxBackend()


def export(
    model_path: str | Path,
    out: str | Path,
    int8: bool = False,
    frontend: bool = False,
    opset: int = DEFAULT_OPSET,
    timing: bool = True,
    echo=print,
    io: str = "float",
) -> dict:
    """Build, validate and atomically write the ONNX file (driver.export_model); returns a summary dict.

    Raises TfsepError (user error: exit 2) or ExportValidationError (exit 1, nothing at OUT).
    """
    return export_model(
        ONNX, model_path, out, int8=int8, frontend=frontend, opset=opset, timing=timing, echo=echo, io=io
    )
