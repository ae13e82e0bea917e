"""Bytes of the weights a graph file really stores, by type: one count for .onnx and .tflite alike.

A reader per format (`onnx_constants`, `tflite_constants`) yields one `Stored` (name, type,
bytes) per stored constant, typed by what consumes it; `stored_bytes` sums them. No torch.
  int8_weights       int8/uint8 conv and fully-connected filters (ONNX: dequantized by a DequantizeLinear)
  int32_biases       int32 conv biases
  float_qparams      scales and zero points (ONNX: the QuantizeLinear/DequantizeLinear inputs;
                     TFLite: 4 bytes per scale and per zero point of every quantized tensor)
  float_weights      float conv / Gemm / MatMul / fully-connected weights and biases (FP32 model, float islands)
  float_norm_params  float constants of the elementwise ops (AdaResNorm's folded constants, eps)
  int16_norm_params  int16 constants of the elementwise ops (an integer model's int16 norms)
Not model parameters, reported apart and left out of `total`: the front end's constants
(ONNX initializers named `fe.*`: DFT bases, window, mel filterbank) and graph constants
(integer axes, shapes, paddings, split sizes, gather indices; `const.*` rows of ones that spell
out broadcasts).
A quantized folder is counted elsewhere: quant.artifact.storage_bytes of its PyTorch INT8 model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from tfsep_edge.core.config import META_BUDGET, META_PRECISION, META_WIDTH
from tfsep_edge.core.errors import TfsepError, first_line
from tfsep_edge.core.kinds import Kind

MODEL_TYPES = (
    "int8_weights",
    "int32_biases",
    "float_qparams",
    "float_weights",
    "float_norm_params",
    "int16_norm_params",
)
OTHER_TYPES = ("frontend_constants", "graph_constants")
EXPORT_HINT = "export it with `tfsep-edge export`"


class Stored(NamedTuple):
    """One stored constant: its name in the file, its type (MODEL_TYPES or OTHER_TYPES), its bytes."""

    name: str
    kind: str
    nbytes: int


def stored_bytes(constants: Iterable[Stored]) -> dict:
    """Bytes by type of a file's constants; `total` sums the model's parameter types."""
    out = dict.fromkeys(MODEL_TYPES + OTHER_TYPES, 0)
    for c in constants:
        out[c.kind] += c.nbytes
    out["total"] = sum(out[k] for k in MODEL_TYPES)
    return out


# --- ONNX ----------------------------------------------------------------------------------------

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
ONNX_WEIGHT_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")


def onnx_constants(model) -> Iterator[Stored]:
    """Every initializer of a ModelProto, typed by its name and what consumes it."""
    from onnx import TensorProto, numpy_helper

    consumers: dict[str, list[tuple[str, int]]] = {}
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node.op_type, i))
    ints = (TensorProto.INT8, TensorProto.UINT8, TensorProto.INT32)
    floats = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE)
    for init in model.graph.initializer:
        uses = consumers.get(init.name, [])
        if init.name.startswith("fe."):
            kind = "frontend_constants"
        elif init.name.startswith("const."):  # structural constants (rows of ones that spell out broadcasts)
            kind = "graph_constants"
        elif any(op in QDQ_OPS and i > 0 for op, i in uses):
            kind = "float_qparams"
        elif any(op == "DequantizeLinear" and i == 0 for op, i in uses) and init.data_type in ints:
            kind = "int32_biases" if init.data_type == TensorProto.INT32 else "int8_weights"
        elif init.data_type not in floats:
            kind = "graph_constants"
        elif any(op in ONNX_WEIGHT_OPS and i > 0 for op, i in uses):
            kind = "float_weights"
        else:
            kind = "float_norm_params"
        yield Stored(init.name, kind, numpy_helper.to_array(init).nbytes)


def load_onnx(path: Path):
    import onnx

    if not path.is_file():
        raise TfsepError(f"{path}: no such ONNX file")
    try:
        return onnx.load(str(path))
    except Exception as exc:
        reason = first_line(exc, 120)
        raise TfsepError(f"{path}: not a readable ONNX file ({reason}); {EXPORT_HINT}") from None


# --- TFLite --------------------------------------------------------------------------------------

TFLITE_WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")  # inputs 1, 2: filter, bias
ELEMENTWISE_OPS = ("ADD", "SUB", "MUL", "SQUARED_DIFFERENCE")


def tflite_constants(data: bytes) -> Iterator[Stored]:
    """Every constant buffer of a TFLite flatbuffer's first subgraph, typed by its consumer and
    dtype, and the quantization parameters of every quantized tensor."""
    from tfsep_edge.core.tflite_format import schema

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
            if op in TFLITE_WEIGHT_OPS and pos in (1, 2):
                role.setdefault(int(t), "weight")
            elif op in ELEMENTWISE_OPS:
                role.setdefault(int(t), "elementwise")
    typed = {
        ("weight", s.TensorType.INT8): "int8_weights",
        ("weight", s.TensorType.INT32): "int32_biases",
        ("weight", s.TensorType.FLOAT32): "float_weights",
        ("elementwise", s.TensorType.FLOAT32): "float_norm_params",
        ("elementwise", s.TensorType.INT16): "int16_norm_params",
    }
    for i, t in enumerate(sub.tensors):
        name = t.name.decode("utf-8", "replace") if isinstance(t.name, bytes) else str(t.name)
        q = t.quantization
        if q is not None and q.scale is not None:
            zero_points = len(q.zeroPoint) if q.zeroPoint is not None else 0
            yield Stored(f"{name}.qparams", "float_qparams", 4 * len(q.scale) + 4 * zero_points)
        buf = model.buffers[t.buffer]
        if buf.data is not None and len(buf.data):
            yield Stored(name, typed.get((role.get(i), t.type), "graph_constants"), len(buf.data))


# --- any graph file ------------------------------------------------------------------------------


@dataclass
class GraphFile:
    """What `budget` and export read off an exported file: its metadata and stored bytes by type."""

    path: Path
    format: str  # "ONNX" or "TFLite", as the reports name it
    meta: dict[str, str]
    stored: dict

    @property
    def precision(self) -> str:
        return self.meta.get(META_PRECISION, "unknown precision")

    def width(self) -> int:
        """The model width from the export metadata (the float model's config)."""
        try:
            return int(self.meta[META_WIDTH])
        except (KeyError, ValueError):
            raise TfsepError(f"{self.path}: no tfsep-edge width in its metadata; {EXPORT_HINT}") from None

    def model_config(self) -> dict:
        """The float model's config (family, norm, depth) from the budget metadata; {} in files
        written before families (a TF-SepNet with AdaResNorm)."""
        try:
            return json.loads(self.meta.get(META_BUDGET, "{}")).get("model") or {}
        except (ValueError, AttributeError):
            return {}

    def shuffle_groups(self) -> int | None:
        """A non-default shuffle-group count, from the budget metadata when present."""
        try:
            return json.loads(self.meta.get(META_BUDGET, "{}")).get("shuffle_groups")
        except (ValueError, AttributeError):
            return None


def read_graph_file(path: Path, kind: Kind) -> GraphFile:
    """An exported .onnx or .tflite (`kind` from core.kinds.artifact_kind) -> GraphFile."""
    if kind is Kind.ONNX:
        model = load_onnx(path)
        meta = {p.key: p.value for p in model.metadata_props}
        return GraphFile(path, "ONNX", meta, stored_bytes(onnx_constants(model)))
    if kind is Kind.TFLITE:
        from tfsep_edge.core.tflite_format import read_metadata, read_model

        data = read_model(path)
        try:
            meta, stored = read_metadata(data), stored_bytes(tflite_constants(data))
        except TfsepError:
            raise
        except Exception as exc:  # a cut or corrupted flatbuffer fails deep in the bindings
            raise TfsepError(f"{path}: not a readable TFLite model ({first_line(exc, 80)}); {EXPORT_HINT}") from None
        return GraphFile(path, "TFLite", meta, stored)
    raise TfsepError(f"{path}: {kind.described}, not an exported .onnx or .tflite model")
