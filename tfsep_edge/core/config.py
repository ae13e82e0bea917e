"""The one definition of the labels, devices, front-end constants and challenge limits.

Everything in tfsep-edge (training, calibration, export, predict, bench, budget) reads these.
No torch here: the light runtime imports this module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from tfsep_edge.core.errors import TfsepError

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


# Mel filterbank kinds the front end computes. "kaldi": torchaudio.compliance.kaldi.get_mel_banks
# (triangles on the 1127 ln(1 + f / 700) scale, no warping), padded with a zero column for the
# Nyquist bin, as both CP-JKU's front end and the authors' CpMel do.
MEL_BANKS: tuple[str, ...] = ("kaldi",)


@dataclass(frozen=True)
class FrontendConfig:
    """Log-mel parameters. The defaults are CP-JKU's DCASE22 set-up as the TF-SepNet report uses it
    (preset "cpjku"); FRONTENDS names the others.

    The steps are fixed (pre-emphasis y[n] = x[n+1] - preemphasis * x[n], which drops a sample;
    torch.stft(center=True, pad_mode="reflect") with a Hann window of win_length centred in n_fft
    points; power; mel banks; log(x + log_offset); (x + norm_shift) / norm_scale): the fields are
    their numbers. Fields added later come last with defaults equal to the old behaviour, so a dict
    stored before they existed loads to the same front end.
    """

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
    window_periodic: bool = False  # torch.hann_window(win_length, periodic=...)
    mel_banks: str = "kaldi"  # one of MEL_BANKS

    def __post_init__(self) -> None:
        # A stored front end this code cannot compute must fail, not fall back to another one.
        problem = None
        if self.mel_banks not in MEL_BANKS:
            problem = f"mel_banks={self.mel_banks!r} is not one tfsep-edge computes ({', '.join(MEL_BANKS)})"
        elif not (0 < self.win_length <= self.n_fft) or self.n_fft % 2:
            problem = f"win_length={self.win_length}, n_fft={self.n_fft}: need 0 < win_length <= n_fft, n_fft even"
        elif self.hop_length < 1 or self.n_mels < 4:
            problem = f"hop_length={self.hop_length}, n_mels={self.n_mels}: need hop_length >= 1, n_mels >= 4"
        elif not (0.0 <= self.fmin < self.fmax <= self.sample_rate / 2):
            problem = f"fmin={self.fmin}, fmax={self.fmax}: need 0 <= fmin < fmax <= sample_rate / 2"
        if problem:
            raise TfsepError(f"front end: {problem}; use a preset ({', '.join(FRONTENDS)}) or fix the value")

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

# The named front ends, in one place. "cpjku": the TF-SepNet report's (CP-JKU DCASE22), 1 s ->
# 128 x 44. "cpmel": CpMel of the authors' later toolkit (yqcai888/easy_dcase_task1,
# its util.spec_extractor module; n_mels 512 as its TF-SepNet-64 configs set it), 1 s -> 512 x 64.
FRONTENDS: dict[str, FrontendConfig] = {
    "cpjku": DEFAULT_FRONTEND,
    "cpmel": FrontendConfig(n_fft=4096, win_length=3072, hop_length=500, n_mels=512),
}


def frontend_preset(name: str) -> FrontendConfig:
    """The FrontendConfig of a preset name; TfsepError naming the choices for any other."""
    try:
        return FRONTENDS[name]
    except (KeyError, TypeError):
        raise TfsepError(f"front end {name!r}: unknown; choose one of {', '.join(FRONTENDS)}") from None


def preset_name(cfg: FrontendConfig) -> str | None:
    """The preset a config equals, or None for a custom one (for messages and summaries)."""
    return next((name for name, preset in FRONTENDS.items() if preset == cfg), None)


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

# Calibration files quantize takes by default: 256 left INT8 accuracy measurably below FP32 where
# more did not (docs/quantization.md, "Fidelity at C=12 and C=40"); each clip costs milliseconds.
DEFAULT_NUM_CALIB = 1024

# An integer model's AdaResNorms whose statistics are int16 (quantize --integer --int16-norms):
# the full-resolution first one (the default: C=12 fits an 80 KB Cortex-M4 arena), every one (more
# fidelity, more arena), none (the smallest arena). docs/quantization.md measures each.
INT16_NORMS = ("first", "all", "none")
