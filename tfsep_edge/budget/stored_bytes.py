"""Bytes of the weights a model really stores, by type, for `budget` on ONNX files and quantized folders.

ONNX (no torch needed): every initializer is classified by what consumes it:
  int8_weights       int8/uint8 tensors dequantized by a DequantizeLinear (conv weights)
  int32_biases       int32 tensors dequantized by a DequantizeLinear (conv biases)
  float_qparams      scales and zero points of QuantizeLinear/DequantizeLinear
  float_weights      float tensors used as Conv/Gemm/MatMul weights or biases (FP32 model, float islands)
  float_norm_params  float tensors of the elementwise ops (AdaResNorm's precomputed rho*gamma,
                     (1-rho)*gamma, beta, eps)
Not model parameters, reported apart and left out of `total`: the front end's constants
(initializers named `fe.*`: DFT bases, window, mel filterbank) and graph constants (integer
axes, split sizes, gather indices; `const.*` rows of ones that spell out broadcasts).
A quantized folder: quantize.storage_bytes of its PyTorch INT8 model (the quantize step's count).
"""

from __future__ import annotations

from pathlib import Path

from tfsep_edge.core.errors import TfsepError, first_line

MODEL_TYPES = ("int8_weights", "int32_biases", "float_qparams", "float_weights", "float_norm_params")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
WEIGHT_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")


def onnx_stored_bytes(model) -> dict:
    """ModelProto -> bytes by type (see module doc); `total` sums the model's parameter types."""
    from onnx import TensorProto, numpy_helper

    consumers: dict[str, list[tuple[str, int]]] = {}
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node.op_type, i))
    out = dict.fromkeys(MODEL_TYPES, 0)
    out["frontend_constants"] = 0
    out["graph_constants"] = 0
    ints = (TensorProto.INT8, TensorProto.UINT8, TensorProto.INT32)
    for init in model.graph.initializer:
        nbytes = numpy_helper.to_array(init).nbytes
        uses = consumers.get(init.name, [])
        if init.name.startswith("fe."):
            key = "frontend_constants"
        elif init.name.startswith("const."):  # structural constants (rows of ones that spell out broadcasts)
            key = "graph_constants"
        elif any(op in QDQ_OPS and i > 0 for op, i in uses):
            key = "float_qparams"
        elif any(op == "DequantizeLinear" and i == 0 for op, i in uses) and init.data_type in ints:
            key = "int32_biases" if init.data_type == TensorProto.INT32 else "int8_weights"
        elif init.data_type not in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE):
            key = "graph_constants"
        elif any(op in WEIGHT_OPS and i > 0 for op, i in uses):
            key = "float_weights"
        else:
            key = "float_norm_params"
        out[key] += nbytes
    out["total"] = sum(out[k] for k in MODEL_TYPES)
    return out


def load_onnx(path: Path):
    import onnx

    if not path.is_file():
        raise TfsepError(f"{path}: no such ONNX file")
    try:
        return onnx.load(str(path))
    except Exception as exc:
        reason = first_line(exc, 120)
        raise TfsepError(f"{path}: not a readable ONNX file ({reason}); export one with `tfsep-edge export`") from None


def onnx_width(model, path: Path) -> int:
    """The model width from the export metadata (the float model's config)."""
    from tfsep_edge.core.config import META_WIDTH

    meta = {p.key: p.value for p in model.metadata_props}
    try:
        return int(meta[META_WIDTH])
    except (KeyError, ValueError):
        raise TfsepError(f"{path}: no tfsep-edge width in its metadata; export it with `tfsep-edge export`") from None
