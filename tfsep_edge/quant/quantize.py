"""Static post-training INT8 quantization of TF-SepNet: the entry point.

    quantize_model(model, calib_batches, options) -> (QuantizedArtifact, Calibration)

Fused Conv-BN-ReLU, histogram-calibrated per-tensor activations, per-channel symmetric int8
weights rounded by GPTQ with bias correction, AdaResNorm and the means as float islands
(eager `torch.ao.quantization`). Each choice and the figures that decided it:
docs/quantization.md (measured figures live there and in benchmarks/results, not here).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch

from tfsep_edge.core.config import LABELS, FrontendConfig
from tfsep_edge.core.errors import TfsepError
from tfsep_edge.model.families import family_frontend
from tfsep_edge.model.tfsepnet import TFSepNet
from tfsep_edge.quant.artifact import FORMAT, QuantizedArtifact, storage_bytes, versions
from tfsep_edge.quant.calibrate import Calibration, QuantOptions, calibrate, convert, integer_points
from tfsep_edge.quant.engine import ENGINES, OBSERVERS
from tfsep_edge.quant.ready import INTEGER_FAMILIES


def quantize_model(
    model: TFSepNet,
    calib_batches: Iterable[torch.Tensor],
    options: QuantOptions,
    calibrated: Calibration | None = None,
    frontend: FrontendConfig | None = None,
) -> tuple[QuantizedArtifact, Calibration]:
    """Fuse, calibrate (unless `calibrated` is given), convert -> (artifact, calibrated observers).
    `frontend`: what the calibration features were computed with (None: the family's)."""
    if options.engine not in ENGINES:
        raise TfsepError(f"--engine {options.engine}: choose one of {', '.join(ENGINES)}")
    if options.observer not in OBSERVERS:
        raise TfsepError(f"--observer {options.observer}: choose one of {', '.join(OBSERVERS)}")
    options.check_integer()
    if options.integer and model.config.family not in INTEGER_FAMILIES:
        family = model.config.family
        raise TfsepError(f"an integer model of a {family}: --integer builds {' | '.join(INTEGER_FAMILIES)}")
    model = copy.deepcopy(model).eval()
    if calibrated is None:
        calibrated = calibrate(model, calib_batches, options)
    int8 = convert(calibrated, model, options)
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
        "frontend": (frontend or family_frontend(model.config.family)).to_dict(),
        "shared_add_qparams": options.shared_add_qparams,
        "weight_rounding": "gptq" if options.gptq else "nearest",
        "storage_bytes": storage_bytes(int8),
        "integer": options.integer,
    }
    if options.integer:
        info["integer_points"] = integer_points(calibrated, options.int16_norms)
    return QuantizedArtifact(int8, model, options, info), calibrated
