"""The clips a run trains and validates on: the train split (or a subset list of it), offline
device simulation appended to it or the responses for online simulation, and the validation
split; read from the waveform cache, which rank 0 builds first."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tfsep_edge.core.errors import TfsepError
from tfsep_edge.datasets.cache import SplitData, default_cache_dir, default_ir_dir, load_split
from tfsep_edge.datasets.tau import read_split, read_train_subset
from tfsep_edge.train import augment
from tfsep_edge.train.batches import concat, devsim_summary, offline_device_simulation, require_device_a
from tfsep_edge.train.options import TrainOptions
from tfsep_edge.train.processes import Ranks, rank0_first


@dataclass
class TrainingData:
    train: SplitData  # simulated clips (offline) appended after the real ones
    val: SplitData
    train_filenames: list[str]  # fold1_train.csv order (or the subset's), before simulated clips
    irs: list[torch.Tensor] = field(default_factory=list)  # online simulation only
    labels: torch.Tensor = field(init=False)
    is_device_a: torch.Tensor = field(init=False)

    def __post_init__(self):
        self.labels = torch.from_numpy(self.train.labels)
        self.is_device_a = torch.tensor([d == "a" for d in self.train.devices])


def training_source(data: Path, opts: TrainOptions) -> tuple[Path | None, str]:
    """(the subset list or None, how to name the training clips in messages)."""
    subset = Path(opts.train_split) if opts.train_split else None
    return subset, str(subset) if subset else f"{data}: the train split"


def check_split_lists(data: Path, opts: TrainOptions) -> None:
    """The split lists, before any folder is made or audio decoded: a bad subset or no device-A
    clip under offline simulation is an error now, not after minutes of caching."""
    subset, source_name = training_source(data, opts)
    if subset is not None or opts.devsim == "offline":
        clips = read_train_subset(data, subset) if subset else read_split(data, "train")
        if opts.devsim == "offline":
            require_device_a([c.device for c in clips], source_name)


def load_training_data(
    data: Path, opts: TrainOptions, device: torch.device, ranks: Ranks, progress: bool, log: Callable[[str], None]
) -> TrainingData:
    """Rank 0 builds the caches (progress bars), the others then map them in."""
    subset, source_name = training_source(data, opts)
    cache_dir = Path(opts.cache_dir) if opts.cache_dir else default_cache_dir(data)
    bars = progress and ranks.master
    with rank0_first(ranks):
        train_set = load_split(data, "train", cache_dir, workers=opts.workers, progress=bars, subset=subset)
        if subset is not None:
            log(f"training subset {subset}: {len(train_set)} of the train split's clips")
        train_filenames = train_set.filenames
        val_set = load_split(data, opts.val_split, cache_dir, workers=opts.workers, progress=bars)
        irs: list[torch.Tensor] = []
        if opts.devsim != "none":
            ir_dir = Path(opts.ir_dir) if opts.ir_dir else default_ir_dir()
            ir_names, ir_arrays = augment.load_irs(ir_dir)
            log(f"device simulation ({opts.devsim}): {len(ir_arrays)} impulse responses from {ir_dir}")
            if opts.devsim == "offline":
                sim = offline_device_simulation(
                    train_set,
                    ir_names,
                    ir_arrays,
                    opts.devsim_irs,
                    opts.devsim_clips,
                    opts.seed,
                    cache_dir,
                    bars,
                    source_name=source_name,
                )
                log(f"device simulation (offline): {offline_summary(train_set, sim, opts.devsim_clips)}")
                train_set = concat(train_set, sim)
            else:
                irs = [torch.from_numpy(h).to(device) for h in ir_arrays]
    if len(set(val_set.labels.tolist()) - {-1}) == 0:
        raise TfsepError(f"{data}: the {opts.val_split} split has no labels; choose --val-split evaluate")
    return TrainingData(train_set, val_set, train_filenames, irs)


def offline_summary(train_set: SplitData, sim: SplitData, absolute: int | None) -> str:
    """The figures of an offline simulation, for the log."""
    n_irs = len(set(sim.devices))
    n_a = sum(d == "a" for d in train_set.devices)
    return devsim_summary(n_irs, len(sim) // n_irs, n_a, len(train_set), absolute)
