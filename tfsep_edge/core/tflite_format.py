"""TFLite flatbuffers as files: what one is, and what it holds (metadata, operators, stored
constants by type). No torch; the schema bindings come with the LiteRT runtime wheel
(`ai_edge_litert.schema_py_generated`, the TFLite schema compiled with the object API), so the
budget count, the runtime and the exporter (export/tflite_flatbuffer.py writes with the same
module) read one definition of the format.
"""

from __future__ import annotations

from pathlib import Path

from tfsep_edge.core.errors import TfsepError
from tfsep_edge.core.kinds import TFLITE_ID as FILE_IDENTIFIER  # spelled once, in core.kinds

HINT = "install the runtime extra: pip install 'tfsep-edge[tflite]'"
EXPORT_HINT = "export it with `tfsep-edge export MODEL --tflite OUT.tflite`"


def schema():
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:
        raise TfsepError(f"LiteRT (.tflite) support needs ai-edge-litert; {HINT}") from None
    return schema_py_generated


def read_model(path: Path) -> bytes:
    """The bytes of the .tflite file `path`, checked whole: every reader of them (metadata,
    operators, stored bytes, the LiteRT runtime) may follow any offset in it."""
    if path.is_dir():
        raise TfsepError(f"{path}: is a folder; give the .tflite model file ({EXPORT_HINT})")
    if not path.is_file():
        raise TfsepError(f"{path}: no such model file")
    data = path.read_bytes()
    if not is_tflite_bytes(data):
        raise TfsepError(f"{path}: not a TFLite model (no TFL3 flatbuffer identifier); {EXPORT_HINT}")
    check_complete(data, path)
    return data


def check_complete(data: bytes, path: Path) -> None:
    """TfsepError naming `path` unless every table, vector and string of the flatbuffer lies
    inside `data`. The schema's Python reader follows offsets without checking them (a file cut
    short fails deep inside it with a struct.error), so the whole model is unpacked once here,
    where the failure can still be told apart from a bug and named."""
    try:
        schema().ModelT.InitFromPackedBuf(data, 0)
    except TfsepError:
        raise
    except Exception:  # whatever the generated reader trips on: struct.error, ValueError, ...
        raise TfsepError(
            f"{path}: a .tflite cut short or damaged (its flatbuffer does not fit in the file's {len(data):,} "
            f"bytes); copy it again or {EXPORT_HINT}"
        ) from None


def is_tflite_bytes(data: bytes) -> bool:
    """The flatbuffer file identifier of a TFLite model sits at bytes 4..8."""
    return len(data) >= 8 and data[4:8] == FILE_IDENTIFIER


def read_metadata(data: bytes) -> dict[str, str]:
    """The model's `metadata` entries (name -> UTF-8 text) of a TFLite flatbuffer."""
    s = schema()
    model = s.Model.GetRootAs(data, 0)
    out = {}
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        buf = model.Buffers(entry.Buffer())
        raw = buf.DataAsNumpy()
        name = entry.Name().decode("utf-8", "replace")
        try:
            out[name] = bytes(raw).decode("utf-8") if not isinstance(raw, int) else ""
        except UnicodeDecodeError:  # a binary entry (e.g. min_runtime_version of other converters)
            continue
    return out


def operator_counts(data: bytes) -> dict[str, int]:
    """{builtin op name: count} of the first subgraph (benchmarks and tests read this)."""
    s = schema()
    names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    model = s.ModelT.InitFromPackedBuf(data, 0)
    counts: dict[str, int] = {}
    for o in model.subgraphs[0].operators:
        oc = model.operatorCodes[o.opcodeIndex]
        name = names.get(max(oc.builtinCode, oc.deprecatedBuiltinCode), str(oc.builtinCode))
        counts[name] = counts.get(name, 0) + 1
    return counts


# Which constant inputs of which ops are model parameters (the rest: axes, shapes, paddings).
WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
ELEMENTWISE_OPS = ("ADD", "SUB", "MUL", "SQUARED_DIFFERENCE")
STORED_TYPES = ("int8_weights", "int32_biases", "float_qparams", "float_weights", "float_norm_params")


def stored_bytes(data: bytes) -> dict:
    """Bytes of the stored constants by type, as stored_bytes.onnx_stored_bytes counts an ONNX file.

    int8_weights / int32_biases: conv and fully-connected filters and biases; float_weights: the
    same in float; float_norm_params: float constants of the elementwise ops (AdaResNorm's folded
    constants, eps); float_qparams: 4 bytes per scale and per zero point of every quantized
    tensor; graph_constants (not in `total`): integer axes, shapes, paddings.
    """
    s = schema()
    model = s.ModelT.InitFromPackedBuf(data, 0)
    names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    sub = model.subgraphs[0]
    role: dict[int, str] = {}
    for o in sub.operators:
        oc = model.operatorCodes[o.opcodeIndex]
        op = names.get(max(oc.builtinCode, oc.deprecatedBuiltinCode), "")
        for pos, t in enumerate(o.inputs if o.inputs is not None else []):
            if t < 0:
                continue
            if op in WEIGHT_OPS and pos in (1, 2):
                role.setdefault(int(t), "weight")
            elif op in ELEMENTWISE_OPS:
                role.setdefault(int(t), "elementwise")
    out = dict.fromkeys(STORED_TYPES, 0) | {"graph_constants": 0}
    for i, t in enumerate(sub.tensors):
        q = t.quantization
        if q is not None and q.scale is not None:
            out["float_qparams"] += 4 * len(q.scale) + 4 * (len(q.zeroPoint) if q.zeroPoint is not None else 0)
        buf = model.buffers[t.buffer]
        if buf.data is None or len(buf.data) == 0:
            continue
        nbytes = len(buf.data)
        kind = role.get(i)
        if kind == "weight" and t.type == s.TensorType.INT8:
            out["int8_weights"] += nbytes
        elif kind == "weight" and t.type == s.TensorType.INT32:
            out["int32_biases"] += nbytes
        elif kind == "weight" and t.type == s.TensorType.FLOAT32:
            out["float_weights"] += nbytes
        elif kind == "elementwise" and t.type == s.TensorType.FLOAT32:
            out["float_norm_params"] += nbytes
        else:
            out["graph_constants"] += nbytes
    out["total"] = sum(out[k] for k in STORED_TYPES)
    return out
