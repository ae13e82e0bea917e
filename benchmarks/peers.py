"""Peers benchmark: tfsep-edge's ONNX and .tflite against the stock conversions of the same weights.

Same untrained TF-SepNets (benchmarks/models.py: randomised BN/AdaResNorm statistics; latency
does not depend on the values) at each width, every artifact made by this script:
- tfsep-edge: FP32/INT8 ONNX and FP32/INT8 .tflite (`tfsep_edge.export.onnx_export`,
  `tfsep_edge.export.tflite_export`,
  validated as every export is; INT8 from one quantize run on 64 noise log-mels);
- stock: `litert_torch.convert(model)` FP32, litert-torch's PT2E INT8 (PT2EQuantizer, per-channel
  symmetric, all ops, the same 64 calibration inputs one at a time: torch.export guards batch 1),
  a plain `torch.onnx.export` (legacy exporter, opset 17);
- runtimes: onnxruntime 1 thread, LiteRT + XNNPACK 1 thread, OpenVINO CPU (1 inference thread,
  LATENCY hint, its default inference precision: bf16 float parts on CPUs with AVX512_BF16; the
  agreement rows also with f32), PyTorch eager FP32 1 thread;
- other runtimes a user could pick, one thread each: ncnn FP32 (`pnnx.export`; pnnx has no
  `torch.var`, so the model it converts writes AdaResNorm's unbiased variance as
  mean((x - mean)^2) * n / (n - 1)), MNN FP32 (the plain ONNX through MNN's converter library,
  Session API), ExecuTorch XNNPACK FP32 and PT2E INT8 (XNNPACKQuantizer, per-channel symmetric,
  the same 64 calibration inputs), run by `executorch.runtime`. Each is checked against PyTorch
  before it is timed (FP32: PyTorch's float model within the FP32 export rule; INT8: its own PT2E
  model run in PyTorch, within the INT8 rule's 3 output steps); one beyond its tolerance is reported
  as wrong, not timed. A runtime whose package is missing is reported as "not installed" and
  the rest runs (the same script on a Raspberry Pi: these wheels exist for aarch64).
All of them timed by tfsep_edge.bench.harness.measure (model only, batch 1) round-robin in ONE process,
so the machine's load hits them alike. Then a per-layer profile of the two .tflite graphs at the
widest width (cumulative prefixes: the graph cut before each layer, timed round-robin; the
difference of consecutive prefixes is the layer's cost), a per-op profile at every width (each
operator alone, summed by kind: where INT8 gains and loses), and agreement checks (OpenVINO vs
onnxruntime on the INT8 ONNX; .tflite INT8 vs the INT8 ONNX).

    .venv/bin/python benchmarks/peers.py [--widths 12 40 60] [--runs 300]

Needs the [peers] extra (litert-torch, openvino, ncnn + pnnx, mnn, executorch); writes
benchmarks/results/peers.json and .md. Never run MNN's `mnnconvert`/`mnnquant` commands: their Python
wrapper pip-installs a package and sends usage data out; this script calls the converter library.
"""

from __future__ import annotations

import argparse
import copy
import functools
import importlib.util
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

OUT = REPO / "benchmarks" / "results"
ROWS = (  # key, label
    ("tflite_fp32", "LiteRT + XNNPACK, tfsep-edge FP32 .tflite"),
    ("tflite_int8", "LiteRT + XNNPACK, tfsep-edge INT8 .tflite"),
    ("tflite_integer", "LiteRT + XNNPACK, tfsep-edge integer INT8 .tflite (`quantize --integer`)"),
    ("stock_fp32", "LiteRT + XNNPACK, stock `litert_torch.convert` FP32"),
    ("stock_int8", "LiteRT, stock PT2E INT8 (litert-torch PT2EQuantizer, per-channel)"),
    ("ov_plain", "OpenVINO on a plain `torch.onnx.export`"),
    ("ort_fp32", "onnxruntime, tfsep-edge FP32 ONNX"),
    ("ort_int8", "onnxruntime, tfsep-edge INT8 ONNX"),
    ("ort_plain", "onnxruntime, plain `torch.onnx.export`"),
    ("ov_fp32", "OpenVINO on tfsep-edge's FP32 ONNX"),
    ("ov_int8", "OpenVINO on tfsep-edge's INT8 ONNX"),
    ("torch_fp32", "PyTorch eager FP32"),
    ("mnn_fp32", "MNN FP32 (plain ONNX through its converter library, Session API)"),
    ("ncnn_fp32", "ncnn FP32 (pnnx)"),
    ("et_fp32", "ExecuTorch, XNNPACK FP32"),
    ("et_int8", "ExecuTorch, XNNPACK PT2E INT8 (XNNPACKQuantizer, per-channel)"),
)
PRECISIONS = {"fp32": "FP32", "int8": "INT8", "integer": "integer"}  # the op profile's graphs
PEER_PACKAGES = ("litert-torch", "openvino", "ncnn", "pnnx", "mnn", "executorch")


def missing(*modules: str) -> str | None:
    """'not installed (...)' when a runtime's package is absent: its row says so, the rest runs."""
    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    return f"not installed ({', '.join(absent)})" if absent else None


def stock_tflite(model, calib, out: Path, int8: bool) -> Path:
    """What a user gets from litert-torch: the module as it is, FP32 or PT2E INT8."""
    import litert_torch
    import torch

    args = (torch.zeros(1, 1, calib.shape[2], calib.shape[3]),)
    if not int8:
        out.write_bytes(litert_torch.convert(model.eval(), args).model_content())
        return out
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    m = prepare_pt2e(torch.export.export(model.eval(), args).module(), quantizer)
    with torch.no_grad():
        for x in calib:
            m(x[None])
    m = convert_pt2e(m, fold_quantize=False)
    out.write_bytes(litert_torch.convert(m, args, quant_config=QuantConfig(pt2e_quantizer=quantizer)).model_content())
    return out


def logmel_frontend(windows):
    """The model input of a runtime outside tfsep-edge: the numpy log-mel, (B, 1, mels, frames)."""
    from tfsep_edge.core.config import DEFAULT_FRONTEND
    from tfsep_edge.signal.frontend import log_mel

    return np.ascontiguousarray(log_mel(windows, DEFAULT_FRONTEND)[:, None])


def openvino_runner(path: Path, name: str, width: int, precision: str, f32: bool = False):
    """A bench.Runner for an ONNX file compiled by OpenVINO's CPU plugin, one inference thread.
    `f32`: float parts in float32; by default the plugin picks bf16 where the CPU has it."""
    import openvino as ov

    from tfsep_edge.bench.runners import Runner

    t0 = time.perf_counter_ns()
    config = {"INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
    if f32:
        config["INFERENCE_PRECISION_HINT"] = "f32"
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    load_ms = (time.perf_counter_ns() - t0) / 1e6

    def run(x):
        return request.infer({0: x})[compiled.output(0)]

    return Runner(name, str(path), "openvino", precision, width, "logmel", load_ms, logmel_frontend, run)


def make_artifacts(width: int, folder: Path) -> tuple[dict[str, Path | str], object, object]:
    """Every artifact of one width; returns ({row key: path, or why there is none}, the quantized
    artifact, the integer one)."""
    import export_speed
    import models
    import onnx

    from tfsep_edge.export.tflite_export import export_tflite
    from tfsep_edge.model.checkpoint import load_model
    from tfsep_edge.quant.artifact import load_quantized

    quiet = {"echo": lambda _s: None, "timing": False}
    ckpt = models.make_checkpoint(width, folder / f"c{width}.pt")
    qdir = models.make_quantized(ckpt, folder / f"c{width}-int8")
    integer = models.make_quantized(ckpt, folder / f"c{width}-integer", integer=True)
    model = load_model(ckpt)
    calib = models.noise_logmels(64)
    stock = missing("litert_torch")
    paths = {
        "ort_fp32": models.make_onnx(ckpt, folder / f"c{width}_fp32.onnx"),
        "ort_int8": models.make_onnx(qdir, folder / f"c{width}_int8.onnx", int8=True),
        "ort_plain": folder / f"c{width}_plain.onnx",
        "tflite_fp32": folder / f"c{width}_fp32.tflite",
        "tflite_int8": folder / f"c{width}_int8.tflite",
        "tflite_integer": folder / f"c{width}_integer.tflite",
        "stock_fp32": stock or stock_tflite(model, calib[:1], folder / f"c{width}_stock.tflite", False),
        "stock_int8": stock or stock_tflite(model, calib, folder / f"c{width}_stock_int8.tflite", True),
        "torch_fp32": ckpt,
    }
    onnx.save(export_speed.plain_export(model), str(paths["ort_plain"]))
    export_tflite(ckpt, paths["tflite_fp32"], **quiet)
    export_tflite(qdir, paths["tflite_int8"], int8=True, **quiet)
    export_tflite(integer, paths["tflite_integer"], int8=True, **quiet)
    return paths, load_quantized(qdir), load_quantized(integer)


def runners_for(width: int, paths: dict[str, Path | str]) -> dict[str, object]:
    from tfsep_edge.bench.runners import load_runner

    # onnxruntime for .onnx, LiteRT for .tflite, PyTorch eager for the checkpoint; a str says why not
    out = {key: path if isinstance(path, str) else load_runner(path, 1) for key, path in paths.items()}
    for key, src, prec in (
        ("ov_plain", "ort_plain", "fp32"),
        ("ov_fp32", "ort_fp32", "fp32"),
        ("ov_int8", "ort_int8", "int8"),
    ):
        try:
            out[key] = missing("openvino") or openvino_runner(paths[src], f"{paths[src].name} (OpenVINO)", width, prec)
        except Exception as exc:  # a model the CPU plugin refuses is a result, not a crash
            out[key] = f"fails to compile: {openvino_error(exc)}"
    for r in out.values():
        if not isinstance(r, str):
            r.width = width
            r.name = f"C{width} {r.name}"
    return out


def graph_sizes(paths: dict[str, Path]) -> dict:
    """Operators and TRANSPOSEs of each .tflite: what the layout work removed."""
    from tfsep_edge.core.tflite_format import operator_counts

    out = {}
    for key in ("tflite_fp32", "tflite_int8", "tflite_integer", "stock_fp32", "stock_int8"):
        if isinstance(paths[key], str):
            continue
        ops = operator_counts(paths[key].read_bytes())
        out[key] = {"operators": sum(ops.values()), "transposes": ops.get("TRANSPOSE", 0)}
    return out


@dataclass
class Probe:
    """The inputs every runtime is checked on (the export validation set plus 64 noise clips) and
    PyTorch's float logits for them."""

    mels: np.ndarray  # (N, 1, mels, frames) float32
    fp32: np.ndarray  # (N, 10)


def probe_for(art) -> Probe:
    import models
    import torch

    from tfsep_edge.export.reference import validation_waves
    from tfsep_edge.signal.frontend import log_mel

    mels = np.concatenate(
        [log_mel(validation_waves(art.frontend), art.frontend)[:, None], models.noise_logmels(64, seed=3).numpy()]
    ).astype(np.float32)
    with torch.no_grad():
        return Probe(mels, art.float_model(torch.from_numpy(mels)).numpy())


def one_by_one(run: Callable, mels: np.ndarray) -> np.ndarray:
    """Logits of each input alone (batch 1, as timed)."""
    return np.concatenate([run(mels[i : i + 1]) for i in range(len(mels))])


def agreement(paths: dict[str, Path | str], art, width: int, probe: Probe) -> dict:
    """Top-1 agreement and max |d logit| on the probe inputs."""
    from tfsep_edge.runtime.classifier import open_classifier

    mels, ref = probe.mels, probe.fp32

    def logits(key):
        return one_by_one(open_classifier(paths[key]).run, mels)

    tfl8, ort8, tfl32 = logits("tflite_int8"), logits("ort_int8"), logits("tflite_fp32")
    integer = logits("tflite_integer")
    res = {
        "tflite_integer_vs_fp32_top1": float((integer.argmax(1) == ref.argmax(1)).mean()),
        "inputs": len(mels),
        "tflite_fp32_vs_pytorch_max_abs": float(np.abs(tfl32 - ref).max()),
        "tflite_int8_vs_onnx_int8_top1": float((tfl8.argmax(1) == ort8.argmax(1)).mean()),
        "tflite_int8_vs_onnx_int8_max_abs": float(np.abs(tfl8 - ort8).max()),
        "tflite_int8_vs_fp32_top1": float((tfl8.argmax(1) == ref.argmax(1)).mean()),
    }
    if missing("openvino"):
        return res
    for suffix, f32 in (("", False), ("_f32", True)):  # each precision on its own: one may compile, one not
        try:
            ovl = one_by_one(openvino_runner(paths["ort_int8"], "ov", width, "int8", f32=f32).model, mels)
        except Exception as exc:
            res[f"openvino{suffix}_int8"] = f"fails: {openvino_error(exc)}"
            continue
        res[f"openvino{suffix}_vs_onnxruntime_int8_top1"] = float((ovl.argmax(1) == ort8.argmax(1)).mean())
        res[f"openvino{suffix}_vs_onnxruntime_int8_max_abs"] = float(np.abs(ovl - ort8).max())
    return res


def openvino_error(exc: Exception) -> str:
    """The line of an OpenVINO exception that says what failed (its first line is only a source location)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    telling = [line for line in lines if "Check" in line or "failed" in line or "No suitable" in line]
    return (telling or lines or ["?"])[0].split(" at src/")[0][:160]  # not the source file it failed in


# Other runtimes a user could pick. Each peer function makes its artifact from the float model (or
# the plain ONNX), loads it for one thread and returns a Peer: how to run it and what it must equal.
# `peer_runner` checks it on the probe inputs before anything is timed.


@dataclass
class Peer:
    path: Path
    runtime: str
    precision: str
    load_ms: float
    run: Callable  # (1, 1, mels, frames) float32 -> (1, 10) logits
    reference: np.ndarray  # the logits it must give on the probe inputs
    reference_name: str
    tolerance: float


def fp32_peer(path: Path, runtime: str, load_ms: float, run: Callable, probe: Probe) -> Peer:
    """An FP32 peer is held to the FP32 export rule against PyTorch's float model."""
    from tfsep_edge.export.rule import fp32_tolerance

    return Peer(path, runtime, "fp32", load_ms, run, probe.fp32, "PyTorch FP32", fp32_tolerance(probe.fp32, False))


def pnnx_model(model):
    """A copy of the model pnnx can convert: pnnx has no torch.var, so AdaResNorm's unbiased
    variance is written as mean((x - mean)^2) * n / (n - 1) (the benchmark's variant only)."""
    from tfsep_edge.model.tfsepnet import AdaResNorm

    class PnnxAdaResNorm(AdaResNorm):
        def forward(self, x):
            n = x.shape[1] * x.shape[3]
            mean = x.mean((1, 3), keepdim=True)
            var = ((x - mean) ** 2).mean((1, 3), keepdim=True) * (n / (n - 1))
            ifn = (x - mean) / (var + self.eps).sqrt()
            return self.gamma * (self.rho * x + (1 - self.rho) * ifn) + self.beta

    out = copy.deepcopy(model).eval()
    for m in out.modules():
        if type(m) is AdaResNorm:
            m.__class__ = PnnxAdaResNorm
    return out


def ncnn_peer(model, probe: Probe, stem: Path, plain_onnx: Path) -> Peer:
    """ncnn FP32: `pnnx.export` to .param/.bin, `ncnn.Net` with one thread, fp16/bf16 off."""
    import ncnn
    import pnnx
    import torch

    # pnnx writes all of these; it imports the two .py files it generates, so they keep their suffix
    files = {k: f"{stem}.{k[:4]}.{k[4:]}" for k in ("pnnxparam", "pnnxbin", "pnnxonnx")}
    files |= {k: str(stem.with_name(f"{stem.name}_{k[:4]}").with_suffix(".py")) for k in ("pnnxpy", "ncnnpy")}
    param, weights = stem.with_suffix(".param"), stem.with_suffix(".bin")
    x = torch.from_numpy(probe.mels[:1])
    pnnx.export(pnnx_model(model), f"{stem}.pt", (x,), fp16=False, ncnnparam=str(param), ncnnbin=str(weights), **files)
    t0 = time.perf_counter_ns()
    net = ncnn.Net()
    net.opt.num_threads = 1
    for flag in ("fp16_packed", "fp16_storage", "fp16_arithmetic", "bf16_storage", "vulkan_compute"):
        setattr(net.opt, f"use_{flag}", False)
    if net.load_param(str(param)) or net.load_model(str(weights)):
        raise RuntimeError(f"ncnn could not load {param.name}")
    load_ms = (time.perf_counter_ns() - t0) / 1e6
    name_in, name_out = net.input_names()[0], net.output_names()[0]

    def run(x):
        ex = net.create_extractor()  # one per call: an extractor keeps the blobs it computed
        ex.input(name_in, ncnn.Mat(np.ascontiguousarray(x[0])))
        _, out = ex.extract(name_out)
        return np.array(out).reshape(1, -1)

    return fp32_peer(param, "ncnn", load_ms, run, probe)


def mnn_peer(model, probe: Probe, stem: Path, plain_onnx: Path) -> Peer:
    """MNN FP32: the plain ONNX through MNN's converter library (`_tools`, the C extension the
    MNNConvert tool is; never the `mnnconvert` command, whose wrapper installs a package and sends
    usage data out), run by a Session with one thread."""
    import _tools
    import MNN

    path = stem.with_suffix(".mnn")
    # the MNNConvert command line's arguments, the first one its name
    _tools.mnnconvert(["mnnconvert", "-f", "ONNX", "--modelFile", str(plain_onnx), "--MNNModel", str(path)])
    if not path.is_file():
        raise RuntimeError(f"MNN's converter wrote no {path.name}")
    t0 = time.perf_counter_ns()
    it = MNN.Interpreter(str(path))
    session = it.createSession({"numThread": 1})
    shape = (1, *probe.mels.shape[1:])
    inp = it.getSessionInput(session)
    it.resizeTensor(inp, shape)  # the plain ONNX has a symbolic batch
    it.resizeSession(session)
    load_ms = (time.perf_counter_ns() - t0) / 1e6

    def run(x):
        inp.copyFrom(MNN.Tensor(shape, MNN.Halide_Type_Float, np.ascontiguousarray(x), MNN.Tensor_DimensionType_Caffe))
        it.runSession(session)
        return np.array(it.getSessionOutput(session).getNumpyData(), dtype=np.float32).reshape(1, -1)

    return fp32_peer(path, "mnn", load_ms, run, probe)


def executorch_peer(model, probe: Probe, stem: Path, plain_onnx: Path, int8: bool = False) -> Peer:
    """ExecuTorch: torch.export, lowered to XNNPACK (`to_edge_transform_and_lower`), run by
    `executorch.runtime` with a one-thread pool. INT8: PT2E with XNNPACKQuantizer (per-channel
    symmetric), calibrated on the same 64 noise log-mels as the other INT8 models, and checked
    against that PT2E model run in PyTorch (quantize/dequantize in float: the int8 model in exact
    arithmetic) within the INT8 rule's output steps."""
    import models
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
    from executorch.runtime import Runtime

    from tfsep_edge.export.rule import INT8_OUTPUT_STEPS, fp32_tolerance, int8_tolerance

    args = (torch.from_numpy(probe.mels[:1]),)
    module = model.eval()
    reference, name, tolerance = probe.fp32, "PyTorch FP32", fp32_tolerance(probe.fp32, False)
    if int8:
        module, step = pt2e_xnnpack(model, args, models.noise_logmels(64))
        with torch.no_grad():
            reference = one_by_one(lambda x: module(torch.from_numpy(x)).numpy(), probe.mels)
        name = f"its PT2E model in PyTorch ({INT8_OUTPUT_STEPS:g} output steps of {step:.3g})"
        tolerance = int8_tolerance(step)
    lowered = to_edge_transform_and_lower(torch.export.export(module, args), partitioner=[XnnpackPartitioner()])
    path = stem.with_suffix(".pte")
    path.write_bytes(lowered.to_executorch().buffer)
    _unsafe_reset_threadpool(1)
    t0 = time.perf_counter_ns()
    method = Runtime.get().load_program(path).load_method("forward")
    load_ms = (time.perf_counter_ns() - t0) / 1e6

    def run(x):
        return method.execute([torch.from_numpy(x)])[0].numpy()

    return Peer(path, "executorch", "int8" if int8 else "fp32", load_ms, run, reference, name, tolerance)


def pt2e_xnnpack(model, args, calib):
    """The PT2E INT8 model for XNNPACK and its output step (the scale of its last quantize node)."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    m = prepare_pt2e(torch.export.export(model.eval(), args).module(), quantizer)
    with torch.no_grad():
        for x in calib:  # one at a time: torch.export guards batch 1
            m(x[None])
    m = convert_pt2e(m)
    quants = [n for n in m.graph.nodes if n.op == "call_function" and "quantize_per_tensor" in str(n.target)]
    quants = [n for n in quants if "dequantize" not in str(n.target)]
    return m, float(quants[-1].args[1])


PEERS = (  # row key, peer function, the modules it imports
    ("mnn_fp32", mnn_peer, ("MNN", "_tools")),
    ("ncnn_fp32", ncnn_peer, ("ncnn", "pnnx")),
    ("et_fp32", executorch_peer, ("executorch", "torchao")),
    ("et_int8", functools.partial(executorch_peer, int8=True), ("executorch", "torchao")),
)


def peer_runners(width: int, art, paths: dict[str, Path | str], probe: Probe, folder: Path):
    """({row key: Runner, or why it is not timed}, {row key: its check}) for every peer."""
    from tfsep_edge.bench.runners import Runner
    from tfsep_edge.core.errors import first_line

    runners, checks = {}, {}
    for key, make, modules in PEERS:
        absent = missing(*modules)
        if absent:
            runners[key], checks[key] = absent, {"status": absent}
            continue
        try:
            peer = make(art.float_model, probe, folder / f"c{width}_{key}", paths["ort_plain"])
            got = one_by_one(peer.run, probe.mels)
        except Exception as exc:  # a converter or runtime that fails on this model is a result
            runners[key] = f"fails: {first_line(exc, 160)}"
            checks[key] = {"status": runners[key]}
            continue
        diff = float(np.abs(got - peer.reference).max())
        checks[key] = {
            "reference": peer.reference_name,
            "max_abs_logit_diff": diff,
            "tolerance": peer.tolerance,
            "top1_vs_reference": float((got.argmax(1) == peer.reference.argmax(1)).mean()),
            "top1_vs_pytorch_fp32": float((got.argmax(1) == probe.fp32.argmax(1)).mean()),
            "status": "ok" if diff <= peer.tolerance else f"wrong: max |d logit| {diff:.2g} > {peer.tolerance:.2g}",
        }
        if diff <= peer.tolerance:
            name, path = f"C{width} {peer.path.name}", str(peer.path)
            runners[key] = Runner(
                name, path, peer.runtime, peer.precision, width, "logmel", peer.load_ms, logmel_frontend, peer.run
            )
        else:
            runners[key] = checks[key]["status"]
    return runners, checks


def one_op_models(g) -> list[tuple[str, bytes, list]]:
    """(kind, one-op model, its runtime input tensors) for each operator of FlatGraph `g`: the
    graph's own shapes, weights and qparams. Kind = op code, a conv's kernel, int8 or float in."""
    from tfsep_edge.export.tflite_flatbuffer import Tensor

    code_of = {i: code for (code, _version), (i, _oc) in g.opcodes.items()}
    every = g.operators
    out = []
    try:
        for op in every:
            ins = [int(i) for i in op.inputs if i >= 0 and g.tensors[i].buffer == 0]
            kind = code_of[op.opcodeIndex]
            if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                kh, kw = g.tensors[op.inputs[1]].shape[1:3]
                kind = f"{kind} {kh}x{kw}"
            in_type = {g.s.TensorType.INT8: "int8", g.s.TensorType.INT16: "int16"}.get(g.tensors[op.inputs[0]].type)
            kind += f" ({in_type or 'float'} in)"
            g.operators = [op]
            model = g.pack([Tensor(i, (), "") for i in ins], [Tensor(int(i), (), "") for i in op.outputs], {}, "")
            out.append((kind, model, [g.tensors[i] for i in ins]))
    finally:
        g.operators = every
    return out


def one_op_samples(interpreters: list, runs: int) -> list[list[int]]:
    """ns per invoke of each one-op interpreter, `runs` rounds round-robin (each call after a
    warm-up call, so every op runs from a warm cache whatever ran before it)."""
    samples: list[list[int]] = [[] for _ in interpreters]
    for _ in range(runs):
        for k, it in enumerate(interpreters):
            it.invoke()
            t0 = time.perf_counter_ns()
            it.invoke()
            samples[k].append(time.perf_counter_ns() - t0)
    return samples


def op_profile(art, integer_art, runs: int) -> dict:
    """Each operator of the FP32, INT8 and integer .tflite graphs timed alone (a one-op model, XNNPACK, one
    thread, round-robin), summed by kind: where the time goes, op by op. A one-op call also pays
    the interpreter's per-call cost (`call_ms`, an empty-ish call), so the sums exceed the model."""
    from ai_edge_litert.interpreter import Interpreter

    from tfsep_edge.export.tflite_fp32 import build_fp32
    from tfsep_edge.export.tflite_int8 import build_int8

    graphs = {
        "fp32": build_fp32(art.float_model, art.frontend)[0],
        "int8": build_int8(art.fake_quant_model("int8"), art.frontend)[0],
        "integer": build_int8(integer_art.fake_quant_model("int8"), integer_art.frontend)[0],
    }
    rng = np.random.default_rng(0)
    calls = []  # (precision, kind, interpreter)
    for precision, g in graphs.items():
        for kind, model, ins in one_op_models(g):
            it = Interpreter(model_content=model, num_threads=1)
            it.allocate_tensors()
            for d, t in zip(it.get_input_details(), ins, strict=True):
                if t.type == g.s.TensorType.INT8:
                    x = rng.integers(-128, 128, d["shape"]).astype(np.int8)
                elif t.type == g.s.TensorType.INT16:  # the integer model's int16 first norm
                    x = rng.integers(-(2**15), 2**15, d["shape"]).astype(np.int16)
                else:
                    x = rng.standard_normal(d["shape"]).astype(np.float32)
                it.set_tensor(d["index"], x)
            calls.append((precision, kind, it))
    samples = one_op_samples([it for _, _, it in calls], runs)
    rows: dict = {}
    for (precision, kind, _), v in zip(calls, samples, strict=True):
        row = rows.setdefault(kind, {f"{p}_{x}": 0 for p in graphs for x in ("ops", "ms")})
        row[f"{precision}_ops"] += 1
        row[f"{precision}_ms"] += float(np.median(v)) / 1e6
    call_ms = min(float(np.median(v)) for v in samples) / 1e6
    return {"width": art.float_model.config.width, "rows": rows, "fastest_op_ms": call_ms}


def layer_profile(art, runs: int) -> list[dict]:
    """Per-layer ms of the FP32 and INT8 .tflite graphs: timed prefixes, round-robin."""
    from ai_edge_litert.interpreter import Interpreter

    from tfsep_edge.export.tflite_fp32 import build_fp32
    from tfsep_edge.export.tflite_int8 import build_int8

    fq = art.fake_quant_model("int8")
    layers = len(art.float_model.feature)
    interps = {}
    for k in range(layers + 1):
        for kind, build in (
            ("fp32", lambda k: build_fp32(art.float_model, art.frontend, k)),
            ("int8", lambda k: build_int8(fq, art.frontend, k)),
        ):
            g, x_in, out = build(k)
            it = Interpreter(model_content=g.pack([x_in], [out], {}, ""), num_threads=1)
            it.allocate_tensors()
            interps[(k, kind)] = it
    x = np.random.default_rng(0).standard_normal((1, 1, art.frontend.n_mels, art.frontend.n_frames)).astype(np.float32)
    samples = {key: [] for key in interps}
    for _ in range(runs):
        for key, it in interps.items():
            idx = it.get_input_details()[0]["index"]
            it.set_tensor(idx, x)
            it.invoke()  # re-warm after the others (not recorded)
            for _ in range(3):
                t0 = time.perf_counter_ns()
                it.set_tensor(idx, x)
                it.invoke()
                samples[key].append(time.perf_counter_ns() - t0)
    med = {key: float(np.median(v)) / 1e6 for key, v in samples.items()}
    rows = []
    for k, layer in enumerate(art.float_model.feature):
        rows.append(
            {
                "layer": f"feature.{k} {type(layer).__name__}",
                "fp32_ms": med[(k + 1, "fp32")] - med[(k, "fp32")],
                "int8_ms": med[(k + 1, "int8")] - med[(k, "int8")],
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[12, 40, 60])
    ap.add_argument("--runs", type=int, default=300, help="measured calls per model")
    ap.add_argument("--profile-runs", type=int, default=60)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--render", action="store_true", help="only rewrite peers.md from peers.json")
    args = ap.parse_args()
    if args.render:
        (args.out / "peers.md").write_text(markdown(json.loads((args.out / "peers.json").read_text())))
        return
    import torch

    torch.set_num_threads(1)
    from tfsep_edge.bench.harness import bench_windows, measure
    from tfsep_edge.bench.machine import machine_info, package_version
    from tfsep_edge.core.config import DEFAULT_FRONTEND

    started = time.time()
    results, checks, arts, integers = {}, {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        runners = {}
        for w in args.widths:
            paths, arts[w], integers[w] = make_artifacts(w, Path(tmp))
            probe = probe_for(arts[w])
            peers, peer_checks = peer_runners(w, arts[w], paths, probe, Path(tmp))
            checks[w] = agreement(paths, arts[w], w, probe) | {"graphs": graph_sizes(paths), "peers": peer_checks}
            runners[w] = runners_for(w, paths) | peers
        timed = [(w, k, r) for w in args.widths for k, r in runners[w].items() if not isinstance(r, str)]
        windows = bench_windows(1, DEFAULT_FRONTEND)
        measured = measure(
            [r for _, _, r in timed], windows, False, warmup=30, runs=args.runs, seconds=None, progress=False
        )
        for (w, key, _), m in zip(timed, measured, strict=True):
            results.setdefault(w, {})[key] = m["latency_ms"]["p50"]
        for w in args.widths:
            for key, r in runners[w].items():
                if isinstance(r, str):
                    results[w][key] = r
        profile = layer_profile(arts[max(args.widths)], args.profile_runs)
        ops = {str(w): op_profile(arts[w], integers[w], args.profile_runs) for w in args.widths}
    report = {
        "machine": machine_info(1),
        "peer_versions": {name: package_version(name) for name in PEER_PACKAGES},
        "widths": args.widths,
        "runs_per_model": args.runs,
        "median_ms": {str(w): results[w] for w in args.widths},
        "ratios": ratios(results, args.widths),
        "agreement": {str(w): checks[w] for w in args.widths},
        "layer_profile": {"width": max(args.widths), "rows": profile},
        "op_profile": ops,
        "seconds": round(time.time() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "peers.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    (args.out / "peers.md").write_text(markdown(report))
    print(markdown(report))


def ratios(results: dict, widths: list[int]) -> dict:
    def r(w, a, b):
        x, y = results[w].get(a), results[w].get(b)
        return y / x if isinstance(x, float) and isinstance(y, float) else None

    return {
        str(w): {
            "tflite_fp32_speedup_over_stock_fp32": r(w, "tflite_fp32", "stock_fp32"),
            "tflite_int8_time_over_tflite_fp32": r(w, "tflite_fp32", "tflite_int8"),
            "tflite_integer_time_over_tflite_fp32": r(w, "tflite_fp32", "tflite_integer"),
            "tflite_integer_time_over_tflite_int8": r(w, "tflite_int8", "tflite_integer"),
            "tflite_int8_speedup_over_stock_int8": r(w, "tflite_int8", "stock_int8"),
            "tflite_fp32_speedup_over_ort_fp32": r(w, "tflite_fp32", "ort_fp32"),
        }
        for w in widths
    }


def markdown(rep: dict) -> str:
    ws = rep["widths"]
    m = rep["machine"]
    isa = ",".join(m.get("isa") or [])
    lines = [
        "# Peers: tfsep-edge against stock conversions and other runtimes "
        "(generated by benchmarks/peers.py; do not edit)",
        "",
        f"Median ms, batch 1, one thread, model only, {rep['runs_per_model']} calls per model, all runtimes "
        "round-robin in one process (tfsep_edge.bench.harness.measure); untrained weights with randomised statistics. "
        f"Machine: {m.get('cpu_model')}, {m.get('cores')} cores of a VM (read the ratios) ({isa}); "
        + ", ".join(f"{k} {v}" for k, v in ((m.get("versions") or {}) | rep.get("peer_versions", {})).items() if v),
        "",
        "## Latency, median ms",
        "",
        "| runtime and artifact | " + " | ".join(f"C={w}" for w in ws) + " |",
        "|---|" + "---|" * len(ws),
    ]
    for key, label in ROWS:
        cells = []
        for w in ws:
            v = rep["median_ms"][str(w)].get(key)
            cells.append(f"{v:.3f}" if isinstance(v, float) else (v or "-"))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += relative_markdown(rep, ws)
    lines += [
        "",
        "## Ratios (same run)",
        "",
        "| ratio | " + " | ".join(f"C={w}" for w in ws) + " | target |",
        "|---|" + "---|" * (len(ws) + 1),
    ]
    targets = {
        "tflite_fp32_speedup_over_stock_fp32": ("tfsep-edge FP32 .tflite speed-up over stock FP32", ">= 1.15"),
        "tflite_int8_time_over_tflite_fp32": ("tfsep-edge INT8 / FP32 .tflite time", "< 1 at C=40, <= 0.8 at C=60"),
        "tflite_integer_time_over_tflite_fp32": ("tfsep-edge integer / FP32 .tflite time", "<= 0.8 at C=40, C=60"),
        "tflite_integer_time_over_tflite_int8": ("tfsep-edge integer / INT8 .tflite time", "< 1"),
        "tflite_int8_speedup_over_stock_int8": ("tfsep-edge INT8 .tflite speed-up over stock PT2E INT8", "> 1"),
        "tflite_fp32_speedup_over_ort_fp32": ("tfsep-edge FP32 .tflite speed-up over its FP32 ONNX on ORT", "-"),
    }
    for key, (label, target) in targets.items():
        vals = [rep["ratios"][str(w)].get(key) for w in ws]
        lines.append(f"| {label} | " + " | ".join(f"{v:.2f}" if v else "-" for v in vals) + f" | {target} |")
    lines += [
        "",
        "## Agreement",
        "",
        "| on the export validation set + 64 noise clips | " + " | ".join(f"C={w}" for w in ws) + " |",
        "|---|" + "---|" * len(ws),
    ]
    for key, label in (
        ("tflite_fp32_vs_pytorch_max_abs", "FP32 .tflite vs PyTorch, max abs d logit"),
        ("tflite_int8_vs_onnx_int8_top1", ".tflite INT8 vs INT8 ONNX (onnxruntime), top-1"),
        ("tflite_int8_vs_onnx_int8_max_abs", ".tflite INT8 vs INT8 ONNX, max abs d logit"),
        ("tflite_int8_vs_fp32_top1", ".tflite INT8 vs PyTorch FP32, top-1 (noise-like inputs, untrained model)"),
        ("tflite_integer_vs_fp32_top1", "integer .tflite vs PyTorch FP32, top-1 (same inputs)"),
        ("openvino_vs_onnxruntime_int8_top1", "INT8 ONNX: OpenVINO (its default precision) vs onnxruntime, top-1"),
        ("openvino_vs_onnxruntime_int8_max_abs", "INT8 ONNX: OpenVINO (default) vs onnxruntime, max abs d logit"),
        ("openvino_f32_vs_onnxruntime_int8_top1", "INT8 ONNX: OpenVINO (f32 float parts) vs onnxruntime, top-1"),
        ("openvino_f32_vs_onnxruntime_int8_max_abs", "INT8 ONNX: OpenVINO (f32) vs onnxruntime, max abs d logit"),
    ):
        vals = [rep["agreement"][str(w)].get(key) for w in ws]
        pct = "top1" in key
        lines.append(
            f"| {label} | " + " | ".join("-" if v is None else (f"{v:.1%}" if pct else f"{v:.2g}") for v in vals) + " |"
        )
    lines += peer_checks_markdown(rep, ws)
    lines += [
        "",
        "## Graph sizes",
        "",
        "| .tflite: operators / TRANSPOSEs | " + " | ".join(f"C={w}" for w in ws) + " |",
        "|---|" + "---|" * len(ws),
    ]
    for key, label in ROWS[:5]:
        cells = [rep["agreement"][str(w)]["graphs"].get(key) for w in ws]  # none: not installed
        lines.append(
            f"| {label} | " + " | ".join(f"{c['operators']} / {c['transposes']}" if c else "-" for c in cells) + " |"
        )
    prof = rep["layer_profile"]
    lines += [
        "",
        "## Per-layer profile",
        "",
        f"C={prof['width']} (.tflite on LiteRT + XNNPACK; each row = prefix up to and including the "
        "layer minus the prefix before it, medians of round-robin timings; noisy, rows can go slightly negative):",
        "",
        "| layer | FP32 ms | INT8 ms |",
        "|---|---|---|",
    ]
    for row in prof["rows"]:
        lines.append(f"| {row['layer']} | {row['fp32_ms']:.3f} | {row['int8_ms']:.3f} |")
    f, i = sum(r["fp32_ms"] for r in prof["rows"]), sum(r["int8_ms"] for r in prof["rows"])
    lines.append(f"| all layers | {f:.3f} | {i:.3f} |")
    if "op_profile" in rep:
        lines += op_profile_markdown(rep["op_profile"], ws)
    return "\n".join(lines) + "\n"


def relative_markdown(rep: dict, ws: list[int]) -> list[str]:
    """Every timed row over tfsep-edge's FP32 .tflite of the same width, same run."""
    lines = [
        "",
        "## Time over tfsep-edge's FP32 .tflite (same run)",
        "",
        "| runtime and artifact | " + " | ".join(f"C={w}" for w in ws) + " |",
        "|---|" + "---|" * len(ws),
    ]
    for key, label in ROWS:
        cells = []
        for w in ws:
            med = rep["median_ms"][str(w)]
            v, base = med.get(key), med.get("tflite_fp32")
            cells.append(f"{v / base:.2f}" if isinstance(v, float) and isinstance(base, float) else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def peer_checks_markdown(rep: dict, ws: list[int]) -> list[str]:
    """Each other runtime against its reference before it was timed: max |d logit| / tolerance."""
    keys = [k for k, _ in ROWS if any(k in rep["agreement"][str(w)].get("peers", {}) for w in ws)]
    if not keys:
        return []
    lines = [
        "",
        "## Other runtimes checked before timing",
        "",
        "On the probe inputs one at a time (the export validation set + 64 noise clips): max abs d logit against "
        "the reference / the tolerance (FP32: PyTorch's float model, the FP32 export rule 1e-4 + 1e-5 x max |logit|; "
        "INT8: its own PT2E model run in PyTorch, 3 output steps), then top-1 agreement with PyTorch FP32. A row "
        "beyond its tolerance is reported as wrong and not timed.",
        "",
        "| runtime | " + " | ".join(f"C={w}" for w in ws) + " |",
        "|---|" + "---|" * len(ws),
    ]
    for key in keys:
        cells = []
        for w in ws:
            c = rep["agreement"][str(w)]["peers"].get(key, {})
            if "max_abs_logit_diff" not in c:
                cells.append(c.get("status", "-"))
                continue
            verdict = "" if c["status"] == "ok" else " **wrong**"
            cells.append(
                f"{c['max_abs_logit_diff']:.2g} / {c['tolerance']:.2g}, top-1 {c['top1_vs_pytorch_fp32']:.1%}{verdict}"
            )
        lines.append(f"| {dict(ROWS)[key]} | " + " | ".join(cells) + " |")
    return lines


def op_profile_markdown(ops: dict, ws: list[int]) -> list[str]:
    fastest = max(ops[str(w)]["fastest_op_ms"] for w in ws)
    lines = [
        "",
        "## Per-op profile",
        "",
        "Each operator of the .tflite graphs timed alone (a one-op model with the graph's own shapes, weights "
        "and qparams; LiteRT + XNNPACK, one thread, round-robin), summed by kind; ops / ms. Alone, an op "
        "misses what XNNPACK fuses in the whole graph (the stem's PAD) and pays a per-call cost "
        f"(the fastest op took {fastest * 1000:.1f} us), so the sums exceed the model's time.",
        "",
        "| op kind | " + " | ".join(f"C={w} {PRECISIONS[p]}" for w in ws for p in PRECISIONS) + " |",
        "|---|" + "---|" * len(PRECISIONS) * len(ws),
    ]
    kinds = sorted(
        {k for w in ws for k in ops[str(w)]["rows"]},
        key=lambda k: -sum(ops[str(w)]["rows"].get(k, {}).get(f"{p}_ms", 0.0) for w in ws for p in PRECISIONS),
    )
    empty: dict = {}

    def cell(n: int, ms: float) -> str:
        return f"{n} / {ms:.3f}" if n else "-"

    for k in kinds:
        cells = []
        for w in ws:
            r = ops[str(w)]["rows"].get(k, empty)
            cells += [cell(r.get(f"{p}_ops", 0), r.get(f"{p}_ms", 0.0)) for p in PRECISIONS]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    totals = []
    for w in ws:
        rows = ops[str(w)]["rows"].values()
        for p in PRECISIONS:
            totals.append(cell(sum(r.get(f"{p}_ops", 0) for r in rows), sum(r.get(f"{p}_ms", 0.0) for r in rows)))
    lines.append("| all ops | " + " | ".join(totals) + " |")
    return lines


if __name__ == "__main__":
    main()
