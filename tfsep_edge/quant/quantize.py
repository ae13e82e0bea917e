"""Static post-training INT8 quantization of TF-SepNet (fuse, calibrate, convert).

Interface (export.py, budget.py, evaluate.py use it; keep stable):
    quantize_model(model, calib_batches, options) -> (QuantizedArtifact, Calibration)
    save_quantized(artifact, out_dir, report, files) / load_quantized(out_dir) -> QuantizedArtifact
    QuantizedArtifact.int8_model     PyTorch INT8 nn.Module, (B,1,128,44) log-mel -> (B,10) logits
    QuantizedArtifact(x)             int8_model(x) under its engine, no grad
    QuantizedArtifact.float_model    the source TFSepNet (float, unfused, eval)
    QuantizedArtifact.fake_quant_model(act_dtype="int8")  float ops + fake quantization at exactly
                                     the points, scales and zero points the INT8 model uses
    QuantizedArtifact.info           engine, observer, versions, float layers, model/front-end
                                     config, labels, storage_bytes by type, calibration list
OUT folder: model_int8.pt (plain dicts of tensors + a JSON string: torch.load(weights_only=True)
loads it; the INT8 state_dict's quantized tensors load that way too), quant_report.json,
calibration_list.txt. The command and report live in quantize_report.py.

Flow: eager-mode `torch.ao.quantization` (deprecated in torch 2.13, still complete), behind
`_prepare` / `calibrate` / `_convert` here. Tested with torch 2.13.0+cpu (torchao 0.18.0
installed, not needed). Measured against torchao PT2E (X86InductorQuantizer, prepare_pt2e /
convert_pt2e) on the same C=12 model (SYNTHETIC data, 480 held-out clips, 256 calibration
clips): PT2E 97.3% top-1 agreement with FP32, logit SQNR 29.6 dB; this flow 96-98%, 29-30 dB
(seed to seed). Equal fidelity, but the PT2E model runs as float ops with quantize/dequantize
around them unless torch.compile lowers it (4.3 ms vs 2.9 ms eager INT8, 2.6 ms FP32, batch
1, one thread, shared CPU), has no ARM (qnnpack) path in torch, and its graph is not what
the exporter wants; eager gives real int8 kernels on x86 and qnnpack and a model whose every
quantization point is a named module, which is what the fake-quant twin and the QDQ export
mirror. Another flow could replace `calibrate`/`_convert`/`build_fake_quant` alone.

Quantization points (quantization-ready containers QTFSepNet/QBlock/QLayer/FloatIsland/AxisMean
wrap the float model's own modules; TFSepNet itself is unchanged):
    input -> stem conv -> [AdaResNorm island: DeQuant -> norm (float) -> Quant] -> MaxPool (int8)
    -> TF-SepConv blocks -> classifier conv -> DeQuant -> float mean over (F, T).
  In a block: every Conv-BN-ReLU fused (fuse_modules, eval-mode BN folding: logits equal to
  1e-5, tested) and int8 with per-output-channel symmetric qint8 weights; shuffle, split and
  max-pool on quantized tensors (exact: they only move or compare integers); each mean over one
  axis a float island with its own output qparams; residual adds and the concat with
  FloatFunctional. The add is written add(full, broadcast) so the output keeps the full shape.

Choices, each measured against its alternative by the report's "design_choices" (same
calibration unless noted). Logit SQNR chosen vs alternative, C=12 / C=40, from
benchmarks/results/quant_fidelity.md (SYNTHETIC data, 480 held-out clips; agreement there too):
- AdaResNorm stays float (no QuantizedCPU kernel for var; quantizing its internals in ONNX
  cost ~6 points, ../shared/notes/quantization-and-export-facts.md).
- Means as float islands: 29.9 vs 28.5 dB / 33.8 vs 31.6 dB. An int8 mean is requantized onto
  its input's grid, and its ties round differently from QuantizeLinear: the fake-quant twin
  then disagrees with the INT8 model on 2-3% of predictions instead of 0-0.4%.
- Residual adds share the concat's qparams (the concat then copies integers: one rounding per
  branch): 29.9 vs 28.9 / 33.8 vs 31.7.
- Bias correction (subtract E[conv(x, Wq - W)] per channel, calibration inputs): 29.9 vs 29.6
  / 33.8 vs 32.5.
- GPTQ weight rounding (gptq_round: each conv's weights rounded column by column onto the
  min/max per-channel grid, the rounding error pushed onto the not-yet-rounded columns through
  the inverse Hessian of the layer's calibration inputs; a fixed-scale weight observer keeps
  the grid through convert; own calibration): 29.9 vs 28.2 dB, agreement 97.5% vs 95.8% at
  C=12; neutral at C=40 (33.8 vs 34.1). With only the weights quantized it lifts C=12's logit
  SQNR from 29.1 to 37.5 dB; with everything quantized the activations then dominate.
- Stem conv (and so the input) in float: 29.9 vs 29.0 / 33.8 vs 33.3, for +1.5 KB / +5 KB
  (FLOAT_STEM: QuantOptions' default, so the command, the API and the benchmarks make one model).
- 8-bit activations (reduce_range=False) on both engines; 7-bit (own calibration): 23.8 /
  28.5 dB. PyTorch's fbgemm on this AVX2-without-VNNI CPU shows no saturation with 8 bits:
  the INT8 model and its exact fake-quant twin agree on 99-100% of predictions.
- Histogram observer (default) vs min-max (own calibration): 29.9 vs 29.0 / 33.8 vs 30.9.
What limits fidelity: ~130 quantization points each add noise at ~39-48 dB logit SQNR and the
five AdaResNorms amplify it (each loses 2-4 dB); no single layer dominates (leaving any one conv
in float gains < 0.6 dB), so --max-drop can only buy small steps.

Activation types for the export: a quint8 tensor with (scale s, zero point z) holds exactly
the values of a qint8 tensor with (s, z - 128) over -128..127, so fake_quant_model("int8")
(default) expresses every activation as int8 and the QDQ graph runs S8S8 in onnxruntime, which
does not saturate on x86 without VNNI and matches ARM (../shared/notes/aarch64-emulation.md);
"uint8" gives the same numbers over 0..255.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import platform
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tfsep_edge.core.config import DEFAULT_FRONTEND, LABELS, NUM_CLASSES, FrontendConfig
from tfsep_edge.core.errors import TfsepError
from tfsep_edge.core.fileio import check_writable_dir, default_mode
from tfsep_edge.model.tfsepnet import AdaResNorm, ChannelShuffle, ConvBlock, ModelConfig, TFSepNet, TimeFreqSepConvs

ENGINES = ("x86", "qnnpack")
OBSERVERS = ("histogram", "minmax")
FORMAT = "tfsep-edge/int8"
FORMAT_VERSION = 1
MODEL_FILE = "model_int8.pt"
REPORT_FILE = "quant_report.json"
CALIB_LIST_FILE = "calibration_list.txt"


def default_engine() -> str:
    """qnnpack on ARM (Raspberry Pi), x86 (fbgemm) elsewhere."""
    machine = platform.machine().lower()
    return "qnnpack" if machine.startswith(("arm", "aarch64")) else "x86"


# --- warnings -------------------------------------------------------------------------------
# torch 2.13 warns that the eager torch.ao.quantization API and quantized tensor creation are
# deprecated ("will be removed"); both still work and are what this module is built on, so
# these exact messages (seen with torch 2.13.0+cpu) are silenced inside this module's calls
# only. The third comes only with reduce_range=True (the 7-bit alternative the report
# measures). Any other warning still shows.
_KNOWN_WARNINGS = (
    (DeprecationWarning, r"torch\.ao\.quantization is deprecated"),
    (UserWarning, r"torch\.quantize_per_tensor, torch\.quantize_per_channel and other quantized tensor creation"),
    (UserWarning, r"Please use quant_min and quant_max to specify the range for observers"),
)


@contextlib.contextmanager
def known_warnings_silenced() -> Iterator[None]:
    with warnings.catch_warnings():
        for category, pattern in _KNOWN_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern, category=category)
        yield


@contextlib.contextmanager
def engine_scope(engine: str) -> Iterator[None]:
    """Run with torch.backends.quantized.engine set to `engine` (restored afterwards)."""
    if engine not in torch.backends.quantized.supported_engines:
        raise TfsepError(
            f"--engine {engine}: not available in this PyTorch build "
            f"(available: {', '.join(e for e in torch.backends.quantized.supported_engines if e != 'none')})"
        )
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


# --- the quantization-ready model -----------------------------------------------------------
# Same weights as TFSepNet; the containers below only add quant stubs, FloatFunctionals and
# named mean ops so that every quantization point is a module the eager flow (and the
# fake-quant twin) can see. TFSepNet's own float behaviour is untouched.


class QLayer(nn.Module):
    """One conv unit (stem, fused Conv-BN-ReLU, classifier); int8, or a float island."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body
        self.float_island = False
        self.dequant = torch.ao.quantization.DeQuantStub()
        self.quant = torch.ao.quantization.QuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.float_island:
            return self.quant(self.body(self.dequant(x)))
        return self.body(x)


class FloatIsland(nn.Module):
    """DeQuant -> float module -> Quant: for ops without a good int8 kernel (AdaResNorm)."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.dequant = torch.ao.quantization.DeQuantStub()
        self.body = body
        self.quant = torch.ao.quantization.QuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quant(self.body(self.dequant(x)))


class AxisMean(nn.Module):
    """x.mean(dim, keepdim=True) on int8 (requantized to the input's grid), or as a float island
    with its own output qparams. A module so the fake-quant twin can mirror it."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.float_island = False
        self.dequant = torch.ao.quantization.DeQuantStub()
        self.quant = torch.ao.quantization.QuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.float_island:
            return self.quant(self.dequant(x).mean(self.dim, keepdim=True))
        return x.mean(self.dim, keepdim=True)


class QBlock(nn.Module):
    """TimeFreqSepConvs with the adds/concat as FloatFunctionals and each conv a QLayer."""

    def __init__(self, block: TimeFreqSepConvs):
        super().__init__()
        self.transition = block.transition
        self.half = block.half
        if self.transition:
            self.trans_conv = QLayer(block.trans_conv)
        self.freq_dw_conv = QLayer(block.freq_dw_conv)
        self.temp_dw_conv = QLayer(block.temp_dw_conv)
        self.freq_pw_conv = QLayer(block.freq_pw_conv)
        self.temp_pw_conv = QLayer(block.temp_pw_conv)
        self.shuffle_layer = ChannelShuffle(block.shuffle_layer.groups)
        self.freq_mean = AxisMean(2)
        self.temp_mean = AxisMean(3)
        self.freq_add = torch.ao.nn.quantized.FloatFunctional()
        self.temp_add = torch.ao.nn.quantized.FloatFunctional()
        self.concat = torch.ao.nn.quantized.FloatFunctional()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.transition:
            x = self.trans_conv(x)
        x = self.shuffle_layer(x)
        x1, x2 = torch.split(x, self.half, dim=1)
        y1 = self.freq_pw_conv(self.freq_mean(self.freq_dw_conv(x1)))
        y1 = self.freq_add.add(x1, y1)  # full-size operand first: output keeps x1's shape
        y2 = self.temp_pw_conv(self.temp_mean(self.temp_dw_conv(x2)))
        y2 = self.temp_add.add(x2, y2)
        return self.concat.cat([y1, y2], dim=1)


class QTFSepNet(nn.Module):
    """TFSepNet rebuilt for eager-mode quantization (sharing nothing: weights are copied)."""

    def __init__(self, model: TFSepNet):
        super().__init__()
        model = copy.deepcopy(model).eval()
        self.config = model.config
        self.quant = torch.ao.quantization.QuantStub()
        layers: list[nn.Module] = []
        for m in model.feature:
            if isinstance(m, TimeFreqSepConvs):
                layers.append(QBlock(m))
            elif isinstance(m, AdaResNorm):
                layers.append(FloatIsland(m))
            elif isinstance(m, nn.Conv2d):
                layers.append(QLayer(m))
            else:  # MaxPool2d runs on quantized tensors
                layers.append(m)
        self.feature = nn.Sequential(*layers)
        self.classifier = QLayer(model.classifier)
        self.dequant = torch.ao.quantization.DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.feature[0].float_island:  # a float stem takes the float input as it is
            x = self.quant(x)
        y = self.dequant(self.classifier(self.feature(x)))
        return y.mean((-1, -2))


def fuse(qmodel: QTFSepNet) -> QTFSepNet:
    """Fuse every ConvBlock's Conv-BN-ReLU in place (eval-mode fusion folds BN into the conv)."""
    for m in qmodel.modules():
        if isinstance(m, ConvBlock):
            torch.ao.quantization.fuse_modules(m, [["conv", "bn", "activation"]], inplace=True)
    return qmodel


def conv_layers(qmodel: nn.Module) -> list[str]:
    """Names of every QLayer (the units sensitivity and fallback work on), in forward order."""
    return [name for name, m in qmodel.named_modules() if isinstance(m, QLayer)]


def layer_conv(layer: QLayer) -> nn.Conv2d:
    """The float Conv2d of a (fused) QLayer: ConvReLU2d's first child, or the conv itself."""
    body = layer.body.conv if isinstance(layer.body, ConvBlock) else layer.body
    return body[0] if isinstance(body, nn.Sequential) else body


def fused_float(
    model: TFSepNet,
    float_layers: Iterable[str] = (),
    float_means: bool = False,
    bias_delta: dict[str, torch.Tensor] | None = None,
    rounded: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> QTFSepNet:
    """The fused float quantization-ready model (no observers), islands set for float_layers,
    the int8 convs' weights replaced by `rounded` (name -> (weight on its int8 grid, scales)) and
    `bias_delta` subtracted from their biases (bias correction)."""
    qm = fuse(QTFSepNet(model)).eval()
    float_layers = tuple(float_layers)
    for name, (weight, _scales) in (rounded or {}).items():
        if name not in float_layers:
            layer_conv(qm.get_submodule(name)).weight = nn.Parameter(weight.clone(), requires_grad=False)
    for name, delta in (bias_delta or {}).items():
        if name in float_layers:
            continue
        conv = layer_conv(qm.get_submodule(name))
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)
        conv.bias = nn.Parameter(bias - delta, requires_grad=False)
    for m in qm.modules():
        if isinstance(m, AxisMean):
            m.float_island = float_means
    names = set(conv_layers(qm))
    for name in float_layers:
        if name not in names:
            raise TfsepError(f"float layer '{name}': no such conv layer (known: {', '.join(sorted(names))[:200]}...)")
        qm.get_submodule(name).float_island = True
    return qm


# --- qconfig, prepare, convert ----------------------------------------------------------------


# The stem conv (and so the model input) stays float by default: +1.5 KB at C=12, measured
# better logit SQNR (docstring above). float_layers=() quantizes it too.
FLOAT_STEM: tuple[str, ...] = ("feature.0",)


@dataclass(frozen=True)
class QuantOptions:
    engine: str = "x86"
    observer: str = "histogram"
    float_layers: tuple[str, ...] = FLOAT_STEM
    float_means: bool = True
    reduce_range: bool = False  # 7-bit activations: measured 4-5 dB worse logit SQNR, not needed (docstring)
    bias_correction: bool = True
    shared_add_qparams: bool = True
    gptq: bool = True  # weight rounding: GPTQ on the calibration inputs, else round to nearest

    @property
    def act_reduce_range(self) -> bool:
        return self.reduce_range

    def with_float_layers(self, layers: Iterable[str]) -> QuantOptions:
        return dataclasses.replace(self, float_layers=tuple(layers))


class FixedScaleWeightObserver(torch.ao.quantization.observer.PerChannelMinMaxObserver):
    """Per-channel symmetric qint8 with given scales: the weights were already rounded onto
    that grid (GPTQ), and a min/max observer would pick a slightly different scale."""

    def __init__(self, scales: torch.Tensor | None = None, **kwargs):
        super().__init__(dtype=torch.qint8, qscheme=torch.per_channel_symmetric, **kwargs)
        self.fixed_scales = scales

    def calculate_qparams(self):
        if self.fixed_scales is None:
            return super().calculate_qparams()
        return self.fixed_scales.clone(), torch.zeros(len(self.fixed_scales), dtype=torch.int64)


def make_qconfig(options: QuantOptions) -> torch.ao.quantization.QConfig:
    obs = torch.ao.quantization.observer
    act_cls = obs.HistogramObserver if options.observer == "histogram" else obs.MinMaxObserver
    activation = act_cls.with_args(
        dtype=torch.quint8, qscheme=torch.per_tensor_affine, reduce_range=options.act_reduce_range
    )
    weight = obs.PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    return torch.ao.quantization.QConfig(activation=activation, weight=weight)


def _assign_qconfig(qm: QTFSepNet, qconfig) -> None:
    """qconfig everywhere except the float parts: AdaResNorm bodies and float-island conv bodies."""
    qm.qconfig = qconfig
    if qm.feature[0].float_island:  # a float stem: the input is never quantized, and the stem's
        qm.quant.qconfig = None  # output goes straight on into the float AdaResNorm island
        qm.feature[0].quant.qconfig = None
    for m in qm.modules():
        if isinstance(m, FloatIsland):
            m.body.qconfig = None
        elif isinstance(m, AxisMean) and not m.float_island:
            m.quant.qconfig = None
            m.dequant.qconfig = None
        elif isinstance(m, QLayer):
            if m.float_island:
                m.body.qconfig = None
            else:  # stubs unused: keep them plain (no observer, no int8 module)
                m.quant.qconfig = None
                m.dequant.qconfig = None


def _prepare(qm: QTFSepNet, options: QuantOptions, scales: dict[str, torch.Tensor] | None = None) -> nn.Module:
    qconfig = make_qconfig(options)
    _assign_qconfig(qm, qconfig)
    for name, s in (scales or {}).items():  # weights already on their grids: keep those scales
        layer = qm.get_submodule(name)
        if not layer.float_island:
            weight = FixedScaleWeightObserver.with_args(scales=s)
            layer.body.qconfig = torch.ao.quantization.QConfig(activation=qconfig.activation, weight=weight)
    with known_warnings_silenced():
        return torch.ao.quantization.prepare(qm, inplace=True)  # callers pass a fresh model


def _observer_sources(prepared: nn.Module, shared_add_qparams: bool = True) -> dict[str, str]:
    """For every observer, the observer of the all-int8 calibration model that saw the same tensor.

    A float-island QLayer's output QuantStub sees what the conv's output observer saw (eager
    calibration runs float ops throughout), so one calibration serves every float-layer set.
    With shared_add_qparams the residual adds take the concat's observer: the concat then
    only copies integers (its inputs already have its scale and zero point), one rounding
    per branch instead of two.
    """
    out = {}
    for name in dict(prepared.named_modules()):
        if not name.endswith("activation_post_process"):
            continue
        owner = name[: -len(".activation_post_process")]
        src = name
        if owner.endswith(".quant"):
            layer = owner[: -len(".quant")]
            parent = prepared.get_submodule(layer)
            if isinstance(parent, QLayer):
                body = parent.body
                inner = "body.conv" if isinstance(body, ConvBlock) else "body"
                src = f"{layer}.{inner}.activation_post_process"
        elif shared_add_qparams and owner.endswith(("freq_add", "temp_add")):
            src = owner.rsplit(".", 1)[0] + ".concat.activation_post_process"
        out[name] = src
    return out


@dataclass
class Calibration:
    """Observers of the all-int8 model after the calibration data, and the bias corrections.

    One calibration serves every float-layer set and both mean modes (see _observer_sources).
    """

    prepared: nn.Module
    bias_delta: dict[str, torch.Tensor]
    rounded: dict[str, tuple[torch.Tensor, torch.Tensor]]  # GPTQ weights (empty: round to nearest)
    observer: str
    reduce_range: bool
    windows: int


def _convert(calibration: Calibration, model: TFSepNet, options: QuantOptions) -> nn.Module:
    """INT8 model for options.float_layers, from the observers of the calibrated all-int8 model."""
    key = (options.observer, options.act_reduce_range, options.gptq)
    if (calibration.observer, calibration.reduce_range, bool(calibration.rounded)) != key:
        raise ValueError("calibration was made with another observer / activation range / weight rounding")
    delta = calibration.bias_delta if options.bias_correction else None
    rounded = calibration.rounded or None
    scales = {n: sc for n, (_w, sc) in calibration.rounded.items()}
    # Every activation observer is replaced by a calibrated one below: cheap placeholders here.
    placeholder = dataclasses.replace(options, observer="minmax")
    qm = fused_float(model, options.float_layers, options.float_means, delta, rounded)
    prepared = _prepare(qm, placeholder, scales)
    for name, src in _observer_sources(prepared, options.shared_add_qparams).items():
        parent_name, _, attr = name.rpartition(".")
        # Shared, not copied: convert only reads an observer's statistics, and the variant's
        # prepared model is never run.
        setattr(prepared.get_submodule(parent_name), attr, calibration.prepared.get_submodule(src))
    with known_warnings_silenced(), engine_scope(options.engine):
        return torch.ao.quantization.convert(prepared, inplace=True).eval()


def weight_qparams(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel symmetric int8 scales/zero points, by the observer convert uses."""
    obs = torch.ao.quantization.observer.PerChannelMinMaxObserver(
        dtype=torch.qint8, qscheme=torch.per_channel_symmetric
    )
    obs(weight.detach())
    return obs.calculate_qparams()


def bias_corrections(
    qm: QTFSepNet, batches: list[torch.Tensor], rounded: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
) -> dict[str, torch.Tensor]:
    """Per conv layer, the mean output shift its int8 weights cause: E[conv(x, Wq - W)] over the
    calibration inputs of the float model, per output channel (empirical bias correction;
    subtracting it removes the systematic part of the weight error). Wq: `rounded` where
    given, else round to nearest."""
    layers = {n: layer_conv(qm.get_submodule(n)) for n in conv_layers(qm)}
    sums = {n: torch.zeros(c.out_channels, dtype=torch.float64) for n, c in layers.items()}
    counts = dict.fromkeys(layers, 0)
    errors = {}
    for n, c in layers.items():
        if rounded and n in rounded:
            wq = rounded[n][0]
        else:
            scale, zp = weight_qparams(c.weight)
            wq = torch.fake_quantize_per_channel_affine(c.weight.detach(), scale, zp.to(torch.int32), 0, -128, 127)
        errors[n] = wq - c.weight.detach()

    hooks = []
    for n, c in layers.items():

        def hook(mod, inputs, _out, n=n):
            d = nn.functional.conv2d(inputs[0], errors[n], None, mod.stride, mod.padding, mod.dilation, mod.groups)
            sums[n] += d.double().sum((0, 2, 3))
            counts[n] += d.shape[0] * d.shape[2] * d.shape[3]

        hooks.append(c.register_forward_hook(hook))
    try:
        with torch.no_grad():
            for b in batches:
                qm(b)
    finally:
        for h in hooks:
            h.remove()
    return {n: (sums[n] / max(counts[n], 1)).float() for n in layers}


def _layer_hessians(qm: QTFSepNet, batches: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per conv layer and group, sum of x x^T over its input patches (float model, calibration
    data): (groups, k, k) with k = in-channels-per-group * kh * kw."""
    layers = {n: layer_conv(qm.get_submodule(n)) for n in conv_layers(qm)}
    sums: dict[str, torch.Tensor] = {}
    hooks = []
    for n, c in layers.items():

        def hook(mod, inputs, _out, n=n):
            kh, kw = mod.kernel_size
            u = nn.functional.unfold(inputs[0], (kh, kw), padding=mod.padding, stride=mod.stride)  # (B, Cin*k, L)
            u = u.transpose(1, 2).reshape(-1, mod.groups, u.shape[1] // mod.groups).double()  # (B*L, G, k)
            h = torch.einsum("ngi,ngj->gij", u, u)
            sums[n] = sums[n] + h if n in sums else h

        hooks.append(c.register_forward_hook(hook))
    try:
        with torch.no_grad():
            for b in batches:
                qm(b)
    finally:
        for h in hooks:
            h.remove()
    return sums


def gptq_round(weight: torch.Tensor, hessians: torch.Tensor, damp: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """Round a conv weight onto its per-channel symmetric int8 grid column by column, pushing each
    column's rounding error onto the columns not yet rounded through the inverse Hessian of the
    layer's inputs (GPTQ, Frantar et al. 2022). The scales are min/max ones, as round to nearest
    would use. Returns (weight on the grid, scales)."""
    scales, _ = weight_qparams(weight)
    cout = weight.shape[0]
    groups, k, _ = hessians.shape
    per_group = cout // groups
    w_all = weight.detach().reshape(cout, k).double()
    out = torch.empty_like(w_all)
    s_all = scales.double()
    eye = torch.eye(k, dtype=torch.float64)
    for g in range(groups):
        h = hessians[g]
        h = h + damp * max(float(h.diagonal().mean()), 1e-12) * eye
        hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
        rows = slice(g * per_group, (g + 1) * per_group)
        w, s = w_all[rows].clone(), s_all[rows]
        for i in range(k):
            q = torch.clamp(torch.round(w[:, i] / s), -128, 127) * s
            out[rows, i] = q
            err = (w[:, i] - q) / hinv[i, i]
            w[:, i + 1 :] -= err[:, None] * hinv[i, i + 1 :][None, :]
    return out.reshape(weight.shape).float(), scales.float()


def calibrate(model: TFSepNet, batches: Iterable[torch.Tensor], options: QuantOptions) -> Calibration:
    """Bias corrections, then the all-int8 model's observers over the calibration batches."""
    batches = list(batches)
    count = sum(int(b.shape[0]) for b in batches)
    if count == 0:
        raise TfsepError("calibration: no calibration windows; give at least 2 audio files")
    float_qm = fused_float(model)
    rounded = {}
    if options.gptq:
        hessians = _layer_hessians(float_qm, batches)
        rounded = {n: gptq_round(layer_conv(float_qm.get_submodule(n)).weight, h) for n, h in hessians.items()}
    delta = bias_corrections(float_qm, batches, rounded)
    # Every mean as an island here so its output observer exists for variants that need it.
    base = dataclasses.replace(options, float_layers=(), float_means=True)
    qm = fused_float(model, (), True, delta if options.bias_correction else None, rounded or None)
    prepared = _prepare(qm, base, {n: sc for n, (_w, sc) in rounded.items()})
    with torch.no_grad(), known_warnings_silenced():
        for batch in batches:
            prepared(batch)
    return Calibration(prepared, delta, rounded, options.observer, options.act_reduce_range, count)


# --- fake-quant twin ----------------------------------------------------------------------------


def _act_range(dtype: str) -> tuple[int, int, int]:
    """(quant_min, quant_max, zero-point shift) to express a quint8 activation in `dtype`."""
    if dtype == "int8":
        return -128, 127, -128
    if dtype == "uint8":
        return 0, 255, 0
    raise ValueError(f"act_dtype {dtype!r}: use 'int8' or 'uint8'")


class FakeQuant(nn.Module):
    """Per-tensor fake quantization with fixed qparams (exports to QuantizeLinear/DequantizeLinear)."""

    def __init__(self, scale: float, zero_point: int, act_dtype: str):
        super().__init__()
        qmin, qmax, shift = _act_range(act_dtype)
        self.scale, self.zero_point = float(scale), int(zero_point) + shift
        self.quant_min, self.quant_max = qmin, qmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fake_quantize_per_tensor_affine(x, self.scale, self.zero_point, self.quant_min, self.quant_max)


class FakeQuantConv(nn.Module):
    """Conv2d (+ReLU) with per-channel fake-quantized weights and a fake-quantized output."""

    def __init__(self, qconv: nn.Module, relu: bool, act_dtype: str):
        super().__init__()
        w = qconv.weight()
        self.weight = nn.Parameter(w.dequantize(), requires_grad=False)
        self.register_buffer("w_scale", w.q_per_channel_scales().to(torch.float32))
        self.register_buffer("w_zero_point", w.q_per_channel_zero_points().to(torch.int32))
        bias = qconv.bias()
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False) if bias is not None else None
        self.stride, self.padding = qconv.stride, qconv.padding
        self.dilation, self.groups = qconv.dilation, qconv.groups
        self.relu = relu
        self.out = FakeQuant(qconv.scale, qconv.zero_point, act_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.fake_quantize_per_channel_affine(self.weight, self.w_scale, self.w_zero_point, 0, -128, 127)
        y = nn.functional.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if self.relu:
            y = torch.relu(y)
        return self.out(y)


class FakeQuantFunctional(nn.Module):
    """FloatFunctional's add/cat followed by fake quantization with the int8 op's qparams."""

    def __init__(self, scale: float, zero_point: int, act_dtype: str):
        super().__init__()
        self.out = FakeQuant(scale, zero_point, act_dtype)

    def add(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.out(a + b)

    def cat(self, xs: list[torch.Tensor], dim: int = 0) -> torch.Tensor:
        return self.out(torch.cat(xs, dim=dim))


class FakeQuantMean(nn.Module):
    """Mean over one axis, requantized to its input's qparams (what quantized mean does)."""

    def __init__(self, dim: int, scale: float, zero_point: int, act_dtype: str):
        super().__init__()
        self.dim = dim
        self.out = FakeQuant(scale, zero_point, act_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(x.mean(self.dim, keepdim=True))


def _qconv_of(layer: nn.Module) -> tuple[nn.Module, bool]:
    """The quantized conv inside an int8 QLayer, and whether it has a fused ReLU."""
    body = layer.body
    conv = body.conv if isinstance(body, ConvBlock) or hasattr(body, "conv") else body
    return conv, "ReLU" in type(conv).__name__


def build_fake_quant(int8_model: nn.Module, float_qready: QTFSepNet, act_dtype: str = "int8") -> QTFSepNet:
    """Float twin of `int8_model`: same structure as `float_qready`, every int8 op replaced by its
    float op + fake quantization with the int8 model's scales/zero points."""
    fq = copy.deepcopy(float_qready).eval()
    stem_float = fq.feature[0].float_island
    if stem_float:
        fq.quant = nn.Identity()
    else:
        fq.quant = FakeQuant(int8_model.quant.scale.item(), int8_model.quant.zero_point.item(), act_dtype)
    fq.dequant = nn.Identity()
    for name, m in list(fq.named_modules()):
        if not isinstance(m, (FloatIsland, QLayer, QBlock)):
            continue
        q = int8_model.get_submodule(name)
        if isinstance(m, FloatIsland):
            m.dequant = nn.Identity()
            m.quant = FakeQuant(q.quant.scale.item(), q.quant.zero_point.item(), act_dtype)
        elif isinstance(m, QLayer):
            if m.float_island:
                m.dequant = nn.Identity()
                if stem_float and m is fq.feature[0]:
                    m.quant = nn.Identity()
                else:
                    m.quant = FakeQuant(q.quant.scale.item(), q.quant.zero_point.item(), act_dtype)
            else:
                qconv, relu = _qconv_of(q)
                m.body = FakeQuantConv(qconv, relu, act_dtype)
        elif isinstance(m, QBlock):
            for branch, dim in (("freq", 2), ("temp", 3)):
                prev = q.get_submodule(f"{branch}_dw_conv")
                mean = q.get_submodule(f"{branch}_mean")
                if mean.float_island:  # own output qparams
                    s, z = mean.quant.scale.item(), mean.quant.zero_point.item()
                elif prev.float_island:
                    s, z = prev.quant.scale.item(), prev.quant.zero_point.item()
                else:
                    qconv, _ = _qconv_of(prev)
                    s, z = qconv.scale, qconv.zero_point
                setattr(m, f"{branch}_mean", FakeQuantMean(dim, s, z, act_dtype))
                add = q.get_submodule(f"{branch}_add")
                setattr(m, f"{branch}_add", FakeQuantFunctional(add.scale, add.zero_point, act_dtype))
            m.concat = FakeQuantFunctional(q.concat.scale, q.concat.zero_point, act_dtype)
    return fq


def output_step(fq: QTFSepNet) -> float:
    """The scale of the twin's last quantization point (the classifier's output): logits are means
    of integers on this grid, so export validation states its INT8 tolerance in these steps."""
    cls = fq.classifier
    point = cls.body.out if isinstance(cls.body, FakeQuantConv) else cls.quant
    return float(point.scale)


# --- the artifact --------------------------------------------------------------------------------


@dataclass
class QuantizedArtifact:
    int8_model: nn.Module
    float_model: TFSepNet
    options: QuantOptions
    info: dict = field(default_factory=dict)

    @property
    def frontend(self) -> FrontendConfig:
        """The front end the model was calibrated with (from info; older files: the default)."""
        values = self.info.get("frontend")
        return FrontendConfig.from_dict(values) if values else DEFAULT_FRONTEND

    def fused_float_model(self) -> QTFSepNet:
        """The fused float quantization-ready model (islands as in the int8 model)."""
        return fused_float(self.float_model, self.options.float_layers, self.options.float_means)

    def fake_quant_model(self, act_dtype: str = "int8") -> QTFSepNet:
        """Float ops + fake quantization at exactly the int8 model's points and qparams.

        act_dtype "int8" (default) expresses each quint8 activation (s, z) as qint8 (s, z - 128):
        the same values and clamping, exported as S8S8 QDQ. "uint8" keeps (s, z) over 0..255.
        """
        with known_warnings_silenced():
            return build_fake_quant(self.int8_model, self.fused_float_model(), act_dtype)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), engine_scope(self.options.engine), known_warnings_silenced():
            return self.int8_model(x)


def storage_bytes(int8_model: nn.Module) -> dict:
    """Bytes of the stored quantized model by type, counted from its tensors.

    int8 weights (1 byte each), int32 biases (4 bytes each: what an int8 kernel/ONNX stores),
    float32 scales and zero points (per-channel weight qparams + one pair per activation
    point), float32 parameters left in float (AdaResNorm's rho/gamma/beta, float-island convs).
    """
    out = {"int8_weights": 0, "int32_biases": 0, "float_qparams": 0, "float_norm_params": 0, "float_params": 0}
    with known_warnings_silenced():
        for m in int8_model.modules():
            if hasattr(m, "weight") and callable(m.weight) and hasattr(m, "scale"):  # quantized conv
                w = m.weight()
                out["int8_weights"] += w.numel()
                out["float_qparams"] += 4 * 2 * w.q_per_channel_scales().numel() + 4 * 2  # w s/zp + out s/zp
                b = m.bias()
                if b is not None:
                    out["int32_biases"] += 4 * b.numel()
            elif isinstance(m, AdaResNorm):
                out["float_norm_params"] += 4 * sum(p.numel() for p in m.parameters())
            elif isinstance(m, nn.Conv2d):  # a conv kept in float
                out["float_params"] += 4 * sum(p.numel() for p in m.parameters())
            elif type(m).__name__ in ("Quantize", "QFunctional"):
                out["float_qparams"] += 4 * 2
    out["total"] = sum(out.values())
    return out


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    try:  # not imported: importing torchao loads CUDA extensions and prints noise
        ao = version("torchao")
    except PackageNotFoundError:  # torchao is optional for the eager flow
        ao = None
    return {"torch": torch.__version__, "torchao": ao, "numpy": np.__version__}


def quantize_model(
    model: TFSepNet,
    calib_batches: Iterable[torch.Tensor],
    options: QuantOptions,
    calibrated: Calibration | None = None,
    frontend: FrontendConfig = DEFAULT_FRONTEND,
) -> tuple[QuantizedArtifact, Calibration]:
    """Fuse, calibrate (unless `calibrated` is given), convert -> (artifact, calibrated observers)."""
    if options.engine not in ENGINES:
        raise TfsepError(f"--engine {options.engine}: choose one of {', '.join(ENGINES)}")
    if options.observer not in OBSERVERS:
        raise TfsepError(f"--observer {options.observer}: choose one of {', '.join(OBSERVERS)}")
    model = copy.deepcopy(model).eval()
    if calibrated is None:
        calibrated = calibrate(model, calib_batches, options)
    int8 = _convert(calibrated, model, options)
    info = {
        "format": FORMAT,
        "engine": options.engine,
        "observer": options.observer,
        "activation_dtype": "quint8",
        "activation_reduce_range": options.act_reduce_range,
        "float_means": options.float_means,
        "bias_correction": options.bias_correction,
        "calibration_windows": calibrated.windows,
        "weight_dtype": "qint8 per-channel symmetric",
        "float_layers": list(options.float_layers),
        "versions": versions(),
        "model": model.config.to_dict(),
        "labels": list(LABELS),
        "frontend": frontend.to_dict(),
        "shared_add_qparams": options.shared_add_qparams,
        "weight_rounding": "gptq" if options.gptq else "nearest",
        "storage_bytes": storage_bytes(int8),
    }
    return QuantizedArtifact(int8, model, options, info), calibrated


# --- save / load (no pickled code: tensors and JSON only) --------------------------------------


def _check_weights_only_types(state: dict) -> dict:
    """Quantized convs store weight (qint8 tensor), bias (float or None), scale, zero_point."""
    bad = [k for k, v in state.items() if v is not None and not isinstance(v, torch.Tensor)]
    if bad:
        raise RuntimeError(f"int8 state_dict holds non-tensor entries {bad[:3]}: would need pickled code")
    return dict(state)


def artifact_payload(artifact: QuantizedArtifact) -> dict:
    """What model_int8.pt holds: plain dicts of tensors + a JSON string (weights_only-loadable)."""
    int8_state = _check_weights_only_types(artifact.int8_model.state_dict())
    float_state = {k: v.detach().clone() for k, v in artifact.float_model.state_dict().items()}
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "info_json": json.dumps(artifact.info, sort_keys=True),
        "int8_state_dict": int8_state,
        "float_state_dict": float_state,
    }


def _empty_int8(model: TFSepNet, options: QuantOptions) -> nn.Module:
    """An int8 model of the right structure (qparams to be overwritten by load_state_dict)."""
    mm = dataclasses.replace(options, observer="minmax")
    prepared = _prepare(fused_float(model, options.float_layers, options.float_means), mm)
    with torch.no_grad(), known_warnings_silenced():
        prepared(torch.zeros(1, 1, 8, 8))
        with engine_scope(options.engine):
            return torch.ao.quantization.convert(prepared, inplace=False).eval()


def artifact_from_payload(payload: dict, where: str = "quantized model") -> QuantizedArtifact:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise TfsepError(f"{where}: not a tfsep-edge quantized model (run `tfsep-edge quantize CKPT` to make one)")
    info = json.loads(payload["info_json"])
    cfg = ModelConfig(**{k: info["model"][k] for k in ("width", "shuffle_groups", "dropout", "num_classes")})
    model = TFSepNet(cfg.width, cfg.shuffle_groups, cfg.dropout, cfg.num_classes)
    model.load_state_dict(payload["float_state_dict"])
    model.eval()
    options = QuantOptions(
        info["engine"],
        info["observer"],
        tuple(info["float_layers"]),
        bool(info["float_means"]),
        bool(info["activation_reduce_range"]),
        bool(info["bias_correction"]),
        bool(info.get("shared_add_qparams", True)),
        info.get("weight_rounding", "nearest") == "gptq",
    )
    int8 = _empty_int8(model, options)
    with known_warnings_silenced(), engine_scope(options.engine):
        int8.load_state_dict(payload["int8_state_dict"])
    return QuantizedArtifact(int8.eval(), model, options, info)


def load_quantized(path: str | Path) -> QuantizedArtifact:
    """Load the OUT folder written by `tfsep-edge quantize` (or its model_int8.pt directly)."""
    path = Path(path)
    file = path / MODEL_FILE if path.is_dir() else path
    if not file.is_file():
        raise TfsepError(f"{path}: no {MODEL_FILE} here; run `tfsep-edge quantize CKPT --calib CALIB` first")
    try:
        # torch.load rebuilds quantized tensors through deprecated paths (TypedStorage,
        # quantized tensor creation): the known notices, silenced here once for every caller.
        with known_warnings_silenced(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="TypedStorage is deprecated", category=UserWarning)
            payload = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        first = first if len(first) > 12 else f"{type(exc).__name__} {first}".strip()  # not a bare "105"
        raise TfsepError(
            f"{file}: not a readable tfsep-edge quantized model ({first[:120]}); "
            "make it again with `tfsep-edge quantize CKPT --calib CALIB`"
        ) from None
    return artifact_from_payload(payload, str(file))


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def save_quantized(
    artifact: QuantizedArtifact, out: str | Path, report: dict | None = None, files: dict[str, str] | None = None
) -> Path:
    """Write the OUT folder atomically: a temporary folder next to OUT is filled, validated
    (reloaded with weights_only=True and run), then renamed onto OUT. A failure leaves OUT as it
    was (nothing, or the previous quantize output it would have replaced).

    Holds model_int8.pt (tensors + JSON, no pickled code), quant_report.json (`report`) and the
    text `files` (name -> content, e.g. the calibration list)."""
    out = Path(out)
    check_writable_dir(out)
    if out.exists() and not is_quantized_dir(out):
        raise TfsepError(f"{out}: exists and is not a `tfsep-edge quantize` output; choose another -o folder")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="TypedStorage is deprecated", category=UserWarning)
            torch.save(artifact_payload(artifact), tmp / MODEL_FILE)
        _validate_saved(artifact, tmp)
        if report is not None:
            (tmp / REPORT_FILE).write_text(json.dumps(report, indent=2, sort_keys=True, default=_json_default) + "\n")
        for name, text in (files or {}).items():
            (tmp / name).write_text(text)
        for f in tmp.iterdir():
            _fsync(f)
        os.chmod(tmp, default_mode(out, folder=True))  # mkdtemp's folder is owner-only (files got the umask)
        if out.exists():  # replace an earlier quantize output: move it aside first, then drop it
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _validate_saved(artifact: QuantizedArtifact, folder: Path) -> None:
    """The saved file must reload (weights_only) into a model giving the same logits."""
    probe = torch.linspace(-2.0, 2.0, 2 * 128 * 44).reshape(2, 1, 128, 44)
    again = load_quantized(folder)
    if not torch.equal(again(probe), artifact(probe)):
        raise RuntimeError("the saved INT8 model does not reproduce the in-memory model's logits")


def _json_default(value):
    if isinstance(value, float | np.floating):
        return float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def is_quantized_dir(path: str | Path) -> bool:
    path = Path(path)
    return (path / MODEL_FILE).is_file() if path.is_dir() else path.name == MODEL_FILE


__all__ = [
    "QuantizedArtifact",
    "QuantOptions",
    "load_quantized",
    "quantize_model",
    "default_engine",
    "storage_bytes",
    "DEFAULT_FRONTEND",
    "FrontendConfig",
]


# --- measurements ------------------------------------------------------------------------------


def sqnr_db(reference: torch.Tensor, test: torch.Tensor) -> float:
    """10 log10(signal power / error power) in dB (inf when identical)."""
    noise = (reference - test).double().pow(2).sum().item()
    signal = reference.double().pow(2).sum().item()
    if noise == 0:
        return float("inf")
    return 10.0 * float(np.log10(max(signal, 1e-30) / noise))


def _point_modules(qm: nn.Module) -> list[str]:
    """Named units whose outputs are compared: every conv unit, norm island, block, mean."""
    kinds = (QLayer, FloatIsland, QBlock, AxisMean)
    return [n for n, m in qm.named_modules() if isinstance(m, kinds)]


def _capture(model: nn.Module, names: list[str], x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    outs: dict[str, torch.Tensor] = {}
    hooks = []
    for name in names:

        def hook(_m, _i, out, name=name):
            outs[name] = out.dequantize() if out.is_quantized else out.detach().clone()

        hooks.append(model.get_submodule(name).register_forward_hook(hook))
    try:
        with torch.no_grad():
            y = model(x)
    finally:
        for h in hooks:
            h.remove()
    return y, outs


def layer_sqnr(artifact: QuantizedArtifact, x: torch.Tensor) -> dict[str, float]:
    """SQNR (dB) of every unit's INT8 output against the fused float model's, on input x.

    Cumulative: each figure includes the error of everything upstream, as a deployed model has.
    """
    float_qm = artifact.fused_float_model()
    names = _point_modules(float_qm)
    _, ref = _capture(float_qm, names, x)
    with engine_scope(artifact.options.engine), known_warnings_silenced():
        _, got = _capture(artifact.int8_model, names, x)
    return {n: sqnr_db(ref[n], got[n]) for n in names}


def run_int8(artifact: QuantizedArtifact, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    return torch.cat([artifact(b) for b in x.split(batch)]) if len(x) else torch.zeros(0, NUM_CLASSES)


def run_float(model: nn.Module, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(b) for b in x.split(batch)]) if len(x) else torch.zeros(0, NUM_CLASSES)
