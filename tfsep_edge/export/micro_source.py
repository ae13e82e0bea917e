"""The C/C++ pair a TensorFlow Lite Micro application compiles in: `<name>_model.h` and
`<name>_model.cc` written from a .tflite's bytes and its metadata (deploy/microcontroller/
README.md says how to build it into a Cortex-M project). No torch.

- `.cc`: the flatbuffer as a 16-byte aligned `const unsigned char` array (TFLM reads the weights
  in place, so it stays in flash), the labels;
- `.h`: the array's length and CRC-32, the input and output tensors (type, shape, scale, zero
  point), the labels in the model's order, the front-end parameters the input was computed with,
  the tensor arena (measured by TFLM's interpreter on this machine, plus a margin), the number
  of operator kinds and a template that registers them on a `tflite::MicroMutableOpResolver`.

Each file is written atomically, the .cc first; the .cc static_asserts the header's length and
CRC, so a pair from two different exports does not compile. Integer-only models only: a file
with float tensors between input and logits is refused unless `allow_float` (host tests).
"""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import numpy as np

from tfsep_edge.core import config
from tfsep_edge.core.config import DEFAULT_FRONTEND, LABELS, FrontendConfig
from tfsep_edge.core.errors import TfsepError
from tfsep_edge.core.fileio import check_writable_dir, write_text_atomic
from tfsep_edge.core.tflite_format import float_activations, operator_counts, read_metadata, schema
from tfsep_edge.runtime.micro import ARENA_STEP, Model, model_bytes, smallest_arena

# The arena the header asks for: the measured one plus this fraction (at least ARENA_MARGIN_MIN
# bytes), rounded up to ARENA_STEP. Not a measurement: the host figure counts 8-byte pointers
# (a Cortex-M needs less bookkeeping), but CMSIS-NN kernels may ask for scratch buffers the
# reference kernels do not, and another TFLM version lays the arena out differently. Check on
# the device (MicroInterpreter::arena_used_bytes()) and shrink it there.
ARENA_MARGIN = 0.10
ARENA_MARGIN_MIN = 1024
BYTES_PER_LINE = 12
FIX = (
    "a TFLite Micro build needs an integer-only model (int8 from input to logits): export the "
    "integer INT8 model with int8 input and output"
)

# TFLM's MicroMutableOpResolver method for each operator (AddConv2D, ...): the rule in
# `resolver_method`, with the names the rule does not produce spelled out.
RESOLVER_EXCEPTIONS = {"PADV2": "AddPadV2", "SPLIT_V": "AddSplitV", "L2_NORMALIZATION": "AddL2Normalization"}


def resolver_method(op: str) -> str:
    """CONV_2D -> AddConv2D, SQUARED_DIFFERENCE -> AddSquaredDifference (MicroMutableOpResolver's names)."""
    if op in RESOLVER_EXCEPTIONS:
        return RESOLVER_EXCEPTIONS[op]
    return "Add" + "".join(part.upper() if part[:1].isdigit() else part.capitalize() for part in op.split("_"))


def arena_with_margin(measured: int, margin: float = ARENA_MARGIN) -> int:
    extra = max(int(np.ceil(measured * margin)), ARENA_MARGIN_MIN)
    return -(-(measured + extra) // ARENA_STEP) * ARENA_STEP


def tensor_info(data: bytes, source: str = "<model bytes>") -> tuple[dict, dict]:
    """(input, output) of the first subgraph: {"name", "type", "shape", "scale", "zero_point"}
    (scale None for a float or per-channel tensor)."""
    s = schema()
    model = s.ModelT.InitFromPackedBuf(data, 0)
    sub = model.subgraphs[0]
    types = {v: k for k, v in vars(s.TensorType).items() if not k.startswith("_")}

    def one(index: int) -> dict:
        t = sub.tensors[index]
        q = t.quantization
        per_tensor = q is not None and q.scale is not None and len(q.scale) == 1
        return {
            "name": t.name.decode("utf-8", "replace"),
            "type": types.get(t.type, str(t.type)),
            "shape": [int(d) for d in t.shape],
            "scale": float(q.scale[0]) if per_tensor else None,
            "zero_point": int(q.zeroPoint[0])
            if per_tensor and q.zeroPoint is not None
            else (0 if per_tensor else None),
        }

    if len(sub.inputs) != 1 or len(sub.outputs) != 1:
        raise TfsepError(
            f"{source}: has {len(sub.inputs)} inputs and {len(sub.outputs)} outputs; TF-SepNet has one of each"
        )
    return one(int(sub.inputs[0])), one(int(sub.outputs[0]))


def _c_string(text: str) -> str:
    """A C/C++ string literal (JSON's escapes, ASCII only, are valid C++ escapes)."""
    return json.dumps(text, ensure_ascii=True)


def _c_float(value: float) -> str:
    """The float32 value as a literal that reads back to the same float32 (shortest digits)."""
    text = np.format_float_positional(np.float32(value), unique=True, trim="0") if value else "0.0"
    if "e" in text or len(text) > 24:
        text = np.format_float_scientific(np.float32(value), unique=True, trim="0")
    return text + ("f" if any(c in text for c in ".e") else ".0f")


def _comment(text: str) -> str:
    """Text safe inside a // comment (one line)."""
    return " ".join(str(text).split())


def _byte_lines(data: bytes) -> str:
    rows = []
    for i in range(0, len(data), BYTES_PER_LINE):
        rows.append("    " + ", ".join(f"0x{b:02x}" for b in data[i : i + BYTES_PER_LINE]) + ",")
    return "\n".join(rows)


def render(data: bytes, name: str, source: str, arena_measured: int, arena_size: int) -> tuple[str, str]:
    """(header text, source text) for model bytes `data`; `name` prefixes every C identifier."""
    meta = read_metadata(data)
    try:
        labels = tuple(json.loads(meta[config.META_LABELS]))
        labels_note = "from the file's metadata"
    except (KeyError, ValueError, TypeError):
        labels, labels_note = LABELS, "the file has none: the DCASE order tfsep-edge uses"
    try:
        fe = FrontendConfig.from_dict(json.loads(meta[config.META_FRONTEND]))
        fe_note = "from the file's metadata"
    except (KeyError, ValueError, TypeError):
        fe, fe_note = DEFAULT_FRONTEND, "the file has none: tfsep-edge's defaults"
    kind = meta.get(config.META_INPUT, "logmel")
    inp, out = tensor_info(data, source)
    ops = operator_counts(data)
    crc = zlib.crc32(data)
    guard = f"{name.upper()}_MODEL_H_"
    n = name

    def tensor_lines(role: str, t: dict) -> list[str]:
        lines = [
            f"// {role} tensor '{_comment(t['name'])}': {t['type']} {t['shape']}",
            f"constexpr int {n}_{role}_dims = {len(t['shape'])};",
            f"constexpr int {n}_{role}_shape[{len(t['shape'])}] = {{{', '.join(map(str, t['shape']))}}};",
            f"constexpr int {n}_{role}_elements = {int(np.prod(t['shape']))};",
            f"constexpr bool {n}_{role}_is_int8 = {'true' if t['type'] == 'INT8' else 'false'};",
        ]
        if t["scale"] is None:
            lines.append(f"// ({role} is not per-tensor quantized: scale 0 and zero point 0 say so)")
        return [
            *lines,
            f"constexpr float {n}_{role}_scale = {_c_float(t['scale'] or 0.0)};",
            f"constexpr int {n}_{role}_zero_point = {t['zero_point'] or 0};",
        ]

    if kind == "logmel":
        layout = [
            f"// The input is one log-mel patch, shape {inp['shape']} = (batch, 1, mels, frames): row-major,",
            f"// input[mel * {fe.n_frames} + frame], mel 0 the lowest band, frame 0 the oldest.",
        ]
        if inp["scale"] is not None:
            layout.append(
                f"// Quantize each value x: q = clamp(round(x / {n}_input_scale) + {n}_input_zero_point, -128, 127),"
            )
            layout.append(
                "// x / scale in float, rounded half away from zero (std::round), as TFLite's QUANTIZE rounds."
            )
    else:
        layout = [f"// The input is '{_comment(kind)}' of shape {inp['shape']}."]

    header = [
        f"// Generated by tfsep-edge {config.VERSION} from {_comment(source)}: do not edit.",
        f"// TF-SepNet (width {_comment(meta.get(config.META_WIDTH, '?'))}, "
        f"precision {_comment(meta.get(config.META_PRECISION, '?'))}) for TensorFlow Lite Micro.",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        "#include <cstdint>",
        "",
        "// The model: the .tflite flatbuffer, 16-byte aligned (defined in the .cc; keep it in flash).",
        f"extern const unsigned char {n}_model[];",
        f"constexpr unsigned int {n}_model_len = {len(data)};",
        f"constexpr uint32_t {n}_model_crc32 = 0x{crc:08x}u;",
        "",
        "// Tensor arena (bytes, 16-byte aligned in your application). Measured: the smallest arena",
        "// with which TFLM's interpreter (reference kernels) built and ran the model on the machine",
        "// that exported it (x86-64 struct sizes). The size to use adds a margin for CMSIS-NN scratch",
        "// buffers and another TFLM version; check MicroInterpreter::arena_used_bytes() on the device.",
        "// A 32-bit core needs less bookkeeping: tfsep_classify.cc takes -DTFSEP_ARENA_BYTES=N.",
        f"constexpr unsigned int {n}_arena_measured = {arena_measured};",
        f"constexpr unsigned int {n}_arena_size = {arena_size};",
        "",
        *tensor_lines("input", inp),
        *layout,
        "",
        *tensor_lines("output", out),
        "// The output holds one logit per label, in the order of the labels below (argmax = scene).",
        "",
        f"// Labels ({labels_note}).",
        f"constexpr int {n}_num_labels = {len(labels)};",
        f"extern const char* const {n}_labels[{len(labels)}];",
        "",
        f"// Front end ({fe_note}): mono audio at the sample rate, pre-emphasis",
        "// y[n] = x[n + 1] - preemphasis * x[n], centred STFT (reflect padding) with a symmetric Hann window",
        "// of win_length, power spectrum, n_mels Kaldi-style mel triangles (1127 ln(1 + f / 700)) from fmin",
        "// to fmax, then (ln(mel + log_offset) + norm_shift) / norm_scale. tfsep_edge/signal/frontend.py is",
        "// the reference implementation; feed what it computes.",
        f"constexpr int {n}_sample_rate = {fe.sample_rate};",
        f"constexpr int {n}_clip_samples = {fe.clip_samples};",
        f"constexpr float {n}_preemphasis = {_c_float(fe.preemphasis)};",
        f"constexpr int {n}_n_fft = {fe.n_fft};",
        f"constexpr int {n}_win_length = {fe.win_length};",
        f"constexpr int {n}_hop_length = {fe.hop_length};",
        f"constexpr int {n}_n_mels = {fe.n_mels};",
        f"constexpr int {n}_n_frames = {fe.n_frames};",
        f"constexpr float {n}_fmin = {_c_float(fe.fmin)};",
        f"constexpr float {n}_fmax = {_c_float(fe.fmax)};",
        f"constexpr float {n}_log_offset = {_c_float(fe.log_offset)};",
        f"constexpr float {n}_norm_shift = {_c_float(fe.norm_shift)};",
        f"constexpr float {n}_norm_scale = {_c_float(fe.norm_scale)};",
        "",
        f"// Operators ({sum(ops.values())} in the graph, {len(ops)} kinds): "
        + ", ".join(f"{op} x{c}" for op, c in ops.items())
        + ".",
        f"// static tflite::MicroMutableOpResolver<{n}_op_kinds> resolver; {n}_add_ops(resolver);",
        f"constexpr unsigned int {n}_op_kinds = {len(ops)};",
        "template <typename Resolver>",
        f"inline bool {n}_add_ops(Resolver& resolver) {{",
        "  bool ok = true;",
        *[f"  ok = (resolver.{resolver_method(op)}() == 0) && ok;  // {op}" for op in ops],
        "  return ok;  // false: the resolver is too small or an op was added twice",
        "}",
        "",
        f"#endif  // {guard}",
        "",
    ]
    source_text = [
        f"// Generated by tfsep-edge {config.VERSION} from {_comment(source)}: do not edit.",
        f'#include "{n}_model.h"',
        "",
        f"alignas(16) const unsigned char {n}_model[] = {{",
        _byte_lines(data),
        "};",
        "",
        f"static_assert(sizeof({n}_model) == {n}_model_len,",
        f'              "{n}_model.cc and {n}_model.h come from different exports");',
        f"static_assert({n}_model_crc32 == 0x{crc:08x}u,",
        f'              "{n}_model.cc and {n}_model.h come from different exports");',
        "",
        f"const char* const {n}_labels[{len(labels)}] = {{",
        *[f"    {_c_string(label)}," for label in labels],
        "};",
        "",
    ]
    return "\n".join(header), "\n".join(source_text)


def write_micro_source(
    model: Model,
    out_dir: str | Path,
    name: str = "tfsep",
    allow_float: bool = False,
    arena_size: int | None = None,
    margin: float = ARENA_MARGIN,
) -> dict:
    """Write `<out_dir>/<name>_model.h` and `.cc` for the .tflite `model` (bytes or path).

    `arena_size`: the measured arena to use (default: smallest_arena measures it, a second or
    two); the header asks for it plus `margin`. `out_dir` is created if its parent exists.
    TfsepError for a name that is no C identifier, a missing folder, or (unless `allow_float`,
    for host tests of today's INT8 exports) a model with float tensors between input and logits.
    Returns what was written: paths, bytes, CRC, arenas, operators, float ops.
    """
    data, source = model_bytes(model)
    out_dir = Path(out_dir)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise TfsepError(f"{name!r}: the C name prefix must be an identifier (letters, digits, _), e.g. tfsep")
    floats = float_activations(data)
    if floats["tensors"] and not allow_float:
        ops = ", ".join(f"{op} x{c}" for op, c in floats["ops"].items())
        raise TfsepError(f"{source}: {len(floats['tensors'])} float tensors between input and logits ({ops}); {FIX}")
    if not out_dir.is_dir():
        check_writable_dir(out_dir)  # its parent must exist and be writable
        out_dir.mkdir()
    header_path, source_path = out_dir / f"{name}_model.h", out_dir / f"{name}_model.cc"
    check_writable_dir(header_path)
    measured = smallest_arena(data) if arena_size is None else int(arena_size)
    arena = arena_with_margin(measured, margin)
    header, source_text = render(data, name, Path(source).name, measured, arena)
    write_text_atomic(source_path, source_text)
    write_text_atomic(header_path, header)
    return {
        "header": str(header_path),
        "source": str(source_path),
        "name": name,
        "bytes": len(data),
        "crc32": f"{zlib.crc32(data):08x}",
        "arena_measured": measured,
        "arena_size": arena,
        "operators": operator_counts(data),
        "float_tensors": len(floats["tensors"]),
        "float_ops": floats["ops"],
    }
