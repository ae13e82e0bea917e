"""What an export (or a verify) starts from: a checkpoint or a `tfsep-edge quantize` folder,
loaded once for every format."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tfsep_edge.core.config import FrontendConfig
from tfsep_edge.core.errors import TfsepError
from tfsep_edge.core.kinds import Kind, require_kind


@dataclass
class Source:
    """What is being exported: the float model, and the INT8 artifact when --int8."""

    path: Path
    float_model: object
    frontend: FrontendConfig
    artifact: object | None = None

    def float_only(self) -> Source:
        """The same source without its INT8 artifact (the FP32 graph of the same float weights)."""
        return Source(self.path, self.float_model, self.frontend)


def load_source(path: Path, int8: bool) -> Source:
    """A checkpoint or a quantized folder; --int8 needs the latter."""
    from tfsep_edge.quant.artifact import load_quantized

    hint = "it is already exported; pass its checkpoint or quantize folder"
    kind = require_kind(path, (Kind.CHECKPOINT, Kind.QUANTIZED), "export", hint)
    if kind is Kind.QUANTIZED:
        art = load_quantized(path)  # it silences the torch 2.13 notices it triggers (quant/engine.py)
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

    model, info = load_checkpoint(path)  # info["frontend"]: the features it was trained on
    return Source(path, model, info["frontend"])
