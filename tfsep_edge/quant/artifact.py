"""The quantized artifact: the INT8 model with its float source and options, and its OUT folder
(model_int8.pt: tensors and JSON only, torch.load(weights_only=True); quant_report.json;
calibration_list.txt), written atomically and validated on save."""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tfsep_edge.core.config import INT16_NORMS, FrontendConfig
from tfsep_edge.core.errors import TfsepError
from tfsep_edge.core.fileio import atomic_folder, check_writable_dir
from tfsep_edge.core.kinds import QUANT_REPORT_FILE, QUANTIZED_FILE
from tfsep_edge.model.easy_nets import TFSepNetV2
from tfsep_edge.model.families import build_model, config_from_dict, get_family, model_frontend
from tfsep_edge.model.tfsepnet import AdaResNorm, TFSepNet
from tfsep_edge.quant.calibrate import QuantOptions, prepare, wide_norm_names
from tfsep_edge.quant.engine import engine_scope, known_warnings_silenced
from tfsep_edge.quant.ready import QTFSepNet, fused_float
from tfsep_edge.quant.twin import build_fake_quant, conv_input_scales

FORMAT = "tfsep-edge/int8"
FORMAT_VERSION = 1


# --- the artifact --------------------------------------------------------------------------------


@dataclass
class QuantizedArtifact:
    int8_model: nn.Module
    float_model: TFSepNet | TFSepNetV2
    options: QuantOptions
    info: dict = field(default_factory=dict)

    @property
    def frontend(self) -> FrontendConfig:
        """The front end the model was calibrated with (from info; older files: its family's)."""
        return model_frontend(self.float_model.config.family, self.info.get("frontend"), "the quantized model")

    def fused_float_model(self) -> QTFSepNet:
        """The fused float quantization-ready model (islands as in the int8 model)."""
        return fused_float(self.float_model, self.options.float_layers, self.options.float_means)

    def fake_quant_model(self, act_dtype: str = "int8") -> QTFSepNet:
        """Float ops + fake quantization at exactly the int8 model's points and qparams.

        act_dtype "int8" (default) expresses each quint8 activation (s, z) as qint8 (s, z - 128):
        the same values and clamping (the ONNX writer stores conv inputs as uint8 again: onnx_int8).
        "uint8" keeps (s, z) over 0..255.
        """
        with engine_scope(self.options.engine), known_warnings_silenced():
            in_scales = conv_input_scales(self.int8_model, self.frontend)
            points = self.info.get("integer_points") if self.options.integer else None
            fused = self.fused_float_model()
            return build_fake_quant(self.int8_model, fused, act_dtype, in_scales, points, self.frontend.n_frames)

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


def _empty_int8(model: TFSepNet | TFSepNetV2, options: QuantOptions) -> nn.Module:
    """An int8 model of the right structure (qparams to be overwritten by load_state_dict)."""
    mm = dataclasses.replace(options, observer="minmax")
    prepared = prepare(fused_float(model, options.float_layers, options.float_means), mm)
    with torch.no_grad(), known_warnings_silenced():
        prepared(torch.zeros(1, *get_family(model.config.family).input_shape))
        with engine_scope(options.engine):
            return torch.ao.quantization.convert(prepared, inplace=False).eval()


def int16_norms_of(points: dict | None) -> str:
    """The --int16-norms choice an integer model was made with: the one whose wide_norm_names are
    its recorded wide norms (artifacts from before wide norms have none)."""
    if not points:
        return "first"  # not an integer model: the option's default, unused
    wide = points.get("wide_norms", [])
    return next((c for c in INT16_NORMS if wide_norm_names(points["norms"], c) == wide), "first")


def artifact_from_payload(payload: dict, where: str = "quantized model") -> QuantizedArtifact:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise TfsepError(f"{where}: not a tfsep-edge quantized model (run `tfsep-edge quantize CKPT` to make one)")
    info = json.loads(payload["info_json"])
    # no "family" (older artifacts): a TF-SepNet; no "norm" (from before --norm): AdaResNorm
    model = build_model(config_from_dict(info["model"]))
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
        bool(info.get("integer", False)),  # artifacts from before integer models: False
        int16_norms=int16_norms_of(info.get("integer_points")),
    )
    int8 = _empty_int8(model, options)
    with known_warnings_silenced(), engine_scope(options.engine):
        int8.load_state_dict(payload["int8_state_dict"])
    return QuantizedArtifact(int8.eval(), model, options, info)


def load_quantized(path: str | Path) -> QuantizedArtifact:
    """Load the OUT folder written by `tfsep-edge quantize` (or its model_int8.pt directly)."""
    path = Path(path)
    file = path / QUANTIZED_FILE if path.is_dir() else path
    if not file.is_file():
        raise TfsepError(f"{path}: no {QUANTIZED_FILE} here; run `tfsep-edge quantize CKPT --calib CALIB` first")
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
    artifact = artifact_from_payload(payload, str(file))
    model_frontend(artifact.float_model.config.family, artifact.info.get("frontend"), file)  # named here, once
    return artifact


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
    with atomic_folder(out) as tmp:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="TypedStorage is deprecated", category=UserWarning)
            torch.save(artifact_payload(artifact), tmp / QUANTIZED_FILE)
        _validate_saved(artifact, tmp)
        if report is not None:
            text = json.dumps(report, indent=2, sort_keys=True, default=_json_default)
            (tmp / QUANT_REPORT_FILE).write_text(text + "\n")
        for name, text in (files or {}).items():
            (tmp / name).write_text(text)
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
    return (path / QUANTIZED_FILE).is_file() if path.is_dir() else path.name == QUANTIZED_FILE
