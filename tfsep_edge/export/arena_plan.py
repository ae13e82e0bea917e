"""Where each activation of a .tflite lives in a microcontroller's tensor arena, planned here and
stored in the file as TFLite Micro's "OfflineMemoryAllocation" metadata.

TFLM plans the arena's head (the activations) itself with a greedy first-fit in order of size;
on TF-SepNet's graphs that leaves gaps that cost kilobytes (a tensor read by the op that writes
the next one overlaps it, so the concat's inputs and outputs, the shuffle's halves and the
residuals cannot share the slots a size order gives them). Here the order of the large buffers is
searched (plan()), and the plan kept is never larger than TFLM's own order's. The plan is an
offset per tensor from the start of the head, -1 for constants; TFLM places its kernels' scratch
buffers around it. Other runtimes ignore the entry. A wrong
plan (two live tensors overlapping) would change TFLM's outputs, which every integer export
compares with LiteRT's reference kernels bit for bit. numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfsep_edge.export.tflite_flatbuffer import FlatGraph, Tensor

METADATA_KEY = "OfflineMemoryAllocation"  # the name TFLM's allocator looks for
ALIGNMENT = 16  # TFLM's buffer alignment
LARGE = 32  # a buffer of at least 1/LARGE of the bytes live at once is placed by the search
_ITEM_BYTES = {"FLOAT32": 4, "INT32": 4, "INT64": 8, "INT16": 2, "INT8": 1}


@dataclass(frozen=True)
class Buffer:
    """An activation: its tensor index, bytes, and the first and last op that touch it (inclusive)."""

    tensor: int
    size: int
    first: int
    last: int

    def overlaps(self, other: Buffer) -> bool:
        return self.first <= other.last and other.first <= self.last


def _aligned(n: int) -> int:
    return -(-n // ALIGNMENT) * ALIGNMENT


def buffers(g: FlatGraph, inputs: list[Tensor], outputs: list[Tensor]) -> list[Buffer]:
    """The graph's activations with their lifetimes in op order, as TFLM counts them: a graph
    input lives from op 0, a graph output to the last op, any other from the op that writes it
    to the last op that reads it."""
    n_ops = len(g.operators)
    first = {t.index: 0 for t in inputs}
    last = {t.index: n_ops - 1 for t in outputs}
    constant = {i for i, t in enumerate(g.tensors) if t.buffer != 0}
    item_bytes = {getattr(g.s.TensorType, name): n for name, n in _ITEM_BYTES.items()}
    for k, op in enumerate(g.operators):
        for i in op.outputs:
            first.setdefault(int(i), k)
            last[int(i)] = max(last.get(int(i), k), k)
        for i in op.inputs:
            if i >= 0 and int(i) not in constant:
                last[int(i)] = max(last.get(int(i), k), k)
    out = []
    for i in sorted(first):
        t = g.tensors[i]
        out.append(Buffer(i, int(np.prod(t.shape)) * item_bytes[t.type], first[i], last[i]))
    return out


def first_fit(order: list[Buffer], placed: list[tuple[int, int, Buffer]] | None = None):
    """Place each buffer, in `order`, at the lowest aligned offset where it overlaps no placed
    buffer live at the same time (after those in `placed`): (placements, bytes the plan needs)."""
    placed = list(placed or [])
    for b in order:
        offset = 0
        for start, end in sorted((start, end) for start, end, other in placed if b.overlaps(other)):
            if offset + b.size <= start:
                break
            offset = max(offset, _aligned(end))
        placed.append((offset, offset + b.size, b))
    return placed, max((end for _, end, _ in placed), default=0)


def live_bytes(bufs: list[Buffer]) -> int:
    """The most bytes live during any one op: no plan needs less."""
    ops = range(max((b.last for b in bufs), default=-1) + 1)
    return max((sum(b.size for b in bufs if b.first <= k <= b.last) for k in ops), default=0)


def plan(bufs: list[Buffer], steps: int = 3000, patience: int = 1500, seed: int = 0) -> tuple[dict[int, int], int]:
    """(offset by tensor, bytes): TFLM's order (largest first) improved by a local search. The
    large buffers decide the plan, so their order is searched (swap two, keep the swap unless
    the plan grows) until it reaches the bytes live at once, or `patience` swaps in a row
    change nothing; the small ones then fill in, largest first. Deterministic (seeded)."""
    by_size = sorted(bufs, key=lambda b: (-b.size, b.first))
    at_once = live_bytes(bufs)
    large = [b for b in by_size if b.size * LARGE >= at_once]
    small = by_size[len(large) :]
    floor = _aligned(live_bytes(large)) + 8 * ALIGNMENT  # alignment may keep the exact floor out of reach
    rng = np.random.default_rng(seed)
    order, best = large, first_fit(large)[1]
    still = 0
    for _ in range(steps):
        if best <= floor or still >= patience:
            break
        i, j = rng.integers(len(order), size=2)
        trial = list(order)
        trial[i], trial[j] = trial[j], trial[i]
        size = first_fit(trial)[1]
        still = 0 if size < best else still + 1
        if size <= best:
            order, best = trial, size
    candidates = [first_fit(small, first_fit(order)[0]), first_fit(by_size)]
    placed, size = min(candidates, key=lambda c: c[1])
    return {b.tensor: start for start, _, b in placed}, size


def offline_plan(g: FlatGraph, inputs: list[Tensor], outputs: list[Tensor]) -> bytes:
    """The "OfflineMemoryAllocation" buffer: int32 [version 1, subgraphs 1, n, offset per tensor]."""
    offsets, _ = plan(buffers(g, inputs, outputs))
    per_tensor = [offsets.get(i, -1) for i in range(len(g.tensors))]
    return np.array([1, 1, len(per_tensor), *per_tensor], "<i4").tobytes()
