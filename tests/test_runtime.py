"""The light runtime's classifier: same logits as torch, metadata, batching, bad models."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import runtime_models as rm

from tfsep_edge.core import config
from tfsep_edge.core.errors import TfsepError
from tfsep_edge.runtime.classifier import OnnxClassifier, predict_stream
from tfsep_edge.signal.audio import load_audio, split_windows
from tfsep_edge.signal.frontend import log_mel


@pytest.fixture(scope="module")
def logmel_path(tmp_path_factory):
    return rm.logmel_model(tmp_path_factory)


@pytest.fixture(scope="module")
def clf(logmel_path):
    return OnnxClassifier(logmel_path)


def test_metadata_is_read(clf):
    assert clf.input_kind == "logmel"
    assert clf.labels == config.LABELS
    assert clf.frontend == config.DEFAULT_FRONTEND
    assert (clf.precision, clf.width) == ("fp32", 12)
    assert clf.info.fixed_batch is None  # dynamic batch survives the export


def test_logits_match_torch(clf):
    import torch

    from tfsep_edge.model.tfsepnet import random_model

    x = np.random.default_rng(0).standard_normal((3, 1, 128, 44)).astype(np.float32)
    with torch.no_grad():
        expected = random_model(12)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(clf.logits_from_logmel(x), expected, atol=1e-4)


def test_waveforms_go_through_the_numpy_front_end(clf):
    windows = (0.1 * np.random.default_rng(1).standard_normal((2, 32_000))).astype(np.float32)
    expected = clf.logits_from_logmel(log_mel(windows)[:, None])
    np.testing.assert_allclose(clf.logits_from_waveforms(windows), expected, rtol=0, atol=1e-6)


def test_predict_file_is_mean_of_window_logits(clf, tmp_path):
    path = rm.write_wav(tmp_path / "long.wav", 3.7, rate=48_000, channels=2)
    windows = split_windows(load_audio(path))
    assert len(windows) == 4  # 3 full windows + 0.7 s remainder kept
    per_window = clf.logits_from_waveforms(windows)
    np.testing.assert_allclose(clf.predict_file(path), per_window.mean(axis=0), atol=1e-6)
    assert np.ptp(per_window, axis=0).max() > 1e-4  # windows differ, so the mean is not trivially one of them


def test_batching_does_not_change_results(clf, tmp_path):
    files = [rm.write_wav(tmp_path / f"{i}.wav", s, seed=i) for i, s in enumerate((1.0, 2.5, 0.4, 5.0))]
    one = [r.logits for r in predict_stream(clf, files, batch=1)]
    many = [r.logits for r in predict_stream(clf, files, batch=3)]
    for a, b, f in zip(one, many, files, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
        np.testing.assert_allclose(a, clf.predict_file(f), atol=1e-5)


def test_bad_file_is_reported_in_order(clf, tmp_path):
    good1 = rm.write_wav(tmp_path / "a.wav", 1.0)
    bad = tmp_path / "b.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    good2 = rm.write_wav(tmp_path / "c.wav", 1.0, seed=2)
    results = list(predict_stream(clf, [good1, bad, good2], batch=8))
    assert [r.path for r in results] == [good1, bad, good2]
    assert results[1].logits is None and "b.wav" in results[1].error
    assert results[0].error is None and results[2].error is None
    np.testing.assert_allclose(results[2].probabilities.sum(), 1.0, atol=1e-6)


def test_waveform_model_gets_the_waveform(tmp_path_factory):
    clf = OnnxClassifier(rm.waveform_model(tmp_path_factory))
    assert clf.input_kind == "waveform"
    windows = np.random.default_rng(3).standard_normal((2, 32_000)).astype(np.float32)
    np.testing.assert_allclose(clf.logits_from_waveforms(windows), rm.segment_means(windows), atol=1e-6)
    with pytest.raises(TfsepError, match="takes waveforms"):
        clf.logits_from_logmel(np.zeros((1, 1, 128, 44), np.float32))


def test_input_kind_inferred_without_metadata(tmp_path):
    path = rm.export_logmel(tmp_path / "bare.onnx", meta={})
    clf = OnnxClassifier(path)
    assert (clf.input_kind, clf.precision, clf.width) == ("logmel", "unknown", None)


def test_not_onnx_is_one_clear_error(tmp_path):
    junk = tmp_path / "model.onnx"
    junk.write_bytes(b"this is not a protobuf at all" * 10)
    with pytest.raises(TfsepError, match="model.onnx: not a loadable ONNX model"):
        OnnxClassifier(junk)
    with pytest.raises(TfsepError, match="no such model file"):
        OnnxClassifier(tmp_path / "missing.onnx")


def test_other_input_shape_is_rejected(tmp_path):
    import torch

    from tfsep_edge.model.tfsepnet import random_model

    path = tmp_path / "wide.onnx"
    model = random_model(12)
    with warnings.catch_warnings():  # the legacy exporter's deprecation notices
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 1, 64, 44),), str(path), dynamo=False, opset_version=17)
    with pytest.raises(TfsepError, match=r"wide.onnx: input .* must take float \(batch, 1, 128, 44\)"):
        OnnxClassifier(path)


def test_threads_must_be_positive(logmel_path):
    with pytest.raises(TfsepError, match="--threads 0"):
        OnnxClassifier(logmel_path, threads=0)


def test_light_modules_never_import_torch(logmel_path):
    """Even where torch is installed, the runtime path leaves it unimported (memory, start-up time)."""
    import subprocess
    import sys

    code = (
        "import sys; import numpy as np; import tfsep_edge.cli, tfsep_edge.bench.harness, tfsep_edge.bench.machine; "
        "from tfsep_edge.runtime import classifier as runtime; "
        f"c = runtime.OnnxClassifier({str(logmel_path)!r}); c.logits_from_waveforms(np.zeros((1, 32000), np.float32)); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_batched_front_end_equals_one_clip_at_a_time():
    """log_mel transforms a batch in pieces (and reuses buffers): the result must not depend on it."""
    from tfsep_edge.signal.frontend import log_mel_reference

    windows = (0.1 * np.random.default_rng(4).standard_normal((5, 32_000))).astype(np.float32)
    batched = log_mel(windows)
    singles = np.concatenate([log_mel(w[None]) for w in windows])
    np.testing.assert_allclose(batched, singles, rtol=0, atol=1e-6)
    np.testing.assert_allclose(batched, log_mel_reference(windows), atol=1e-4)
    assert not np.shares_memory(log_mel(windows[:1]), log_mel(windows[1:2]))  # fresh output each call


@pytest.mark.parametrize("backend", ["numpy", "scipy"])
def test_front_end_fft_backends_agree_with_the_reference(backend):
    """Both FFTs log_mel can use (scipy.fft when installed, numpy's otherwise) give the reference
    log-mel within the front-end tolerance, and any subset of frames equals the whole clip's."""
    from tfsep_edge.signal import frontend

    if backend == "scipy":
        pytest.importorskip("scipy.fft")
    rng = np.random.default_rng(5)
    windows = (0.1 * rng.standard_normal((3, 32_000))).astype(np.float32)
    windows[1] *= np.linspace(0, 1, 32_000, dtype=np.float32) ** 6  # quiet start: small bands count
    before = frontend.fft_backend()
    try:
        assert frontend.set_fft_backend(backend) == backend
        out = log_mel(windows)
        assert out.flags.c_contiguous and out.shape == (3, 128, 44)
        np.testing.assert_allclose(out, frontend.log_mel_reference(windows), atol=1e-4, rtol=0)
        picked = np.array([43, 0, 1, 20, 21, 42, 7])
        np.testing.assert_array_equal(frontend.log_mel_frames(windows[1], picked), out[1][:, picked])
        assert frontend.log_mel_frames(windows[0], np.array([], int)).shape == (128, 0)
    finally:
        frontend.set_fft_backend(before)


def test_fft_backend_choice_is_checked(monkeypatch):
    from tfsep_edge.signal import frontend

    with pytest.raises(ValueError, match="TFSEP_EDGE_FFT=fftw"):
        frontend._resolve_backend("fftw")
    assert frontend._resolve_backend("numpy") == "numpy"
