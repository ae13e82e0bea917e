"""The data layer: the waveform cache, per-rank batches, offline device simulation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tfsep_edge.datasets import cache as data
from tfsep_edge.datasets.synth import synthesize
from tfsep_edge.signal.audio import load_audio
from tfsep_edge.train import augment, batches


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("d") / "synth", clips_per_class=4, seed=4)


def test_cache_holds_the_decoded_audio_and_is_reused(tiny, tmp_path, monkeypatch):
    split = data.load_split(tiny, "train", tmp_path, progress=False)
    assert len(split) == len(split.labels) == len(split.devices) == split.waves.get([0]).shape[0] * len(split)
    rows = np.array([3, 0, len(split) - 1])
    expected = np.stack([load_audio(tiny / split.filenames[i])[:32000] for i in rows])
    np.testing.assert_allclose(split.waves.get(rows), expected, atol=2e-3)  # float16 storage

    def no_decoding(*_a, **_k):
        raise AssertionError("decoded again although the cache is valid")

    monkeypatch.setattr(data, "_decode", no_decoding)
    again = data.load_split(tiny, "train", tmp_path, progress=False)
    assert again.filenames == split.filenames
    # A changed meta.csv (e.g. a regenerated set) invalidates the cache.
    meta = tiny / "meta.csv"
    meta.write_text(meta.read_text())
    with pytest.raises(AssertionError, match="decoded again"):
        data.load_split(tiny, "train", tmp_path, progress=False)


def test_evaluation_cache_is_the_deployed_audio_bit_for_bit(tiny, tmp_path):
    """evaluate caches float32: its figures must be those of load_audio -> log_mel (predict's path)."""
    split = data.load_split(tiny, "evaluate", tmp_path, progress=False, dtype="float32")
    rows = np.arange(len(split))
    expected = np.stack([load_audio(tiny / name)[:32000] for name in split.filenames])
    np.testing.assert_array_equal(split.waves.get(rows), expected)


def test_epoch_batches_split_ranks_and_repeat_per_seed():
    one = batches.epoch_batches(50, 8, epoch=3, seed=1)
    assert sorted(np.concatenate(one).tolist()) == list(range(50))
    assert all(np.array_equal(a, b) for a, b in zip(one, batches.epoch_batches(50, 8, 3, 1), strict=True))
    assert not np.array_equal(np.concatenate(one), np.concatenate(batches.epoch_batches(50, 8, 4, 1)))
    r0, r1 = (np.concatenate(batches.epoch_batches(48, 8, 3, 1, rank, 2)) for rank in (0, 1))
    assert len(r0) == len(r1) == 24 and set(r0) | set(r1) == set(range(48)) and not set(r0) & set(r1)
    assert [len(b) for b in batches.epoch_batches(9, 8, 0, 0)] == [8]  # a 1-clip batch would break BatchNorm


def test_offline_device_simulation_adds_convolved_device_a_clips(tiny, tmp_path, data_dir):
    train = data.load_split(tiny, "train", tmp_path, progress=False)
    names, irs = augment.load_irs(data_dir / "micirp")
    sim = batches.offline_device_simulation(train, names, irs, n_irs=2, clips_per_ir=3, seed=0, cache_dir=tmp_path)
    assert len(sim) == 6 and len(set(sim.devices)) == 2 and all(d.startswith("sim-") for d in sim.devices)
    assert all(train.devices[r] == "a" for r in sim.source)
    assert np.array_equal(sim.labels, train.labels[sim.source])
    k = names.index(sim.devices[0][4:])
    src = torch.from_numpy(train.waves.get(sim.source[:1]))
    expected = augment.convolve(src, [torch.from_numpy(irs[k])]).numpy()
    np.testing.assert_allclose(sim.waves.get([0]), expected, atol=2e-3)
    both = batches.concat(train, sim)
    assert len(both) == len(train) + 6
    np.testing.assert_array_equal(both.waves.get([len(train)]), sim.waves.get([0]))
