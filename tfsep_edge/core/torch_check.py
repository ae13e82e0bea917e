"""Whether the heavy tooling (torch) is installed: the one check, and the one hint to install it."""

from __future__ import annotations

from tfsep_edge.core.errors import TfsepError

TORCH_HINT = "install the heavy tooling with: pip install 'tfsep-edge[torch]'"


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def require_torch(what: str = "this command") -> None:
    if not torch_available():
        raise TfsepError(f"{what} needs PyTorch; {TORCH_HINT}")
