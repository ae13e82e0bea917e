"""What kind of model a path holds: the one decision every command makes, without torch.

Each file name of the artifacts is spelled here once. Decided from the path and, where the
suffix does not say, from the file's first bytes, so `model.bin` holding a checkpoint is a
checkpoint and a folder is judged by what it holds.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from tfsep_edge.core.errors import TfsepError

QUANTIZED_FILE = "model_int8.pt"  # inside a `tfsep-edge quantize` folder
QUANT_REPORT_FILE = "quant_report.json"
CALIB_LIST_FILE = "calibration_list.txt"
ONNX_SUFFIX = ".onnx"
TFLITE_SUFFIX = ".tflite"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")

_ZIP = b"PK\x03\x04"  # torch.save's format since torch 1.6
_PICKLE = b"\x80"  # the legacy torch.save / pickle protocol 2+
TFLITE_ID = b"TFL3"  # flatbuffer file identifier, bytes 4..8


class Kind(str, Enum):
    CHECKPOINT = "checkpoint"  # a float model: train's .pt or a reference state_dict (torch)
    QUANTIZED = "quantized"  # a `tfsep-edge quantize` folder (torch)
    ONNX = "onnx"  # an exported model (light runtime)
    TFLITE = "tflite"  # an exported model (light runtime)

    @property
    def described(self) -> str:
        """The kind in a sentence: 'an ONNX model', 'a quantize folder'..."""
        return {
            "checkpoint": "a float checkpoint",
            "quantized": "a `tfsep-edge quantize` folder",
            "onnx": "an ONNX model",
            "tflite": "a .tflite model",
        }[self.value]

    @property
    def needs_torch(self) -> bool:
        return self in (Kind.CHECKPOINT, Kind.QUANTIZED)

    @property
    def exported(self) -> bool:
        return not self.needs_torch


KNOWN = "a checkpoint (.pt), a `tfsep-edge quantize` folder, or an exported .onnx / .tflite model"


def artifact_kind(path: str | Path) -> Kind:
    """The Kind of `path`; TfsepError naming the file and what it should be otherwise."""
    path = Path(path)
    if not path.exists():
        raise TfsepError(f"{path}: no such model file or folder")
    if path.is_dir():
        if (path / QUANTIZED_FILE).is_file():
            return Kind.QUANTIZED
        raise TfsepError(f"{path}: a folder, not a `tfsep-edge quantize` output (no {QUANTIZED_FILE}); give {KNOWN}")
    if path.name == QUANTIZED_FILE:
        return Kind.QUANTIZED
    suffix = path.suffix.lower()
    if suffix == ONNX_SUFFIX:
        return Kind.ONNX
    if suffix == TFLITE_SUFFIX:
        return Kind.TFLITE
    with open(path, "rb") as f:
        head = f.read(8)
    if suffix in CHECKPOINT_SUFFIXES or head.startswith((_ZIP, _PICKLE)):
        return Kind.CHECKPOINT
    if head[4:8] == TFLITE_ID:
        return Kind.TFLITE
    raise TfsepError(f"{path}: not a model tfsep-edge reads; give {KNOWN} (an ONNX file must end in .onnx)")


def require_kind(path: str | Path, allowed: tuple[Kind, ...], command: str, hint: str) -> Kind:
    """artifact_kind, and a one-line error naming the fix when this command does not take that kind."""
    kind = artifact_kind(path)
    if kind not in allowed:
        takes = " or ".join(k.described for k in allowed)
        raise TfsepError(f"{path}: {kind.described}; {command} takes {takes}: {hint}")
    return kind
