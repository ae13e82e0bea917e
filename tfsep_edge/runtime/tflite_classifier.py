"""The light runtime for .tflite models: LiteRT's interpreter (XNNPACK) plus the numpy front end. No torch.

`TfliteClassifier` has OnnxClassifier's interface (runtime/classifier.py): it reads what the model takes
from the file's metadata (the same tfsep_edge.* keys as the ONNX export), checks the input
shape and type, and classifies log-mels, waveforms or files. An int8 input or output (stock
PT2E conversions) is quantized / dequantized with the (scale, zero point) stored in the file.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tfsep_edge.core import config
from tfsep_edge.core.config import DEFAULT_FRONTEND, NUM_CLASSES, FrontendConfig
from tfsep_edge.core.errors import TfsepError, check_at_least_one, first_line
from tfsep_edge.core.tflite_format import EXPORT_HINT, HINT, read_metadata, read_model
from tfsep_edge.runtime.model_info import (
    Classifier,
    ModelInfo,
    dequantize_int8,
    labels_budget_width,
    quantize_int8,
)


@contextlib.contextmanager
def native_stderr_quiet() -> Iterator[None]:
    """LiteRT's C++ side prints an INFO line on stderr when it creates the XNNPACK delegate; the
    CLI's stderr is for one-line errors and progress, so file descriptor 2 points at /dev/null
    while the interpreter is built (Python exceptions are unaffected)."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def make_interpreter(data: bytes, path: Path, threads: int):
    """LiteRT's interpreter with its default delegate (XNNPACK on CPU) and `threads` threads."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        raise TfsepError(f"{path}: running .tflite models needs ai-edge-litert; {HINT}") from None
    check_at_least_one("--threads", threads)
    try:
        with native_stderr_quiet():
            interp = Interpreter(
                model_content=data, num_threads=threads, experimental_op_resolver_type=OpResolverType.AUTO
            )
            interp.allocate_tensors()
    except Exception as exc:  # ValueError / RuntimeError from the flatbuffer verifier or op resolver
        raise TfsepError(f"{path}: not a loadable TFLite model ({first_line(exc, 160)}); {EXPORT_HINT}") from None
    return interp


def _affine(detail: dict) -> tuple[float, int] | None:
    """(scale, zero point) of an int8 input/output tensor; None for float."""
    if detail["dtype"] == np.float32:
        return None
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return (float(scale), int(zero_point)) if detail["dtype"] == np.int8 and scale > 0 else None


def model_info(path: Path, meta: dict[str, str], inp: dict, out: dict) -> ModelInfo:
    """What the metadata and the tensors say; TfsepError for a model of another shape or type."""
    try:
        frontend = FrontendConfig.from_dict(json.loads(meta[config.META_FRONTEND]))
    except (KeyError, ValueError, TypeError):
        frontend = DEFAULT_FRONTEND
    kind = meta.get(config.META_INPUT, "logmel")
    shape = [int(d) for d in inp["shape"]]
    expected = [1, frontend.n_mels, frontend.n_frames]
    if kind != "logmel" or len(shape) != 4 or shape[1:] != expected:
        raise TfsepError(
            f"{path}: input '{inp['name']}' has shape {shape}; a TF-SepNet .tflite takes (batch, "
            + ", ".join(map(str, expected))
            + f") log-mels; {EXPORT_HINT}"
        )
    if inp["dtype"] not in (np.float32, np.int8) or (inp["dtype"] == np.int8 and _affine(inp) is None):
        raise TfsepError(
            f"{path}: input '{inp['name']}' is {np.dtype(inp['dtype']).name}; a TF-SepNet .tflite takes float32 "
            f"(or int8 with a scale) log-mels; {EXPORT_HINT}"
        )
    out_shape = [int(d) for d in out["shape"]]
    if len(out_shape) != 2 or out_shape[1] != NUM_CLASSES or out["dtype"] not in (np.float32, np.int8):
        raise TfsepError(
            f"{path}: output is {np.dtype(out['dtype']).name} {out_shape}, expected (batch, {NUM_CLASSES}) "
            f"logits; {EXPORT_HINT}"
        )
    labels, budget, width = labels_budget_width(path, meta)
    signature = inp.get("shape_signature", inp["shape"])
    dynamic = len(signature) > 0 and int(signature[0]) == -1
    return ModelInfo(
        input_kind="logmel",
        labels=labels,
        frontend=frontend,
        precision=meta.get(config.META_PRECISION, "int8" if _affine(inp) or _affine(out) else "unknown"),
        width=int(width) if width and str(width).isdigit() else None,
        budget=budget if isinstance(budget, dict) else {},
        fixed_batch=None if dynamic else shape[0],
    )


class TfliteClassifier(Classifier):
    """A TF-SepNet .tflite model on LiteRT with XNNPACK (1 thread by default: the edge case)."""

    def __init__(self, path: str | Path, threads: int = 1, check: bool = True):
        self.path = Path(path)
        self.threads = threads
        data = read_model(self.path)
        self.meta = read_metadata(data)
        self.interpreter = make_interpreter(data, self.path, threads)
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise TfsepError(
                f"{self.path}: has {len(inputs)} inputs and {len(outputs)} outputs; a TF-SepNet "
                f"classifier has one of each; {EXPORT_HINT}"
            )
        self._in, self._out = inputs[0], outputs[0]
        self.info = model_info(self.path, self.meta, self._in, self._out)
        self._in_q, self._out_q = _affine(self._in), _affine(self._out)
        self._batch = int(self._in["shape"][0])
        if check:
            self.check_runs()

    def check_runs(self) -> None:
        """A silent batch of 2 (or the fixed batch) through the model, as OnnxClassifier does."""
        cfg = self.frontend
        batch = self.info.fixed_batch or 2
        out = self.run(np.zeros((batch, 1, cfg.n_mels, cfg.n_frames), np.float32))
        if out.shape != (batch, NUM_CLASSES):
            raise TfsepError(f"{self.path}: returns {list(out.shape)} for a batch of {batch}; {EXPORT_HINT}")

    def _resize(self, batch: int) -> None:
        idx = self._in["index"]
        self.interpreter.resize_tensor_input(idx, [batch, *self._in["shape"][1:]], strict=True)
        self.interpreter.allocate_tensors()
        self._batch = batch

    def _infer(self, x: np.ndarray) -> np.ndarray:
        if len(x) != self._batch:
            self._resize(len(x))
        if self._in_q is not None:
            x = quantize_int8(x, self._in_q)
        try:
            self.interpreter.set_tensor(self._in["index"], x)
            self.interpreter.invoke()
        except Exception as exc:  # a model that loaded but fails on this input
            raise TfsepError(
                f"{self.path}: LiteRT failed on a {x.shape} input ({first_line(exc, 200)}); {EXPORT_HINT}"
            ) from None
        out = self.interpreter.get_tensor(self._out["index"])
        if self._out_q is not None:
            return dequantize_int8(out, self._out_q)
        return out.copy()
