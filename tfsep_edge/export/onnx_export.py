"""`tfsep-edge export`: a checkpoint or a quantized model -> one verified ONNX file.

FP32 (from a checkpoint) and INT8 QDQ (from a `tfsep-edge quantize` output) graphs are built by
hand from the weights (onnx_graph.py, onnx_qdq.py): no trace, no Shape/Gather chains, static
shapes except the batch, no stack-trace metadata, one file. The INT8 graph carries the scales
and zero points PyTorch's calibration chose (built from QuantizedArtifact.fake_quant_model()).

Every export validates itself before OUT exists: it is written to a temporary file next to
OUT, checked with onnx.checker (full check), run in onnxruntime on audio inputs (the bundled
clips and generated ones, through the one front end; validation_set names them) against the
model it must equal by export_rule (FP32: the float model; INT8: the fake-quant twin), and only
then renamed. A failed validation exits 1 and leaves nothing at OUT.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfsep_edge.core import config
from tfsep_edge.core.assets import DEMO_CALIBRATION, IMPULSE_RESPONSES
from tfsep_edge.core.config import LABELS, FrontendConfig
from tfsep_edge.core.errors import TfsepError, first_line
from tfsep_edge.core.fileio import atomic_path, check_output_file
from tfsep_edge.core.kinds import Kind, require_kind
from tfsep_edge.export import rule
from tfsep_edge.export.rule import ExportValidationError
from tfsep_edge.export.summary import closing_lines, fp32_timing, precision_timing, step_lines

OPSETS = (17, 18, 19, 20)  # 17: first with LayerNorm/STFT-era ops ORT runs everywhere; 20: newest we test
DEFAULT_OPSET = 17
N_SYNTHETIC = 12  # synthetic validation clips (on top of the bundled audio)
BUNDLED_AUDIO = {  # package data, real recordings first
    "MicIRP microphone recordings": (IMPULSE_RESPONSES, 4),
    "SYNTHETIC demo calibration clips": (DEMO_CALIBRATION, 8),
}
MAX_BUNDLED = 12


@dataclass
class Source:
    """What is being exported: the float model, and the INT8 artifact when --int8."""

    path: Path
    float_model: object
    frontend: FrontendConfig
    artifact: object | None = None


# --- loading ---------------------------------------------------------------------------------


def load_source(path: Path, int8: bool) -> Source:
    """A checkpoint or a quantized folder; --int8 needs the latter."""
    from tfsep_edge.quant.artifact import load_quantized

    hint = "it is already exported; pass its checkpoint or quantize folder"
    kind = require_kind(path, (Kind.CHECKPOINT, Kind.QUANTIZED), "export", hint)
    if kind is Kind.QUANTIZED:
        art = load_quantized(path)  # it silences quantize.py's list of torch 2.13 notices itself
        return Source(path, art.float_model, art.frontend, art if int8 else None)
    if int8:
        from tfsep_edge.model.checkpoint import read_checkpoint

        obj = read_checkpoint(path)  # a clear error if it is not a checkpoint at all
        del obj
        raise TfsepError(
            f"{path}: a float checkpoint, never quantized; run `tfsep-edge quantize {path} --calib CALIB` "
            "and export its output folder with --int8"
        )
    from tfsep_edge.model.checkpoint import load_checkpoint

    model, info = load_checkpoint(path)
    return Source(path, model, info["frontend"])


def check_opset(opset: int) -> int:
    if opset not in OPSETS:
        raise TfsepError(f"--opset {opset}: must be one of {', '.join(map(str, OPSETS))} (default {DEFAULT_OPSET})")
    return opset


# --- validation inputs -------------------------------------------------------------------------


def validation_waves(cfg: FrontendConfig, bundled: int = MAX_BUNDLED, synthetic: int = N_SYNTHETIC) -> np.ndarray:
    """(N, clip_samples) float32: 1-s windows of the bundled audio plus seeded generated clips."""
    return validation_set(cfg, bundled, synthetic)[0]


def validation_set(
    cfg: FrontendConfig, bundled: int = MAX_BUNDLED, synthetic: int = N_SYNTHETIC
) -> tuple[np.ndarray, str]:
    """validation_waves and what they are, e.g. "4 MicIRP microphone recordings, 8 SYNTHETIC demo ...".

    Up to `bundled` clips of the package's audio (four MicIRP microphone recordings, then the
    demo calibration set of synthesised scenes), then `synthetic` generated clips (noise with a
    few tones, chirps and clicks at different levels), which cover levels and spectra the
    bundled audio does not.
    """
    from tfsep_edge.signal.audio import find_audio, load_audio, split_windows

    waves, origin = [], []
    for name, (folder, count) in BUNDLED_AUDIO.items():
        taken = 0
        for f in find_audio([folder]):
            if len(waves) >= bundled or taken >= count:
                break
            try:
                waves.append(split_windows(load_audio(f, cfg), cfg)[0])
            except TfsepError:
                continue
            origin.append(name)
            taken += 1
    rng = np.random.default_rng(0)
    t = np.arange(cfg.clip_samples) / cfg.sample_rate
    for i in range(synthetic):
        level = 10 ** rng.uniform(-3, -0.5)
        x = rng.standard_normal(cfg.clip_samples) * level * rng.uniform(0.05, 1)
        for _ in range(rng.integers(1, 4)):
            f0 = rng.uniform(50, 12000)
            x += level * np.sin(2 * np.pi * (f0 + rng.uniform(-1, 1) * 2000 * t) * t + rng.uniform(0, 6.3))
        if i % 3 == 0:
            x[rng.integers(0, len(x), 20)] += level * 5
        waves.append(x.astype(np.float32))
        origin.append("generated")
    counts = {name: origin.count(name) for name in dict.fromkeys(origin)}
    return np.stack(waves).astype(np.float32), ", ".join(f"{n} {name}" for name, n in counts.items())


# --- building --------------------------------------------------------------------------------


def budget_figures(float_model, stored: dict, cfg: FrontendConfig) -> dict:
    """params/MACs by the official NeSsi count (float model) and the stored bytes of this file."""
    from tfsep_edge.budget.count import official_count

    params, macs, _ = official_count(float_model, cfg.n_mels, cfg.n_frames)
    return {
        "width": float_model.config.width,
        "shuffle_groups": float_model.config.groups,
        "params": params,
        "macs": macs,
        "counted_by": "torchinfo (NeSsi) on the float model",
        "stored_param_bytes": stored["total"],
        "stored_bytes_by_type": stored,
    }


def model_metadata(kind: str, precision: str, width: int, cfg: FrontendConfig, budget: dict) -> dict[str, str]:
    """What every exported file carries (.onnx metadata_props, .tflite metadata buffers): the
    runtime needs nothing else (runtime/model_info.py reads it back)."""
    return {
        config.META_INPUT: kind,
        config.META_LABELS: json.dumps(list(LABELS)),
        config.META_FRONTEND: json.dumps(cfg.to_dict(), sort_keys=True),
        config.META_WIDTH: str(width),
        config.META_PRECISION: precision,
        config.META_VERSION: config.VERSION,
        config.META_BUDGET: json.dumps(budget, sort_keys=True),
    }


def set_metadata(model, kind: str, precision: str, width: int, cfg: FrontendConfig, budget: dict) -> None:
    meta = model_metadata(kind, precision, width, cfg, budget)
    del model.metadata_props[:]
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    model.doc_string = f"TF-SepNet width {width}, {precision}, input {kind}; made by tfsep-edge {config.VERSION}"


def build_graph(source: Source, int8: bool, frontend: bool, opset: int):
    from tfsep_edge.budget.stored_bytes import onnx_constants, stored_bytes
    from tfsep_edge.export.onnx_fp32 import build_fp32
    from tfsep_edge.export.onnx_int8 import build_int8

    if int8:
        model = build_int8(source.artifact.fake_quant_model(), frontend, opset, source.frontend)
    else:
        model = build_fp32(source.float_model, frontend, opset, source.frontend)
    budget = budget_figures(source.float_model, stored_bytes(onnx_constants(model)), source.frontend)
    kind = "waveform" if frontend else "logmel"
    set_metadata(model, kind, "int8" if int8 else "fp32", source.float_model.config.width, source.frontend, budget)
    return model


# --- validation --------------------------------------------------------------------------------


def ort_session(path: Path, threads: int = 1):
    import onnxruntime as ort

    from tfsep_edge.runtime.classifier import session_options  # the runtime's options: what users' sessions get

    return ort.InferenceSession(str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"])


def reference_logits(source: Source, waves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log-mel inputs, logits of the PyTorch float model) on `waves`."""
    import torch

    from tfsep_edge.signal.frontend import log_mel_torch

    with torch.no_grad():
        mels = log_mel_torch(torch.from_numpy(waves), source.frontend)
        return mels.numpy(), source.float_model(mels).numpy()


def int8_references(source: Source, mels: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """(fake-quant twin logits, its output step s_out, PyTorch INT8 logits) on log-mel `mels`."""
    import torch

    from tfsep_edge.quant.twin import output_step

    twin_model = source.artifact.fake_quant_model()
    x = torch.from_numpy(mels)
    with torch.no_grad():
        twin = twin_model(x).numpy()
    return twin, output_step(twin_model), source.artifact(x).numpy()


def graph_logmel(path: Path, feed: np.ndarray) -> np.ndarray:
    """The log-mel the front end inside a waveform graph computes (its internal tensor as an output)."""
    import tempfile

    import onnx
    from onnx import TensorProto, helper

    from tfsep_edge.export.onnx_fp32 import FRONTEND_OUTPUT

    model = onnx.load(str(path))
    model.graph.output.append(helper.make_tensor_value_info(FRONTEND_OUTPUT, TensorProto.FLOAT, None))
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "frontend_probe.onnx"
        onnx.save(model, str(probe))
        session = ort_session(probe)
        return session.run([FRONTEND_OUTPUT], {session.get_inputs()[0].name: feed})[0]


def validate(path: Path, source: Source, int8: bool, frontend: bool, waves: np.ndarray) -> dict:
    """onnx.checker (full), then onnxruntime against the reference by export_rule; raises
    ExportValidationError. Every input also runs alone (the batch axis must not mix examples)."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # checker raises ValidationError / InferenceError
        raise ExportValidationError(f"onnx.checker rejected the graph: {first_line(exc, 200)}") from None
    mels, float_logits = reference_logits(source, waves)
    session = ort_session(path)
    feed = waves if frontend else mels
    name = session.get_inputs()[0].name
    out = session.run(None, {name: feed})[0]
    single = np.concatenate([session.run(None, {name: feed[i : i + 1]})[0] for i in range(len(feed))])
    result = {"inputs": int(len(waves))}
    if frontend:
        result |= rule.check_frontend(graph_logmel(path, feed), mels)
    return result | check_logits(source, mels, float_logits, single, out, int8, frontend)


def check_logits(
    source: Source, mels, float_logits, single: np.ndarray, batched: np.ndarray, int8: bool, frontend: bool
) -> dict:
    """The export rule on a runtime's logits, each input alone (`single`) and in one batch: INT8
    against the fake-quant twin, FP32 against the float model (every export, every runtime)."""
    if int8:
        twin, step, pytorch_int8 = int8_references(source, mels)
        return rule.check_int8(single, twin, step, pytorch_int8) | rule.check_batch(
            single, batched, rule.int8_tolerance(step)
        )
    return rule.check_fp32(single, float_logits, frontend) | rule.check_batch(
        single, batched, rule.fp32_tolerance(float_logits, frontend)
    )


def compare_precisions(path: Path, source: Source, frontend: bool, opset: int, feed: np.ndarray) -> dict:
    """Time this INT8 file against the FP32 graph of the same float weights."""
    import tempfile

    import onnx

    from tfsep_edge.export.onnx_fp32 import build_fp32

    with tempfile.TemporaryDirectory() as tmp:
        fp32_path = Path(tmp) / "fp32.onnx"
        onnx.save(build_fp32(source.float_model, frontend, opset, source.frontend), str(fp32_path))
        return precision_timing(session_runner(path), session_runner(fp32_path), feed[:1])


def session_runner(path: Path):
    """x -> logits in a one-thread onnxruntime session of `path`."""
    session = ort_session(path)
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})


# --- the command ---------------------------------------------------------------------------------


def export(
    model_path: str | Path,
    out: str | Path,
    int8: bool = False,
    frontend: bool = False,
    opset: int = DEFAULT_OPSET,
    timing: bool = True,
    echo=print,
) -> dict:
    """Build, validate and atomically write the ONNX file; returns a summary dict.

    Raises TfsepError (user error: exit 2) or ExportValidationError (exit 1, nothing at OUT).
    """
    import onnx

    model_path, out = Path(model_path), Path(out)
    check_opset(opset)
    if out.suffix.lower() != ".onnx":
        raise TfsepError(f"{out}: the output must end in .onnx")
    check_output_file(out)
    source = load_source(model_path, int8)
    started = time.perf_counter()
    model = build_graph(source, int8, frontend, opset)
    waves, described = validation_set(source.frontend)
    with atomic_path(out, suffix=".onnx") as tmp:
        onnx.save_model(model, str(tmp))  # one file: every initializer inline (well under 2 GB)
        check = validate(tmp, source, int8, frontend, waves) | {"input_sources": described}
        summary = {
            "out": str(out),
            "source": str(model_path),
            "precision": "int8" if int8 else "fp32",
            "input": "waveform" if frontend else "logmel",
            "opset": opset,
            "bytes": tmp.stat().st_size,
            "validation": check,
            "budget": json.loads(next(p.value for p in model.metadata_props if p.key == config.META_BUDGET)),
        }
        if timing:
            feed = waves if frontend else reference_logits(source, waves[:1])[0]
            if int8:
                summary["latency"] = compare_precisions(tmp, source, frontend, opset, feed)
            else:
                summary["latency"] = fp32_timing(session_runner(tmp), feed[:1])
    summary["seconds"] = round(time.perf_counter() - started, 2)
    echo(format_summary(summary))
    return summary


def format_summary(s: dict) -> str:
    v = s["validation"]
    lines = [
        f"wrote {s['out']}: {s['precision'].upper()} ONNX (opset {s['opset']}), input {s['input']}, "
        f"{s['bytes']:,} bytes, one file",
        f"validated on {v['inputs']} inputs ({v.get('input_sources', 'audio')}) against the {v['reference']}: "
        f"max |d logit| {v['max_abs_logit_diff']:.3g} ({v['threshold']}), top-1 agreement {v['top1_agreement']:.1%}",
    ]
    lines += step_lines(v)
    checks = ["onnx.checker full check passed", f"each input alone vs in the batch: {v['batch1_max_abs_diff']:.3g}"]
    if "frontend_max_abs_diff" in v:
        diff, tol = v["frontend_max_abs_diff"], v["frontend_tolerance"]
        checks.append(f"in-graph front end vs log_mel: {diff:.2g} (<= {tol:g})")
    lines.append("  " + "; ".join(checks))
    lines += closing_lines(s, "onnxruntime")
    return "\n".join(lines)
