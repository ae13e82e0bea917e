"""Processes, device and threads of a training run: one process, or torchrun's N under
DistributedDataParallel (gloo on CPU, nccl on CUDA), where only rank 0 validates and writes."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta

import torch

from tfsep_edge.core.errors import TfsepError


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def master(self) -> bool:
        return self.rank == 0


def distributed_env() -> Ranks:
    """This process's place from torchrun's environment; rank 0 of 1 otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return Ranks(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(name: str, local_rank: int) -> torch.device:
    if name == "cuda":
        if not torch.cuda.is_available():
            raise TfsepError("--device cuda: no CUDA device (or a CPU-only PyTorch build); use --device cpu")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def default_threads() -> int:
    """OMP_NUM_THREADS if set, else 1 per process.

    TF-SepNet's small depthwise convolutions barely parallelise inside one process: 2 threads
    train slower than 1 (benchmarks/results/train_throughput.md). Scale with processes
    (torchrun) or set --threads.
    """
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    return 1


def join_process_group(ranks: Ranks, device: torch.device) -> bool:
    """Under torchrun, the process group (unless the caller made one); True if this call made it."""
    if ranks.world == 1 or torch.distributed.is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    torch.distributed.init_process_group(backend, timeout=timedelta(hours=6))  # caching may be slow
    return True


def distributed_model(model: torch.nn.Module, ranks: Ranks, device: torch.device) -> torch.nn.Module:
    """`model` wrapped in DistributedDataParallel under torchrun; itself with one process."""
    if ranks.world == 1:
        return model
    device_ids = [ranks.local_rank] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def leave_process_group(ranks: Ranks, own_group: bool) -> None:
    if ranks.world > 1:
        torch.distributed.barrier()
    if own_group:
        torch.distributed.destroy_process_group()


@contextlib.contextmanager
def rank0_first(ranks: Ranks):
    """Rank 0 runs the block first (building caches); the others wait, then run it (cache hits)."""
    if ranks.world > 1 and not ranks.master:
        torch.distributed.barrier()
    yield
    if ranks.world > 1 and ranks.master:
        torch.distributed.barrier()


def sum_over_ranks(values: list[float], ranks: Ranks, device: torch.device) -> list[float]:
    """`values` summed over all processes (themselves with one process)."""
    if ranks.world == 1:
        return values
    totals = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(totals)
    return totals.tolist()
