"""tfsep-edge: TF-SepNet from a PyTorch checkpoint to a verified INT8 model on an edge CPU.

The light runtime (audio, frontend, runtime, bench) needs only numpy, onnxruntime, soundfile
and soxr; `TFSepNet` and `load_model` import torch on first use.
"""

from __future__ import annotations

from tfsep_edge.core.config import VERSION as __version__

__all__ = ["TFSepNet", "load_model", "__version__"]


def __getattr__(name: str):
    # Lazy: `import tfsep_edge` must work where torch is not installed.
    if name == "TFSepNet":
        from tfsep_edge.model.tfsepnet import TFSepNet

        return TFSepNet
    if name == "load_model":
        from tfsep_edge.model.checkpoint import load_model

        return load_model
    raise AttributeError(name)
