"""The one place the torch-free runtime and bench reach PyTorch models: a checkpoint or a
`tfsep-edge quantize` folder, loaded lazily (torch is imported only when one is given)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tfsep_edge.core.config import FrontendConfig
from tfsep_edge.core.kinds import Kind
from tfsep_edge.core.torch_check import require_torch


@dataclass
class TorchModel:
    """A loaded PyTorch model: `module` is what runs (the INT8 model or the float one)."""

    module: object
    float_model: object  # the TFSepNet it was made from (width, MAC count)
    frontend: FrontendConfig
    precision: str  # "fp32" | "int8"
    load_ms: float
    extra: dict = field(default_factory=dict)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(B, 1, n_mels, frames) float32 log-mel -> (B, classes) logits."""
        import torch

        with torch.inference_mode():
            return self.module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).float().numpy()


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only settable before the first parallel work; harmless if already set
        pass


def load_torch_model(path: Path, kind: Kind, threads: int) -> TorchModel:
    """A Kind.CHECKPOINT or Kind.QUANTIZED path (core.kinds.artifact_kind) as a TorchModel."""
    require_torch(f"{path} (a PyTorch {kind.value} model)")
    set_threads(threads)
    import torch

    t0 = time.perf_counter_ns()
    if kind is Kind.QUANTIZED:
        from tfsep_edge.quant.artifact import load_quantized

        loaded = load_quantized(path)  # it silences torch's known notices itself, nothing else
        load_ms = (time.perf_counter_ns() - t0) / 1e6
        # The engine the model was converted for, set once (not per call as the artifact's __call__ does).
        torch.backends.quantized.engine = loaded.options.engine
        extra = {"torch_threads": threads, "quantized_engine": loaded.options.engine}
        return TorchModel(loaded.int8_model, loaded.float_model, loaded.frontend, "int8", load_ms, extra)
    from tfsep_edge.model.checkpoint import load_checkpoint

    model, info = load_checkpoint(path)  # info["frontend"]: the features it was trained on
    load_ms = (time.perf_counter_ns() - t0) / 1e6
    return TorchModel(model, model, info["frontend"], "fp32", load_ms, {"torch_threads": threads})


def official_macs(float_model, cfg: FrontendConfig) -> int:
    """MACs of one clip by the budget's official (NeSsi/torchinfo) count."""
    from tfsep_edge.budget.count import official_count

    return int(official_count(float_model, cfg.n_mels, cfg.n_frames)[1])


def width_macs(width: int, cfg: FrontendConfig) -> int:
    """The official count of an untrained float model of this width (same architecture, same MACs)."""
    from tfsep_edge.model.tfsepnet import TFSepNet

    return official_macs(TFSepNet(width).eval(), cfg)


def torch_log_mel(cfg: FrontendConfig):
    """The torch twin of the front end, as bench feeds PyTorch models: windows -> log-mel tensor."""
    import torch

    from tfsep_edge.signal.frontend import log_mel_torch

    def frontend(windows: np.ndarray):
        with torch.inference_mode():
            return log_mel_torch(torch.from_numpy(windows), cfg)

    return frontend


def known_warnings_silenced():
    """A context in which torch's known quantization notices (quant.engine lists them) stay quiet."""
    from tfsep_edge.quant.engine import known_warnings_silenced as silenced

    return silenced()
