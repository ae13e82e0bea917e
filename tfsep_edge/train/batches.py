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

# The report's data set: the TAU22 fold-1 train split holds 102,150 device-A clips and 7,500 of
# each real non-A device; its 7,500 clips per response make each simulated device the size of a
# real non-A one. Scaled to another data set, that is this share of its device-A clips.
REPORT_DEVICE_A_CLIPS = 102_150
REPORT_CLIPS_PER_RESPONSE = 7_500
REPORT_SHARE = REPORT_CLIPS_PER_RESPONSE / REPORT_DEVICE_A_CLIPS
PROPORTION_RULE = (
    f"per response {REPORT_SHARE:.2%} of the device-A clips (the report's 7,500 of TAU22's 102,150), "
    f"at least 1, at most {REPORT_CLIPS_PER_RESPONSE:,}"
)


def clips_per_response(n_device_a: int, absolute: int | None = None) -> int:
    """Device-A clips convolved with each response: `absolute` if given, else the report's
    proportion of the n_device_a clips there are; never more than exist."""
    if absolute is None:
        absolute = min(REPORT_CLIPS_PER_RESPONSE, max(1, round(REPORT_SHARE * n_device_a)))
    return min(absolute, n_device_a)


def devsim_summary(n_irs: int, per_ir: int, n_device_a: int, n_real: int, absolute: int | None) -> str:
    """One log line with the figures, e.g. '32 responses x 40 device-A clips each (7.3% of 550) ...'."""
    rule = "the report's proportion" if absolute is None else f"--devsim-clips {absolute}"
    return (
        f"{n_irs} responses x {per_ir:,} device-A clips each ({per_ir / n_device_a:.1%} of {n_device_a:,}; {rule})"
        f" = {n_irs * per_ir:,} simulated clips for {n_real:,} real"
    )


def require_device_a(devices: list[str], source_name: str) -> np.ndarray:
    """Rows of the device-A clips, which offline device simulation convolves; none is an error."""
    a_rows = np.array([i for i, d in enumerate(devices) if d == "a"], dtype=np.int64)
    if len(a_rows) == 0:
        raise TfsepError(f"{source_name}: no device-A clips to simulate devices from; use --devsim none or online")
    return a_rows


def offline_device_simulation(
    train: SplitData,
    ir_names: list[str],
    irs: list[np.ndarray],
    n_irs: int,
    clips_per_ir: int | None,
    seed: int,
    cache_dir: Path,
    progress: bool = True,
    source_name: str = "the train split",
) -> SplitData:
    """The report's setting: n_irs responses x clips_per_ir random device-A clips = new devices.

    clips_per_ir None takes the report's proportion (`clips_per_response`). Responses and clips
    are drawn with the seed (without replacement; counts are capped by what exists). The
    simulated clips are cached like a split; their device is `sim-<IR name>` and `source` holds
    the train row each came from (for precomputed teacher logits).
    """
    import torch

    from tfsep_edge.train.augment import convolve

    a_rows = require_device_a(train.devices, source_name)
    rng = np.random.default_rng([seed, 2_3])
    chosen = sorted(rng.choice(len(irs), size=min(n_irs, len(irs)), replace=False).tolist())
    m = clips_per_response(len(a_rows), clips_per_ir)
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
