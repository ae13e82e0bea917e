"""Writing TFLite flatbuffers: a graph assembled tensor by tensor (export/tflite_fp32.py,
tflite_int8.py) and packed with the schema bindings core/tflite_format.py reads with."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tfsep_edge.core.tflite_format import FILE_IDENTIFIER, schema

_DTYPES = {
    np.dtype(np.float32): "FLOAT32",
    np.dtype(np.int32): "INT32",
    np.dtype(np.int8): "INT8",
    np.dtype(np.int16): "INT16",
    np.dtype(np.int64): "INT64",
}


@dataclass(frozen=True)
class Quant:
    """Affine quantization of a tensor: real = scale * (q - zero_point); per channel along `axis`."""

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int = 0

    @classmethod
    def per_tensor(cls, scale: float, zero_point: int) -> Quant:
        return cls((float(scale),), (int(zero_point),))


@dataclass
class Tensor:
    """A tensor of the graph being built: its index, shape (batch first for activations), dtype."""

    index: int
    shape: tuple[int, ...]
    dtype: str
    quant: Quant | None = None


@dataclass
class FlatGraph:
    """Collects tensors, constant buffers and operators of one subgraph, then packs the model.

    Activations get shape_signature -1 in the batch axis (the interpreter resizes them); the
    stored shape uses batch 1.
    """

    tensors: list = field(default_factory=list)
    buffers: list = field(default_factory=list)
    operators: list = field(default_factory=list)
    opcodes: dict = field(default_factory=dict)
    names: dict = field(default_factory=dict)
    share_constants: bool = False  # one tensor for equal constants (same bytes, dtype, shape, quant)
    _shared: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.s = schema()
        self.buffers.append(self.s.BufferT())  # buffer 0: the empty buffer every tensor without data uses

    def _name(self, base: str) -> str:
        n = self.names.get(base, 0)
        self.names[base] = n + 1
        return base if n == 0 else f"{base}_{n}"

    def _tensor(self, name: str, shape, dtype: str, buffer: int, quant: Quant | None, batch: bool) -> Tensor:
        t = self.s.TensorT()
        t.name = self._name(name)
        t.shape = np.array([1 if batch and i == 0 else d for i, d in enumerate(shape)], np.int32)
        if batch:
            t.shapeSignature = np.array([-1, *shape[1:]], np.int32)
        t.type = getattr(self.s.TensorType, dtype)
        t.buffer = buffer
        if quant is not None:
            q = self.s.QuantizationParametersT()
            q.scale = np.array(quant.scale, np.float32)
            q.zeroPoint = np.array(quant.zero_point, np.int64)
            q.quantizedDimension = quant.axis
            t.quantization = q
        self.tensors.append(t)
        return Tensor(len(self.tensors) - 1, tuple(int(d) for d in shape), dtype, quant)

    def activation(self, name: str, shape, dtype: str = "FLOAT32", quant: Quant | None = None) -> Tensor:
        """A runtime tensor whose first axis is the batch."""
        return self._tensor(name, shape, dtype, 0, quant, batch=True)

    def const(self, name: str, array: np.ndarray, quant: Quant | None = None) -> Tensor:
        """A constant tensor; with `share_constants`, the tensor of an equal constant made
        before, if any: on a microcontroller every tensor costs interpreter memory."""
        array = np.ascontiguousarray(array)
        key = (array.tobytes(), array.dtype.str, array.shape, quant)
        if self.share_constants and key in self._shared:
            return self._shared[key]
        buf = self.s.BufferT()
        buf.data = np.frombuffer(array.tobytes(), np.uint8)
        self.buffers.append(buf)
        t = self._tensor(name, array.shape, _DTYPES[array.dtype], len(self.buffers) - 1, quant, batch=False)
        self._shared[key] = t
        return t

    def op(self, code: str, inputs: list, outputs: list[Tensor], options=None, version: int = 1) -> None:
        """One operator; `inputs` are Tensors (or None for an omitted optional input)."""
        key = (code, version)
        if key not in self.opcodes:
            oc = self.s.OperatorCodeT()
            builtin = getattr(self.s.BuiltinOperator, code)
            oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = builtin, min(builtin, 127), version
            self.opcodes[key] = (len(self.opcodes), oc)
        o = self.s.OperatorT()
        o.opcodeIndex = self.opcodes[key][0]
        o.inputs = np.array([-1 if t is None else t.index for t in inputs], np.int32)
        o.outputs = np.array([t.index for t in outputs], np.int32)
        if options is not None:
            o.builtinOptionsType = getattr(self.s.BuiltinOptions, type(options).__name__[:-1])
            o.builtinOptions = options
        self.operators.append(o)

    def options(self, kind: str, **values):
        """A builtin options object, e.g. options("Conv2DOptions", padding=VALID)."""
        obj = getattr(self.s, kind + "T")()
        for k, v in values.items():
            if not hasattr(obj, k):
                raise AttributeError(f"{kind} has no field {k}")
            setattr(obj, k, v)
        return obj

    def pack(
        self, inputs: list[Tensor], outputs: list[Tensor], metadata: dict[str, str | bytes], description: str
    ) -> bytes:
        import flatbuffers

        sub = self.s.SubGraphT()
        sub.tensors, sub.operators, sub.name = self.tensors, self.operators, "main"
        sub.inputs = np.array([t.index for t in inputs], np.int32)
        sub.outputs = np.array([t.index for t in outputs], np.int32)
        model = self.s.ModelT()
        model.version = 3
        model.description = description
        model.subgraphs = [sub]
        model.operatorCodes = [oc for _, oc in sorted(self.opcodes.values(), key=lambda p: p[0])]
        model.buffers = list(self.buffers)
        model.metadata = []
        for key, value in metadata.items():
            buf = self.s.BufferT()
            raw = value if isinstance(value, bytes) else value.encode("utf-8")
            buf.data = np.frombuffer(raw, np.uint8)
            model.buffers.append(buf)
            entry = self.s.MetadataT()
            entry.name, entry.buffer = key, len(model.buffers) - 1
            model.metadata.append(entry)
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
        return bytes(builder.Output())
