"""The one definition of the labels, devices, front-end constants and challenge limits.

Everything in tfsep-edge (training, calibration, export, predict, bench, budget) reads these.
No torch here: the light runtime imports this module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

VERSION = "0.1.0"  # the package version (pyproject.toml says the same)

# TAU Urban Acoustic Scenes 2022 Mobile, in the DCASE order (the order of the logits).
LABELS: tuple[str, ...] = (
    "airport",
    "bus",
    "metro",
    "metro_station",
    "park",
    "public_square",
    "shopping_mall",
    "street_pedestrian",
    "street_traffic",
    "tram",
)
NUM_CLASSES = len(LABELS)

# Recording devices of TAU22; s4..s6 never appear in the training split.
DEVICES: tuple[str, ...] = ("a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6")
SEEN_DEVICES: tuple[str, ...] = ("a", "b", "c", "s1", "s2", "s3")
UNSEEN_DEVICES: tuple[str, ...] = ("s4", "s5", "s6")

# DCASE 2023 Task 1 complexity limits.
MAX_PARAM_BYTES = 128_000
MAX_MACS = 30_000_000


@dataclass(frozen=True)
class FrontendConfig:
    """Log-mel parameters (CP-JKU DCASE22 set-up, as the TF-SepNet report uses)."""

    sample_rate: int = 32_000
    clip_seconds: float = 1.0
    preemphasis: float = 0.97
    n_fft: int = 2048
    win_length: int = 2048
    hop_length: int = 744
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float = 16_000.0
    log_offset: float = 1e-5
    norm_shift: float = 4.5
    norm_scale: float = 5.0

    @property
    def clip_samples(self) -> int:
        return int(round(self.sample_rate * self.clip_seconds))

    @property
    def n_frames(self) -> int:
        # Pre-emphasis drops one sample; the centred STFT then gives 1 + n // hop frames.
        return 1 + (self.clip_samples - 1) // self.hop_length

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> FrontendConfig:
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**known)


DEFAULT_FRONTEND = FrontendConfig()

# Keys of the metadata every exported model stores (.onnx metadata_props, .tflite metadata
# buffers), whatever its format. The runtime reads these to know what the model takes; values are
# strings (JSON where structured). The stored strings never change, so older files still load.
META_INPUT = "tfsep_edge.input"  # "logmel" (batch, 1, n_mels, frames) or "waveform" (batch, samples)
META_LABELS = "tfsep_edge.labels"  # JSON list, DCASE order
META_FRONTEND = "tfsep_edge.frontend"  # JSON of FrontendConfig.to_dict()
META_WIDTH = "tfsep_edge.width"
META_PRECISION = "tfsep_edge.precision"  # "fp32" or "int8"
META_VERSION = "tfsep_edge.version"
META_BUDGET = "tfsep_edge.budget"  # JSON: params, macs, param_bytes, ...
META_IO = "tfsep_edge.io"  # int8-io files only, JSON: {"input"|"output": {"dtype", "scale", "zero_point"}}
