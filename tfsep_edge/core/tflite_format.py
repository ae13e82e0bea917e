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
    if path.is_dir():
        raise TfsepError(f"{path}: is a folder; give the .tflite model file ({EXPORT_HINT})")
    if not path.is_file():
        raise TfsepError(f"{path}: no such model file")
    data = path.read_bytes()
    if not is_tflite_bytes(data):
        raise TfsepError(f"{path}: not a TFLite model (no TFL3 flatbuffer identifier); {EXPORT_HINT}")
    return data


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
