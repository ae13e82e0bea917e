"""TensorFlow Lite for Microcontrollers on the host: load a .tflite in TFLM's interpreter (the
portable reference kernels, as `pip install tflite-micro` ships them), run it, measure the
smallest tensor arena it needs, and compare it with LiteRT's reference kernels. No torch.

What this answers is whether a file runs on a microcontroller's interpreter at all, with which
RAM, and whether TFLM computes exactly what LiteRT's reference kernels compute. It says
nothing about speed: on a Cortex-M, TFLM runs CMSIS-NN kernels where it has them.

Facts this module relies on (measured with tflite-micro 0.dev20261023 on x86-64):
- a too-small arena makes construction raise RuntimeError ("TFLM failed to allocate tensors")
  after TFLM prints the reason on the native stderr ("Failed to resize buffer. Requested: ...");
- an arena below ~480 bytes (too small for the allocator itself) is a segmentation fault, not
  an exception. `MicroInterpreter` refuses arenas below MIN_ARENA for that reason, and
  `smallest_arena` runs its probes in a child process, so no probe can take the caller down.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tfsep_edge.core.errors import TfsepError, first_line
from tfsep_edge.core.rounding import quantize_affine
from tfsep_edge.core.tflite_format import EXPORT_HINT, is_tflite_bytes, read_model

MICRO_HINT = "install the extra: pip install 'tfsep-edge[micro]'"
ARENA_STEP = 16  # TFLM aligns its allocations to 16 bytes; the search steps by as much
MIN_ARENA = 1024  # below ~480 bytes TFLM's allocator crashes the process (segfault) on x86-64
MAX_ARENA = 1 << 26  # 64 MiB: a model that does not run with this does not run for another reason
DEFAULT_ARENA = 4 << 20  # what MicroInterpreter uses when no size is given (host checks only)

Model = bytes | str | Path


def _runtime():
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise TfsepError(f"TFLite Micro checks need tflite-micro; {MICRO_HINT}") from None
    return runtime


def model_bytes(model: Model) -> tuple[bytes, str]:
    """(flatbuffer bytes, a name for messages) of a .tflite given as bytes or a path."""
    if isinstance(model, bytes | bytearray | memoryview):
        data = bytes(model)
        if not is_tflite_bytes(data):
            raise TfsepError(f"<model bytes>: not a TFLite model (no TFL3 flatbuffer identifier); {EXPORT_HINT}")
        return data, "<model bytes>"
    path = Path(model)
    return read_model(path), str(path)


def flash_bytes(model: Model) -> int:
    """The flash a microcontroller build spends on the model: the flatbuffer's size in bytes
    (TFLM reads weights in place from it; the interpreter's code is not counted)."""
    return len(model_bytes(model)[0])


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[list[str]]:
    """Point file descriptor 2 at a temporary file while the block runs and hand back what TFLM's
    C++ side printed there (its only channel for the reason of a failure) as lines in the list."""
    lines: list[str] = []
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all
        yield lines
        return
    with tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines += [ln for ln in sink.read().decode("utf-8", "replace").splitlines() if ln.strip()]


def _reason(exc: BaseException, native: list[str]) -> str:
    """The most telling line of a TFLM failure: the native reason if it printed one."""
    return native[0][:200] if native else first_line(exc, 200)


def _quant(detail: dict) -> tuple[float, int] | None:
    """(scale, zero point) of a per-tensor quantized TFLM tensor detail; None for float."""
    q = detail.get("quantization_parameters") or {}
    scales, zeros = q.get("scales", []), q.get("zero_points", [])
    if np.dtype(detail["dtype"]) == np.float32 or len(scales) != 1:
        return None
    return float(scales[0]), int(zeros[0]) if len(zeros) else 0


def dequantize(x: np.ndarray, q: tuple[float, int]) -> np.ndarray:
    return (x.astype(np.float32) - q[1]) * np.float32(q[0])


class MicroInterpreter:
    """One .tflite in TFLM's interpreter; batch 1 inside, so `run` feeds a batch sample by sample.

    `arena_size` is the tensor arena in bytes (default DEFAULT_ARENA, plenty for TF-SepNet on
    the host); an arena too small for the model raises TfsepError with TFLM's reason.
    """

    def __init__(self, model: Model, arena_size: int | None = None):
        self.data, self.name = model_bytes(model)
        self.arena_size = DEFAULT_ARENA if arena_size is None else int(arena_size)
        if self.arena_size < MIN_ARENA:
            raise TfsepError(
                f"{self.name}: arena of {self.arena_size} bytes is below {MIN_ARENA}, too small for TFLM's "
                "own allocator; give a larger arena (smallest_arena measures the one the model needs)"
            )
        runtime = _runtime()
        try:
            with native_stderr_captured() as native:
                self.interpreter = runtime.Interpreter.from_bytes(self.data, arena_size=self.arena_size)
        except Exception as exc:  # RuntimeError (allocation, unsupported op), struct.error (bad flatbuffer)
            raise TfsepError(
                f"{self.name}: TFLite Micro cannot load it with a {self.arena_size}-byte arena "
                f"({_reason(exc, native)}); a larger arena or an op TFLM supports"
            ) from None
        self.input = self.interpreter.get_input_details(0)
        self.output = self.interpreter.get_output_details(0)
        self.input_dtype = np.dtype(self.input["dtype"])
        self.output_dtype = np.dtype(self.output["dtype"])
        self.input_shape = tuple(int(d) for d in self.input["shape"])
        self.input_quant, self.output_quant = _quant(self.input), _quant(self.output)

    def invoke_raw(self, sample: np.ndarray) -> np.ndarray:
        """One sample in the input tensor's own type and shape -> the output tensor, raw."""
        try:
            with native_stderr_captured() as native:
                self.interpreter.set_input(np.ascontiguousarray(sample, self.input_dtype).reshape(self.input_shape), 0)
                self.interpreter.invoke()
        except Exception as exc:
            raise TfsepError(f"{self.name}: TFLite Micro failed to run it ({_reason(exc, native)})") from None
        return np.array(self.interpreter.get_output(0), copy=True)

    def run(self, x: np.ndarray, raw: bool = False) -> np.ndarray:
        """A batch (batch first; each sample has the input's shape without its batch axis) through
        the model, one sample at a time; the outputs stacked.

        Float samples meet an int8 input by quantizing with the input's (scale, zero point), and an
        int8 output is dequantized; `raw=True` feeds x as the input type and returns raw outputs.
        """
        x = np.asarray(x)
        per_sample = self.input_shape[1:]
        if x.ndim != len(self.input_shape) or tuple(x.shape[1:]) != per_sample:
            raise TfsepError(
                f"{self.name}: input of shape {list(x.shape)}; the model takes (batch, "
                + ", ".join(map(str, per_sample))
                + ")"
            )
        if not raw and self.input_quant is not None and x.dtype.kind == "f":
            x = quantize_affine(x, self.input_quant, self.input_dtype)
        outs = np.stack([self.invoke_raw(sample[None]) for sample in x]).reshape(len(x), *self.output["shape"][1:])
        if not raw and self.output_quant is not None:
            return dequantize(outs, self.output_quant)
        return outs


# The probe a child process runs for smallest_arena: model file in argv[1], one arena size per
# line on stdin, "ok" / "fail <reason>" per line on stdout. Native stderr goes to /dev/null
# (the parent passes DEVNULL), the reason comes from the Python exception.
_PROBE = r"""
import sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime
data = open(sys.argv[1], "rb").read()
for line in sys.stdin:
    try:
        it = runtime.Interpreter.from_bytes(data, arena_size=int(line))
        d = it.get_input_details(0)
        it.set_input(np.zeros(d["shape"], d["dtype"]), 0)
        it.invoke()
        del it
        answer = "ok"
    except Exception as exc:
        answer = "fail " + (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    print(answer, flush=True)
"""


class _Prober:
    """A child process that answers "does an arena of N bytes work?"; restarted if a probe kills it."""

    def __init__(self, data: bytes):
        _runtime()  # the install hint here, not a cryptic failure in the child
        self._dir = tempfile.TemporaryDirectory(prefix="tfsep-micro-")
        self.model = Path(self._dir.name) / "model.tflite"
        self.model.write_bytes(data)
        self.proc: subprocess.Popen | None = None
        self.crashes = 0
        self.probes = 0

    def _start(self) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        return subprocess.Popen(
            [sys.executable, "-c", _PROBE, str(self.model)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )

    def fits(self, arena: int) -> tuple[bool, str]:
        """(works, reason): construction and one invoke of a zero input with `arena` bytes."""
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        self.probes += 1
        try:
            self.proc.stdin.write(f"{arena}\n")
            self.proc.stdin.flush()
            answer = self.proc.stdout.readline().strip()
        except (BrokenPipeError, OSError):
            answer = ""
        if not answer:  # the child died (a segfault or abort inside TFLM)
            code = self.proc.wait()
            self.proc = None
            self.crashes += 1
            return False, f"the interpreter crashed the process (exit {code})"
        return answer == "ok", answer[5:]

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._dir.cleanup()


def arena_fits(model: Model, arena: int) -> bool:
    """Whether TFLM builds the interpreter and runs one zero input with `arena` bytes (probed in a
    child process, so even an arena that crashes TFLM answers False)."""
    data, _ = model_bytes(model)
    prober = _Prober(data)
    try:
        return prober.fits(int(arena))[0]
    finally:
        prober.close()


def smallest_arena(model: Model, start: int = 64 << 10) -> int:
    """The smallest tensor arena (bytes, a multiple of ARENA_STEP) with which TFLM's interpreter
    builds the model and runs one inference: a binary search on `arena_size`, every probe a real
    construction plus invoke in a child process.

    What the figure includes: everything TFLM puts in the arena, i.e. the activation tensors as
    its greedy memory planner lays them out, the kernels' persistent and scratch buffers (those
    of the reference kernels: CMSIS-NN's differ), and the interpreter's own bookkeeping (eval
    tensors, node and registration structs, the allocator, here the Python wrapper's
    RecordingMicroAllocator) with the struct sizes of the host that measures it: x86-64
    pointers are 8 bytes, a 32-bit Cortex-M's 4, so the bookkeeping part (~40 KB for today's
    176-op INT8 file) is smaller on the device. Not included: the model's flatbuffer (flash,
    see flash_bytes), the stack, the application's buffers (the log-mel input it computes).

    TfsepError if the model does not run even with MAX_ARENA (an op TFLM lacks, a bad file).
    """
    data, name = model_bytes(model)
    prober = _Prober(data)
    try:
        works, reason = prober.fits(MAX_ARENA)
        if not works:
            raise TfsepError(f"{name}: TFLite Micro cannot run it with any arena ({reason}); {EXPORT_HINT}")
        lo, hi = 0, MAX_ARENA // ARENA_STEP  # in steps: lo fails (or is unknown), hi works
        probe = max(start // ARENA_STEP, 1)
        while probe < hi:  # doubling first: a handful of probes near the answer, not 22 from 64 MiB
            if prober.fits(probe * ARENA_STEP)[0]:
                hi = probe
                break
            lo = probe
            probe *= 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if prober.fits(mid * ARENA_STEP)[0]:
                hi = mid
            else:
                lo = mid
        return hi * ARENA_STEP
    finally:
        prober.close()


def reference_interpreter(model: Model):
    """LiteRT's interpreter with its builtin reference kernels (no XNNPACK, no optimized kernels):
    the kernels TFLM's portable kernels are written to equal."""
    data, name = model_bytes(model)
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        raise TfsepError(
            f"{name}: the reference comparison needs ai-edge-litert; pip install 'tfsep-edge[tflite]'"
        ) from None
    from tfsep_edge.runtime.tflite_classifier import native_stderr_quiet

    try:
        with native_stderr_quiet():
            interp = Interpreter(
                model_content=data, num_threads=1, experimental_op_resolver_type=OpResolverType.BUILTIN_REF
            )
            interp.allocate_tensors()
    except Exception as exc:
        raise TfsepError(f"{name}: LiteRT cannot load it ({first_line(exc, 160)}); {EXPORT_HINT}") from None
    return interp


def reference_logits(model: Model, x: np.ndarray) -> np.ndarray:
    """Float log-mels through LiteRT's reference kernels (quantized onto an int8 input's grid as
    the runtime does), float logits out (an int8 output dequantized)."""
    interp = reference_interpreter(model)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    x = np.asarray(x, np.float32)
    if np.dtype(inp["dtype"]) != np.float32:
        x = quantize_affine(x, inp["quantization"], inp["dtype"])
    raw = run_reference_raw(interp, x)
    return raw if np.dtype(out["dtype"]) == np.float32 else dequantize(raw, out["quantization"])


def run_reference_raw(interp, x: np.ndarray) -> np.ndarray:
    """A batch of raw inputs (the input tensor's type) through LiteRT's reference kernels, one
    sample at a time (as TFLM runs them); raw outputs stacked."""
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    outs = []
    for sample in x:
        interp.set_tensor(inp["index"], np.ascontiguousarray(sample[None], inp["dtype"]).reshape(inp["shape"]))
        interp.invoke()
        outs.append(interp.get_tensor(out["index"]).copy())
    return np.stack(outs).reshape(len(x), *out["shape"][1:])


def compare_with_reference(model: Model, inputs: np.ndarray, arena_size: int | None = None) -> dict:
    """TFLM against LiteRT's reference kernels on the same inputs (float inputs meet an int8 input
    tensor quantized once, so both see the same integers).

    Returns {"samples", "output_dtype", "bit_exact" (raw outputs identical), "max_steps" (largest
    raw difference in output quantization steps; None for a float output), "max_abs" (largest
    difference of the dequantized / float outputs)}.
    """
    micro = MicroInterpreter(model, arena_size)
    x = np.asarray(inputs)
    if micro.input_quant is not None and x.dtype.kind == "f":
        x = quantize_affine(x, micro.input_quant, micro.input_dtype)
    got = micro.run(x, raw=True)
    ref = run_reference_raw(reference_interpreter(micro.data), x.astype(micro.input_dtype, copy=False))
    if got.shape != ref.shape or got.dtype != ref.dtype:
        raise TfsepError(f"{micro.name}: TFLM gives {got.dtype} {got.shape}, LiteRT {ref.dtype} {ref.shape}")
    if micro.output_quant is not None:
        steps = int(np.abs(got.astype(np.int64) - ref.astype(np.int64)).max(initial=0))
        max_abs = steps * micro.output_quant[0]
    else:
        steps = None
        max_abs = float(np.abs(got.astype(np.float64) - ref.astype(np.float64)).max(initial=0.0))
    return {
        "samples": len(x),
        "output_dtype": micro.output_dtype.name,
        "bit_exact": bool(got.tobytes() == ref.tobytes()),
        "max_steps": steps,
        "max_abs": float(max_abs),
    }


def footprint(model: Model, need_ram: bool = True) -> dict:
    """What `budget FILE.tflite` reports for a microcontroller: {"flash_bytes", "arena_bytes",
    "arena_basis"}. Without tflite-micro the arena is None (a TfsepError with the install hint
    when `need_ram`, i.e. a --ram limit was given)."""
    flash = flash_bytes(model)
    try:
        _runtime()
    except TfsepError:
        if need_ram:
            raise
        return {"flash_bytes": flash, "arena_bytes": None, "arena_basis": f"needs tflite-micro; {MICRO_HINT}"}
    arena = smallest_arena(model)
    parts = arena_parts(model, arena + ARENA_STEP)
    bits = 8 * struct.calcsize("P")
    basis = "reference kernels"
    if parts is not None:
        basis += (
            f"; activations {parts['activations']:,} + TFLM's bookkeeping {parts['bookkeeping']:,} with this "
            f"host's {bits}-bit pointers" + (" (less on a 32-bit core)" if bits > 32 else "")
        )
    return {
        "flash_bytes": flash,
        "arena_bytes": arena,
        "arena_basis": basis,
        "arena_parts": parts,
        "pointer_bits": bits,
    }


def arena_parts(model: Model, arena_size: int) -> dict[str, int] | None:
    """TFLM's own split of what a model takes from an arena that fits (its recording allocator):
    {"activations": the head, planned; "bookkeeping": the tail, node structs, eval tensors and
    op data, whose pointers are the host's size}. None if the allocator does not report it."""
    data, _ = model_bytes(model)
    try:
        with native_stderr_captured() as native:
            interpreter = _runtime().Interpreter.from_bytes(data, arena_size=int(arena_size))
            interpreter.print_allocations()
    except Exception:  # RuntimeError from TFLM, or a wrapper without print_allocations: no split
        return None
    found = dict(re.findall(r"Arena allocation (head|tail) (\d+) bytes", "\n".join(native)))
    if set(found) != {"head", "tail"}:
        return None
    return {"activations": int(found["head"]), "bookkeeping": int(found["tail"])}
