"""What every exported file carries, whatever its format (.onnx metadata_props, .tflite metadata
buffers): labels, front end, width, precision, version and the budget, so the runtime needs
nothing else (runtime/model_info.py reads it back)."""

from __future__ import annotations

import json

from tfsep_edge.core import config
from tfsep_edge.core.config import LABELS, FrontendConfig


def budget_figures(float_model, stored: dict, cfg: FrontendConfig) -> dict:
    """params/MACs by the official NeSsi count (float model) and the stored bytes of this file."""
    from tfsep_edge.budget.count import official_count

    params, macs, _ = official_count(float_model, cfg.n_mels, cfg.n_frames)
    return {
        "width": float_model.config.width,
        "shuffle_groups": getattr(float_model.config, "groups", None),  # None: no one shuffle-group count
        "model": float_model.config.to_dict(),  # family, norm / depth: `budget FILE` rebuilds this network
        "params": params,
        "macs": macs,
        "counted_by": "torchinfo (NeSsi) on the float model",
        "stored_param_bytes": stored["total"],
        "stored_bytes_by_type": stored,
    }


def model_metadata(kind: str, precision: str, width: int, cfg: FrontendConfig, budget: dict) -> dict[str, str]:
    """The metadata entries of an exported file (`kind`: "logmel" or "waveform" input)."""
    return {
        config.META_INPUT: kind,
        config.META_LABELS: json.dumps(list(LABELS)),
        config.META_FRONTEND: json.dumps(cfg.to_dict(), sort_keys=True),
        config.META_WIDTH: str(width),
        config.META_PRECISION: precision,
        config.META_VERSION: config.VERSION,
        config.META_BUDGET: json.dumps(budget, sort_keys=True),
    }


def io_metadata(inp: tuple[float, int], out: tuple[float, int]) -> dict[str, str]:
    """The META_IO entry of an --io int8 file: its int8 input's and output's points (a
    microcontroller application, and runtime/model_info.io_points, read them)."""

    def point(p: tuple[float, int]) -> dict:
        return {"dtype": "int8", "scale": float(p[0]), "zero_point": int(p[1])}

    return {config.META_IO: json.dumps({"input": point(inp), "output": point(out)}, sort_keys=True)}


def description(width: int, precision: str, kind: str) -> str:
    """The one-line description a file carries (ONNX doc_string, TFLite model description)."""
    return f"TF-SepNet width {width}, {precision}, input {kind}; made by tfsep-edge {config.VERSION}"
