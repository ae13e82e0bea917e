"""Calibration and conversion: qconfigs, prepare, observe, GPTQ/bias-corrected weights, convert."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from tfsep_edge.core.config import INT16_NORMS
from tfsep_edge.core.errors import TfsepError
from tfsep_edge.model.tfsepnet import AdaResNorm, ConvBlock, TFSepNet
from tfsep_edge.quant.bias_grid import bias_grid, on_grid
from tfsep_edge.quant.engine import engine_scope, known_warnings_silenced
from tfsep_edge.quant.gptq import bias_corrections, gptq_round, layer_hessians
from tfsep_edge.quant.integer_norm import NORM_POINTS, norm_values
from tfsep_edge.quant.ready import (
    AxisMean,
    ConvBn,
    FloatIsland,
    QLayer,
    QTFSepNet,
    float_stem,
    fused_float,
    layer_conv,
)
from tfsep_edge.quant.twin import conv_input_scales, qconv_of

# --- qconfig, prepare, convert ----------------------------------------------------------------


# The stem conv (and so the model input) stays float by default: a few KB more for a better
# logit SQNR (docs/quantization.md, "Stem conv"). float_layers=() quantizes it too.
FLOAT_STEM: tuple[str, ...] = ("feature.0",)


def check_int16_norms(int16_norms: str) -> None:
    if int16_norms not in INT16_NORMS:
        raise ValueError(f"int16_norms is one of {', '.join(INT16_NORMS)}, not {int16_norms!r}")


@dataclass(frozen=True)
class QuantOptions:
    engine: str = "x86"
    observer: str = "histogram"
    float_layers: tuple[str, ...] = FLOAT_STEM
    float_means: bool = True
    # 7-bit activations (--reduce-range), for x86 int8 kernels without VNNI; their SQNR cost is
    # in docs/quantization.md
    reduce_range: bool = False
    bias_correction: bool = True
    shared_add_qparams: bool = True
    gptq: bool = True  # weight rounding: GPTQ on the calibration inputs, else round to nearest
    # Integer from input to logits (quant/integer_norm.py): int8 stem and input, int8 means with
    # their own calibrated output points, AdaResNorm in int8 ops, an int8 global mean. Needs
    # float_layers=() and float_means=True (the PyTorch INT8 model keeps the norms and means as
    # float islands; the twin and the exports compute them in integers).
    integer: bool = False
    # With `integer`: which AdaResNorms compute their statistics in int16 (integer_norm.WideSpec),
    # one of INT16_NORMS; the rest stay int8. More int16 norms, more fidelity and more TFLite
    # Micro arena (docs/quantization.md measures both).
    int16_norms: str = "first"

    def __post_init__(self):
        check_int16_norms(self.int16_norms)

    @property
    def act_reduce_range(self) -> bool:
        return self.reduce_range

    def with_float_layers(self, layers: Iterable[str]) -> QuantOptions:
        return dataclasses.replace(self, float_layers=tuple(layers))

    def check_integer(self) -> None:
        if self.integer and (self.float_layers or not self.float_means):
            raise TfsepError("an integer model has no float conv layers and keeps its means on their own points")


INTEGER = QuantOptions(float_layers=(), float_means=True, integer=True)


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
    for layer in float_stem(qm):
        layer.quant.qconfig = None
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


def prepare(qm: QTFSepNet, options: QuantOptions, scales: dict[str, torch.Tensor] | None = None) -> nn.Module:
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
                inner = "body.conv" if isinstance(body, ConvBlock | ConvBn) else "body"
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
    # Integer models: observers of each AdaResNorm's intermediate points (by island name, then
    # integer_norm.NORM_POINTS) and of the global mean of the classifier's output ("pool").
    integer_observers: dict | None = None


def convert(calibration: Calibration, model: TFSepNet, options: QuantOptions) -> nn.Module:
    """INT8 model for options.float_layers, from the observers of the calibrated all-int8 model."""
    key = (options.observer, options.act_reduce_range, options.gptq)
    if (calibration.observer, calibration.reduce_range, bool(calibration.rounded)) != key:
        raise ValueError("calibration was made with another observer / activation range / weight rounding")
    options.check_integer()
    delta = calibration.bias_delta if options.bias_correction else None
    rounded = calibration.rounded or None
    scales = {n: sc for n, (_w, sc) in calibration.rounded.items()}
    # Every activation observer is replaced by a calibrated one below: cheap placeholders here.
    placeholder = dataclasses.replace(options, observer="minmax")
    qm = fused_float(model, options.float_layers, options.float_means, delta, rounded)
    prepared = prepare(qm, placeholder, scales)
    for name, src in _observer_sources(prepared, options.shared_add_qparams).items():
        parent_name, _, attr = name.rpartition(".")
        # Shared, not copied: convert only reads an observer's statistics, and the variant's
        # prepared model is never run.
        setattr(prepared.get_submodule(parent_name), attr, calibration.prepared.get_submodule(src))
    with known_warnings_silenced(), engine_scope(options.engine):
        int8 = torch.ao.quantization.convert(prepared, inplace=True).eval()
        return biases_on_int32_grid(int8)


def biases_on_int32_grid(int8: nn.Module) -> nn.Module:
    """Every int8 conv's float bias snapped onto its int32 grid s_in * s_w (bias_grid), in place:
    fbgemm adds the float bias as it is, qnnpack and the exported graphs add it rounded there, so
    snapped, PyTorch INT8 computes the same sums as the .onnx and .tflite files. Run under the engine."""
    for name, in_scale in conv_input_scales(int8).items():
        qconv, _ = qconv_of(int8.get_submodule(name))
        bias = qconv.bias()
        if bias is None:
            continue
        w = qconv.weight()
        grid = bias_grid(in_scale, w.q_per_channel_scales().float().numpy())
        qconv.set_weight_bias(w, torch.from_numpy(on_grid(bias.detach().numpy(), grid)).to(bias.dtype))
    return int8


def calibrate(model: TFSepNet, batches: Iterable[torch.Tensor], options: QuantOptions) -> Calibration:
    """Bias corrections, then the all-int8 model's observers over the calibration batches."""
    batches = list(batches)
    count = sum(int(b.shape[0]) for b in batches)
    if count == 0:
        raise TfsepError("calibration: no calibration windows; give at least 2 audio files")
    float_qm = fused_float(model)
    rounded = {}
    if options.gptq:
        hessians = layer_hessians(float_qm, batches)
        rounded = {n: gptq_round(layer_conv(float_qm.get_submodule(n)).weight, h) for n, h in hessians.items()}
    delta = bias_corrections(float_qm, batches, rounded)
    # Every mean as an island here so its output observer exists for variants that need it.
    base = dataclasses.replace(options, float_layers=(), float_means=True)
    qm = fused_float(model, (), True, delta if options.bias_correction else None, rounded or None)
    prepared = prepare(qm, base, {n: sc for n, (_w, sc) in rounded.items()})
    observers = make_integer_observers(prepared, options) if options.integer else None
    hooks = observe_integer_points(prepared, observers) if observers is not None else []
    try:
        with torch.no_grad(), known_warnings_silenced():
            for batch in batches:
                prepared(batch)
    finally:
        for h in hooks:
            h.remove()
    return Calibration(prepared, delta, rounded, options.observer, options.act_reduce_range, count, observers)


# --- the integer model's extra points --------------------------------------------------------------


def _int8_observer(options: QuantOptions) -> torch.ao.quantization.observer.ObserverBase:
    obs = torch.ao.quantization.observer
    cls = obs.HistogramObserver if options.observer == "histogram" else obs.MinMaxObserver
    with known_warnings_silenced():  # torch warns about reduce_range, whatever its value
        return cls(dtype=torch.qint8, qscheme=torch.per_tensor_affine, reduce_range=options.act_reduce_range)


def make_integer_observers(prepared: nn.Module, options: QuantOptions) -> dict:
    norms = {
        name: {p: _int8_observer(options) for p in NORM_POINTS}
        for name, m in prepared.named_modules()
        if isinstance(m, FloatIsland) and isinstance(m.body, AdaResNorm)
    }
    return {"norms": norms, "pool": _int8_observer(options)}


def observe_integer_points(prepared: nn.Module, observers: dict) -> list:
    """Forward hooks feeding the integer points' observers with the float model's values."""
    hooks = []
    for name, points in observers["norms"].items():
        norm = prepared.get_submodule(name).body

        def feed(_m, args, norm=norm, points=points):
            values = norm_values(args[0], norm.rho, norm.gamma, norm.beta, norm.eps)
            for p, observer in points.items():
                observer(values[p])

        hooks.append(norm.register_forward_pre_hook(feed))
    pool = observers["pool"]
    hooks.append(prepared.classifier.register_forward_hook(lambda _m, _a, out: pool(out.mean((-1, -2)))))
    return hooks


def _qparams(observer) -> list:
    scale, zero_point = observer.calculate_qparams()
    return [float(scale.reshape(-1)[0]), int(zero_point.reshape(-1)[0])]


def wide_norm_names(norms, int16_norms: str) -> list[str]:
    """The islands (feature.<i>) of `norms` whose statistics are int16 under `int16_norms`:
    "first" the full-resolution first norm, "all" every norm, "none" no norm."""
    check_int16_norms(int16_norms)
    ordered = sorted(norms, key=lambda name: int(name.rsplit(".", 1)[-1]))
    return {"first": ordered[:1], "all": ordered, "none": []}[int16_norms]


def integer_points(calibration: Calibration, int16_norms: str = "first") -> dict:
    """The integer points as JSON ({"norms": {island: {point: [scale, zp]}}, "pool": [scale, zp],
    "wide_norms": [island]}, int8 zero points): saved in the artifact's info, read by the twin.
    The `wide_norms` (wide_norm_names) compute their statistics in int16 (integer_norm.WideSpec);
    artifacts made before wide norms have no "wide_norms" and stay all int8."""
    obs = calibration.integer_observers
    if obs is None:
        raise ValueError("calibration was made without the integer points (QuantOptions.integer)")
    norms = {name: {p: _qparams(o) for p, o in points.items()} for name, points in obs["norms"].items()}
    return {"norms": norms, "pool": _qparams(obs["pool"]), "wide_norms": wide_norm_names(norms, int16_norms)}
