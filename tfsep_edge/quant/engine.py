"""The quantized engines (x86 fbgemm, qnnpack) and the torch notices this package silences."""

from __future__ import annotations

import contextlib
import platform
import warnings
from collections.abc import Iterator

import torch

from tfsep_edge.core.errors import TfsepError

ENGINES = ("x86", "qnnpack")
OBSERVERS = ("histogram", "minmax")


def default_engine() -> str:
    """qnnpack on ARM (Raspberry Pi), x86 (fbgemm) elsewhere."""
    machine = platform.machine().lower()
    return "qnnpack" if machine.startswith(("arm", "aarch64")) else "x86"


# --- warnings -------------------------------------------------------------------------------
# torch 2.13 warns that the eager torch.ao.quantization API and quantized tensor creation are
# deprecated ("will be removed"); both still work and are what this module is built on, so
# these exact messages (seen with torch 2.13.0+cpu) are silenced inside this module's calls
# only. The third comes only with reduce_range=True (the 7-bit alternative the report
# measures). Any other warning still shows.
_KNOWN_WARNINGS = (
    (DeprecationWarning, r"torch\.ao\.quantization is deprecated"),
    (UserWarning, r"torch\.quantize_per_tensor, torch\.quantize_per_channel and other quantized tensor creation"),
    (UserWarning, r"Please use quant_min and quant_max to specify the range for observers"),
)


@contextlib.contextmanager
def known_warnings_silenced() -> Iterator[None]:
    with warnings.catch_warnings():
        for category, pattern in _KNOWN_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern, category=category)
        yield


@contextlib.contextmanager
def engine_scope(engine: str) -> Iterator[None]:
    """Run with torch.backends.quantized.engine set to `engine` (restored afterwards)."""
    if engine not in torch.backends.quantized.supported_engines:
        raise TfsepError(
            f"--engine {engine}: not available in this PyTorch build "
            f"(available: {', '.join(e for e in torch.backends.quantized.supported_engines if e != 'none')})"
        )
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous
