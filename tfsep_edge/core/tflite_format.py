"""TFLite flatbuffers as files: what one is, and what it holds (metadata, operators). No torch;
the schema bindings come with the LiteRT runtime wheel (`ai_edge_litert.schema_py_generated`,
the TFLite schema compiled with the object API), so the budget count (budget/stored_bytes.py),
the runtime and the exporter (export/tflite_flatbuffer.py writes with the same module) read one
definition of the format.
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


BINARY_METADATA = ("OfflineMemoryAllocation",)  # TFLM's arena plan (export/arena_plan.py): int32s, not text


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
        if name in BINARY_METADATA:
            continue
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


FLOAT_TYPES = ("FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16")


def float_activations(data: bytes) -> dict:
    """The float runtime tensors (no stored data; the model's input and output included) of the
    first subgraph, and {op name: count} of the operators that read or write one: both empty
    for an integer-only model (what TFLite Micro's integer kernels need from input to logits)."""
    s = schema()
    names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    floats = {getattr(s.TensorType, t) for t in FLOAT_TYPES if hasattr(s.TensorType, t)}
    model = s.ModelT.InitFromPackedBuf(data, 0)
    sub = model.subgraphs[0]

    def is_float(i: int) -> bool:
        t = sub.tensors[i]
        stored = model.buffers[t.buffer].data
        return t.type in floats and (stored is None or len(stored) == 0)

    tensors = sorted({int(i) for o in sub.operators for i in [*o.inputs, *o.outputs] if i >= 0 and is_float(i)})
    tensors += [int(i) for i in [*sub.inputs, *sub.outputs] if is_float(int(i)) and int(i) not in tensors]
    ops: dict[str, int] = {}
    for o in sub.operators:
        if any(i >= 0 and is_float(int(i)) for i in [*o.inputs, *o.outputs]):
            oc = model.operatorCodes[o.opcodeIndex]
            name = names.get(max(oc.builtinCode, oc.deprecatedBuiltinCode), str(oc.builtinCode))
            ops[name] = ops.get(name, 0) + 1
    return {"tensors": [sub.tensors[i].name.decode("utf-8", "replace") for i in tensors], "ops": ops}
