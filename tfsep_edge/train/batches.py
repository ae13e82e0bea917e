"""What the training loop reads: the report's offline device simulation (section 2.3) and each
epoch's batches, on top of the waveform cache (datasets.cache)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from tfsep_edge.core.errors import TfsepError
from tfsep_edge.core.fileio import write_text_atomic
from tfsep_edge.datasets.cache import CACHE_VERSION, SplitData, WaveStore, build_store


def offline_device_simulation(
    train: SplitData,
    ir_names: list[str],
    irs: list[np.ndarray],
    n_irs: int,
    clips_per_ir: int,
    seed: int,
    cache_dir: Path,
    progress: bool = True,
) -> SplitData:
    """The report's setting: n_irs responses x clips_per_ir random device-A clips = new devices.

    Responses and clips are drawn with the seed (without replacement; counts are capped by
    what exists). The simulated clips are cached like a split; their device is `sim-<IR name>`
    and `source` holds the train row each came from (for precomputed teacher logits).
    """
    import torch

    from tfsep_edge.train.augment import convolve

    a_rows = np.array([i for i, d in enumerate(train.devices) if d == "a"], dtype=np.int64)
    if len(a_rows) == 0:
        raise TfsepError("device simulation: the train split has no device-A clips; use --devsim none or online")
    rng = np.random.default_rng([seed, 2_3])
    chosen = sorted(rng.choice(len(irs), size=min(n_irs, len(irs)), replace=False).tolist())
    m = min(clips_per_ir, len(a_rows))
    plan = [(k, np.sort(rng.choice(a_rows, size=m, replace=False))) for k in chosen]
    source = np.concatenate([rows for _, rows in plan])
    h = hashlib.sha1(f"{CACHE_VERSION}|{train.waves.parts}|{ir_names}|{chosen}|{m}|{seed}".encode())
    folder = cache_dir / f"devsim-{h.hexdigest()[:16]}"
    store = folder / "waves.f16"
    if not ((folder / "index.json").is_file() and store.is_file()):

        def fill(arr: np.ndarray, bar) -> None:
            row = 0
            for k, rows in plan:
                for i in range(0, len(rows), 256):
                    chunk = torch.from_numpy(train.waves.get(rows[i : i + 256]))
                    y = convolve(chunk, [torch.from_numpy(irs[k])] * len(chunk)).numpy()
                    arr[row : row + len(y)] = y
                    row += len(y)
                    bar.update(len(y))

        build_store("waves.f16", folder, len(source), train.waves.samples, fill, "simulating devices", progress)
        write_text_atomic(folder / "index.json", json.dumps({"complete": True, "rows": len(source)}))
    devices = [f"sim-{ir_names[k]}" for k, rows in plan for _ in rows]
    return SplitData(
        "devsim",
        [train.filenames[r] for r in source],
        train.labels[source],
        devices,
        WaveStore([(store, len(source))], train.waves.samples),
        source,
    )

def concat(a: SplitData, b: SplitData) -> SplitData:
    """Train split + simulated clips as one set (b's `source` rows index into a)."""
    src_a = np.arange(len(a), dtype=np.int64)
    if a.waves.dtype != b.waves.dtype:  # one memmap dtype per store
        raise ValueError(f"cannot concatenate {a.waves.dtype} and {b.waves.dtype} caches")
    return SplitData(
        a.split,
        a.filenames + b.filenames,
        np.concatenate([a.labels, b.labels]),
        a.devices + b.devices,
        WaveStore(a.waves.parts + b.waves.parts, a.waves.samples, a.waves.dtype),
        np.concatenate([src_a, b.source if len(b.source) else np.arange(len(b))]),
    )

class WaveBatches:
    """A torch map-style dataset whose items are whole batches: index array -> (waves, rows)."""

    def __init__(self, waves: WaveStore):
        self.waves = waves

    def __getitem__(self, rows):
        import torch

        rows = np.asarray(rows, dtype=np.int64)
        return torch.from_numpy(self.waves.get(rows)), torch.from_numpy(rows)

    def __len__(self) -> int:
        return len(self.waves)

def epoch_batches(n: int, batch_size: int, epoch: int, seed: int, rank: int = 0, world: int = 1) -> list[np.ndarray]:
    """This rank's shuffled batches for an epoch: a permutation from (seed, epoch), split evenly
    over ranks (padded by wrapping, as DistributedSampler does), last short batch dropped when
    it would hold a single clip (BatchNorm needs two)."""
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    per_rank = -(-n // world)
    perm = np.resize(perm, per_rank * world)[rank::world]
    batches = [perm[i : i + batch_size] for i in range(0, len(perm), batch_size)]
    if len(batches) > 1 and len(batches[-1]) < 2:
        batches.pop()
    return batches
