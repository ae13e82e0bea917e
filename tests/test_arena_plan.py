"""The arena plan written into every .tflite (export/arena_plan.py): no two buffers live at the
same time share a byte, it is never larger than TFLM's own largest-first order, it finds the
tight plan where that order leaves gaps, TFLM follows it (a smaller head), and a wrong plan
changes TFLM's outputs, which the bit-for-bit comparison with LiteRT's reference kernels catches.
"""

from __future__ import annotations

import numpy as np
import pytest

from tfsep_edge.export import arena_plan
from tfsep_edge.export.arena_plan import Buffer, first_fit, live_bytes, plan


def assert_valid(bufs: list[Buffer], offsets: dict[int, int], size: int) -> None:
    assert set(offsets) == {b.tensor for b in bufs}
    assert all(offsets[b.tensor] % arena_plan.ALIGNMENT == 0 for b in bufs)
    assert size == max(offsets[b.tensor] + b.size for b in bufs)
    for i, a in enumerate(bufs):
        for b in bufs[i + 1 :]:
            if a.overlaps(b):
                lo_a, lo_b = offsets[a.tensor], offsets[b.tensor]
                assert lo_a + a.size <= lo_b or lo_b + b.size <= lo_a, (a, b)


def random_buffers(rng, n: int) -> list[Buffer]:
    firsts = rng.integers(0, 40, n)
    return [
        Buffer(i, int(rng.choice([16, 64, 700, 4096, 8448, 16896])), int(f), int(f + rng.integers(0, 6)))
        for i, f in enumerate(firsts)
    ]


@pytest.mark.parametrize("seed", range(20))
def test_plans_never_overlap_live_buffers_and_never_lose_to_tflm_order(seed):
    bufs = random_buffers(np.random.default_rng(seed), 60)
    offsets, size = plan(bufs, steps=300)
    assert_valid(bufs, offsets, size)
    tflm_order = first_fit(sorted(bufs, key=lambda b: (-b.size, b.first)))[1]
    assert live_bytes(bufs) <= size <= tflm_order


def test_finds_the_tight_plan_where_largest_first_leaves_a_gap():
    """A block's shape in TF-SepNet: a concat output X (2 units) read while the shuffle's halves
    S0, S1 are written, the paths' residuals R0 (written while S0 is read), R1, and the next
    output Y (2 units) written from R0 and R1. 4 units suffice; largest-first needs 5."""
    u = 8448
    bufs = [
        Buffer(0, 2 * u, 0, 2),  # X
        Buffer(1, u, 1, 5),  # S0
        Buffer(2, u, 2, 9),  # S1
        Buffer(3, u, 3, 4),  # the freq path's depthwise output
        Buffer(4, u, 5, 10),  # R0
        Buffer(5, u, 6, 7),  # the time path's depthwise output
        Buffer(6, u, 9, 10),  # R1
        Buffer(7, 2 * u, 10, 12),  # Y
    ]
    largest_first = first_fit(sorted(bufs, key=lambda b: (-b.size, b.first)))[1]
    offsets, size = plan(bufs)
    assert_valid(bufs, offsets, size)
    assert size == live_bytes(bufs) == 4 * u < largest_first


# --- in TFLM --------------------------------------------------------------------------------------


def with_plan(data: bytes, offsets: list[int]) -> bytes:
    """`data` with its OfflineMemoryAllocation entry replaced by `offsets` (same length)."""
    from tfsep_edge.core.tflite_format import schema

    model = schema().ModelT.InitFromPackedBuf(data, 0)
    entry = next(m for m in model.metadata if m.name.decode() == arena_plan.METADATA_KEY)
    raw = np.frombuffer(bytes(model.buffers[entry.buffer].data), "<i4").copy()
    assert len(offsets) == raw[2]
    raw[3:] = offsets
    model.buffers[entry.buffer].data = np.frombuffer(raw.tobytes(), np.uint8)
    import flatbuffers

    from tfsep_edge.core.tflite_format import FILE_IDENTIFIER

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def test_tflm_follows_the_plan_and_a_wrong_plan_is_caught():
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("tflite_micro")
    from test_micro import mels, tiny_int8

    from tfsep_edge.core.tflite_format import schema
    from tfsep_edge.runtime import micro

    planned, x = tiny_int8(plan=True), mels(3)
    assert micro.compare_with_reference(planned, x)["bit_exact"]
    assert micro.smallest_arena(planned) <= micro.smallest_arena(tiny_int8())
    # every activation at offset 0: each op writes over the input it reads
    model = schema().ModelT.InitFromPackedBuf(planned, 0)
    tensors = model.subgraphs[0].tensors
    wrong = with_plan(planned, [0 if model.buffers[t.buffer].data is None else -1 for t in tensors])
    assert not micro.compare_with_reference(wrong, x)["bit_exact"]
