"""`tfsep-edge listen` and `predict --timeline`: streamed windows equal the file path's windows, for
files, stdin (fed by a real sox process) and a PulseAudio device; constant memory; dropped-window
accounting; SIGTERM; bad input.

Two models: the project's own export of an untrained TF-SepNet (every window gets the same label,
so it is compared by its probabilities), and `band_model`, a log-mel model whose label is the
mel band group holding the most energy: tones of different pitch get different labels, which is
what the device test needs to check labels window by window.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import runtime_models as rm
from conftest import REPO, run_cli

from tfsep_edge.core import config
from tfsep_edge.core.errors import TfsepError
from tfsep_edge.runtime import sources
from tfsep_edge.runtime.classifier import OnnxClassifier, softmax
from tfsep_edge.runtime.drivers import run_live, run_pull
from tfsep_edge.runtime.scoring import Result, WindowClassifier
from tfsep_edge.runtime.stream import DEFAULT_HOP, RingBuffer, Window, WindowStream
from tfsep_edge.signal.audio import StreamResampler, load_audio, resample, split_windows

RATE = config.DEFAULT_FRONTEND.sample_rate
CLIP = config.DEFAULT_FRONTEND.clip_samples
# Streamed and whole-file samples: soxr's one-shot and streaming resamplers run the same filter
# and are bit-identical here; 1e-6 (a thirtieth of one 16-bit step) leaves room for a soxr build
# that splits its internal blocks differently, and is far below anything the log-mel resolves.
SAMPLE_ATOL = 1e-6
# Probabilities of the same windows through the two paths: float32 log-mel and model of samples
# that agree to SAMPLE_ATOL.
PROB_ATOL = 1e-5


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return rm.logmel_model(tmp_path_factory)


def band_groups(n_mels: int = config.DEFAULT_FRONTEND.n_mels) -> list[np.ndarray]:
    return np.array_split(np.arange(n_mels), config.NUM_CLASSES)


def export_band_model(path: Path) -> Path:
    """logits[g] = 10 x the mean log-mel of band group g (frames and bands averaged)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    cfg = config.DEFAULT_FRONTEND
    weights = np.zeros((cfg.n_mels, config.NUM_CLASSES), np.float32)
    for g, bands in enumerate(band_groups()):
        weights[bands, g] = 10.0 / len(bands)
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["logmel"], ["bands"], axes=[1, 3], keepdims=0),
            helper.make_node("MatMul", ["bands", "w"], ["logits"]),
        ],
        "band_energy",
        [helper.make_tensor_value_info("logmel", TensorProto.FLOAT, ["batch", 1, cfg.n_mels, cfg.n_frames])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", config.NUM_CLASSES])],
        [numpy_helper.from_array(weights, "w")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    rm.set_metadata(proto, rm.standard_meta("logmel", None))
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


@pytest.fixture(scope="module")
def band_model(tmp_path_factory):
    return rm.cached("band", tmp_path_factory, export_band_model)


def group_frequency(group: int) -> float:
    """The centre frequency (Hz) of a band group's middle mel band (the Kaldi mel scale)."""
    cfg = config.DEFAULT_FRONTEND
    lo, hi = (1127.0 * np.log1p(f / 700.0) for f in (cfg.fmin, cfg.fmax))
    band = band_groups()[group][len(band_groups()[group]) // 2]
    mel = lo + (band + 1) * (hi - lo) / (cfg.n_mels + 1)
    return float(700.0 * np.expm1(mel / 1127.0))


def tone_sequence(groups: list[int], seconds_each: float, rate: int = RATE, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds_each * rate)) / rate
    return np.concatenate([amplitude * np.sin(2 * np.pi * group_frequency(g) * t) for g in groups]).astype(np.float32)


def write(path: Path, wave: np.ndarray, rate: int, subtype: str = "PCM_16") -> Path:
    import soundfile as sf

    sf.write(str(path), wave, rate, subtype=subtype)
    return path


def json_lines(stdout: str) -> tuple[list[dict], dict]:
    """(window objects, the summary object) of a `listen --json` run."""
    records = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert records and "summary" in records[-1], stdout[-500:]
    return records[:-1], records[-1]["summary"]


def read_lines(stream, count: int, timeout: float = 60.0) -> list[bytes | str]:
    """`count` lines from a child's pipe, failing (not hanging) if they do not come in `timeout` s."""
    import queue
    import threading

    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(stream.readline()) for _ in range(count)], daemon=True).start()
    try:
        return [lines.get(timeout=timeout) for _ in range(count)]
    except queue.Empty:
        pytest.fail(f"fewer than {count} lines in {timeout} s")


def reference_probs(clf: OnnxClassifier, wave: np.ndarray, hop_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(window ends in s, probabilities) of the whole-file waveform cut into windows every hop."""
    hop = round(hop_s * RATE)
    ends = np.arange(CLIP, len(wave) + 1, hop)
    windows = np.stack([wave[e - CLIP : e] for e in ends])
    return ends / RATE, softmax(clf.logits_from_waveforms(windows))


# --- the one audio path: streamed == whole --------------------------------------------------


@pytest.mark.parametrize("rate", [8_000, 44_100, 48_000, 32_000])
def test_stream_resampler_equals_whole_signal_resample(rate):
    rng = np.random.default_rng(rate)
    wave = (0.1 * rng.standard_normal(3 * rate)).astype(np.float32)
    stream = StreamResampler(rate, RATE)
    cuts = np.sort(rng.integers(0, len(wave), 40))  # blocks of uneven sizes, some empty
    parts = [stream.process(block) for block in np.split(wave, cuts)]
    parts.append(stream.process(np.zeros(0, np.float32), last=True))
    streamed, whole = np.concatenate(parts), resample(wave, rate, RATE)
    assert streamed.dtype == np.float32 and len(streamed) == len(whole)
    np.testing.assert_allclose(streamed, whole, rtol=0, atol=SAMPLE_ATOL)


def test_ring_buffer_keeps_the_last_samples_and_refuses_older_ones():
    ring = RingBuffer(10)
    stream = np.arange(37, dtype=np.float32)
    for block in np.split(stream, [3, 4, 15, 15, 30]):  # wraps, one write longer than the buffer
        ring.write(block)
    assert ring.total == 37
    np.testing.assert_array_equal(ring.read(37, 10), stream[27:37])
    np.testing.assert_array_equal(ring.read(33, 4), stream[29:33])
    for end, length in ((38, 1), (36, 10), (37, 11)):
        with pytest.raises(IndexError):
            ring.read(end, length)


@pytest.mark.parametrize("hop_s", [0.5, 1.0, 0.37])
def test_file_stream_windows_equal_whole_file_windows(tmp_path, hop_s):
    path = rm.write_wav(tmp_path / "s.wav", 4.3, rate=44_100, channels=2, seed=3)
    hop = round(hop_s * RATE)
    got: list[Window] = []
    run_pull(sources.FileSource(path), WindowStream(hop), lambda w, _d: got.append(w))
    whole = load_audio(path)
    ends = list(range(CLIP, len(whole) + 1, hop))
    assert [w.end for w in got] == ends
    for w in got:
        assert w.problem is None
        np.testing.assert_allclose(w.samples, whole[w.end - CLIP : w.end], rtol=0, atol=SAMPLE_ATOL)
    if hop_s == 1.0:  # non-overlapping windows are predict's own full windows
        np.testing.assert_allclose(np.stack([w.samples for w in got]), split_windows(whole)[:4], atol=SAMPLE_ATOL)


FRAME_HOP = config.DEFAULT_FRONTEND.hop_length


@pytest.mark.parametrize(
    "hop, reused_per_window",
    [
        (22 * FRAME_HOP, 18),  # 0.5115 s: frames 2..19 of a window are frames 24..41 of the one before
        (FRAME_HOP, 39),  # one frame hop: all interior frames but the newest
        (DEFAULT_HOP * RATE, 0),  # 0.5 s = 21.5 frame hops: no frame lands where an earlier one was
        (FRAME_HOP // 2, None),  # half a frame hop: every other window lines up with the one 2 back
        (1000, 0),
        (CLIP, 0),  # back-to-back windows share no samples
    ],
)
def test_listen_computes_only_new_frames_and_equals_the_whole_window_front_end(hop, reused_per_window):
    """The windows of a stream of several hops, through WindowStream and the scorer's StreamLogMel:
    every window's log-mel is exactly log_mel of its samples, whichever frames came from earlier
    windows (edge frames, reflect-padded, never do); frames are reused when the hop is a multiple
    of the frame hop, or lines up two windows back."""
    from tfsep_edge.signal.frontend import StreamLogMel, log_mel

    hop = int(hop)
    rng = np.random.default_rng(11)
    n = CLIP + 9 * hop + 123
    samples = (0.05 * rng.standard_normal(n) * (1 + np.sin(np.arange(n) / 3000.0))).astype(np.float32)
    stream, frames = WindowStream(hop), StreamLogMel()
    windows = 0
    for piece in (samples[i : i + 777] for i in range(0, n, 777)):  # blocks that do not divide the hop
        for part in (piece[j : j + hop] for j in range(0, len(piece), hop)):
            stream.write(part)
            while stream.due():
                w = stream.pop()
                np.testing.assert_array_equal(frames(w.samples, w.end), log_mel(w.samples[None])[0])
                windows += 1
    assert windows == 10
    assert frames.computed + frames.reused == 10 * 44
    if reused_per_window is not None:
        assert frames.reused == 9 * reused_per_window
    else:
        assert frames.reused > 0


# --- file and stdin sources through the CLI -------------------------------------------------


def test_listen_file_equals_predict_windows_and_timeline(model, tmp_path):
    """The real TF-SepNet export: `listen --input` per window == the file's windows classified
    whole, and `predict --timeline` writes the same timeline, byte for byte (one code path)."""
    path = rm.write_wav(tmp_path / "long.wav", 5.2, rate=48_000, channels=2, seed=5)
    out, timeline = tmp_path / "listen.tsv", tmp_path / "timeline.tsv"
    done = run_cli("listen", model, "--input", path, "--json", "--csv", out)
    assert done.returncode == 0, done.stderr
    windows, summary = json_lines(done.stdout)
    ends, probs = reference_probs(OnnxClassifier(model), load_audio(path), DEFAULT_HOP)
    assert [w["t"] for w in windows] == pytest.approx(ends.tolist())
    np.testing.assert_allclose([w["probs"] for w in windows], probs, atol=PROB_ATOL)
    assert [w["label"] for w in windows] == [config.LABELS[i] for i in probs.argmax(axis=1)]
    assert summary["classified"] == summary["windows"] == len(ends) == 9 and summary["dropped"] == 0
    done = run_cli("predict", model, path, "--timeline", "--csv", timeline)
    assert done.returncode == 0, done.stderr
    assert timeline.read_text() == out.read_text()
    rows = [r.split("\t") for r in out.read_text().splitlines()]
    assert rows[0] == ["filename", "t", "scene_label", *config.LABELS]
    assert [float(r[1]) for r in rows[1:]] == pytest.approx(ends.tolist())
    np.testing.assert_allclose([[float(v) for v in r[3:]] for r in rows[1:]], probs, atol=PROB_ATOL)


SOX_ENCODING = {"s16le": ["-e", "signed", "-b", "16"], "s32le": ["-e", "signed", "-b", "32"]}
SOX_ENCODING["f32le"] = ["-e", "floating-point", "-b", "32"]


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox is not installed (Debian: apt-get install sox)")
@pytest.mark.parametrize("pcm_format", list(SOX_ENCODING))
def test_stdin_from_a_sox_pipe_equals_the_file(band_model, tmp_path, pcm_format):
    """`sox f.wav -t raw - | listen - --rate R --channels C --format F` == the windows of f.wav."""
    subtype = {"s16le": "PCM_16", "s32le": "PCM_32", "f32le": "FLOAT"}[pcm_format]
    wave = (0.2 * np.random.default_rng(7).standard_normal((int(3.3 * 22_050), 2))).astype(np.float32)
    path = write(tmp_path / "p.wav", wave, 22_050, subtype)
    sox = subprocess.Popen(
        ["sox", str(path), "-t", "raw", *SOX_ENCODING[pcm_format], "-L", "-"], stdout=subprocess.PIPE
    )
    args = ["listen", str(band_model), "-", "--rate", "22050", "--channels", "2", "--format", pcm_format, "--json"]
    piped = subprocess.run(
        [sys.executable, "-m", "tfsep_edge.cli", *args], stdin=sox.stdout, capture_output=True, text=True, cwd=REPO
    )
    sox.stdout.close()
    assert sox.wait() == 0 and piped.returncode == 0, piped.stderr
    got, summary = json_lines(piped.stdout)
    ends, probs = reference_probs(OnnxClassifier(band_model), load_audio(path), DEFAULT_HOP)
    assert [w["t"] for w in got] == pytest.approx(ends.tolist()) and summary["classified"] == 5
    np.testing.assert_allclose([w["probs"] for w in got], probs, atol=PROB_ATOL)


def test_nan_and_silence_are_reported_per_window_and_the_stream_goes_on(band_model):
    """f32le at 16 kHz on stdin: noise 0-2 s, NaN 2-3 s, noise 3-5 s, zeros 5-7.5 s, noise 7.5-9 s.

    Windows holding NaN or only zeros are reported and skipped; the ones between are classified.
    A window that only touches a problem's edge may go either way: the NaN's span is widened by
    the resampler's filter length, and that filter rings a few ms into the edges of a silence."""
    rate = 16_000
    rng = np.random.default_rng(2)
    parts = [0.1 * rng.standard_normal(2 * rate), np.full(rate, np.nan), 0.1 * rng.standard_normal(2 * rate)]
    parts += [np.zeros(5 * rate // 2), 0.1 * rng.standard_normal(3 * rate // 2)]
    stream = np.concatenate(parts).astype("<f4")
    args = ("listen", band_model, "-", "--rate", rate, "--format", "f32le", "--json", "--hop", "0.5")
    done = subprocess.run(
        [sys.executable, "-m", "tfsep_edge.cli", *map(str, args)],
        input=stream.tobytes(),
        capture_output=True,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    windows, summary = json_lines(done.stdout.decode())
    assert [w["t"] for w in windows] == [1 + k / 2 for k in range(17)]  # 1.0 ... 9.0: every window said
    nan = {w["t"] for w in windows if w.get("skipped") == "NaN or infinite samples"}
    silent = {w["t"] for w in windows if w.get("skipped") == "digital silence (all samples zero)"}
    classified = {w["t"] for w in windows if "label" in w}
    assert {2.5, 3.0, 3.5} <= nan <= {2.0, 2.5, 3.0, 3.5, 4.0}
    assert {6.5, 7.0} <= silent <= {6.0, 6.5, 7.0, 7.5}
    assert {1.0, 1.5, 4.5, 5.0, 5.5, 8.0, 8.5, 9.0} <= classified  # it goes on after each problem
    assert summary["skipped"] == {
        "NaN or infinite samples": len(nan),
        "digital silence (all samples zero)": len(silent),
    }
    assert summary["classified"] == len(classified) == 17 - len(nan) - len(silent)
    err = done.stderr.decode()
    assert "NaN or infinite samples" in err and "digital silence" in err and "Traceback" not in err


def test_smoothing_averages_the_last_n_windows(band_model, tmp_path):
    path = write(tmp_path / "s.wav", tone_sequence([1, 3, 5, 7], 1.0), RATE)
    clf = OnnxClassifier(band_model)
    windows: list[Window] = []
    run_pull(sources.FileSource(path), WindowStream(RATE // 2), lambda w, _d: windows.append(w))
    runs = {}
    for n in (1, 3):
        classify = WindowClassifier(clf, n, clf.frontend)
        runs[n] = np.array([classify(w).probs for w in windows])
    raw = runs[1]
    expected = np.array([raw[max(0, i - 2) : i + 1].mean(axis=0) for i in range(len(raw))])
    np.testing.assert_allclose(runs[3], expected, atol=1e-7)
    assert len(raw) == 7


# --- memory, drops, signals ---------------------------------------------------------------

# Runs the CLI in this process and prints its peak RSS (VmHWM) as the last line of stderr.
PEAK_RSS_WRAPPER = """
import sys
from tfsep_edge.cli import app
try:
    app(sys.argv[1:], standalone_mode=False)
finally:
    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
    print("peak_rss_kb", int(hwm.split()[1]), file=sys.stderr)
"""


# Writes N seconds of s16 noise at RATE to stdout, as fast as the reader takes it.
NOISE_WRITER = """
import os, sys
second = os.urandom(2 * int(sys.argv[2]))
for _ in range(int(sys.argv[1])):
    sys.stdout.buffer.write(second)
"""


def peak_rss_of_stream(model: Path, seconds: int, rate: int = 8_000) -> tuple[int, dict]:
    """Pipe `seconds` of s16 noise at `rate` from a writer process into listen's stdin."""
    writer = subprocess.Popen([sys.executable, "-c", NOISE_WRITER, str(seconds), str(rate)], stdout=subprocess.PIPE)
    args = ["listen", str(model), "-", "--rate", str(rate), "--hop", "1", "--json"]
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_WRAPPER, *args], stdin=writer.stdout, capture_output=True, cwd=REPO, timeout=300
    )
    writer.stdout.close()
    assert writer.wait() == 0 and done.returncode == 0, done.stderr.decode()[-2000:]
    summary = json.loads(done.stdout.decode().splitlines()[-1])["summary"]
    return int(done.stderr.decode().split("peak_rss_kb")[-1]), summary


def test_one_hour_stream_stays_at_the_memory_of_one_minute(tmp_path_factory):
    """3600 s of 8 kHz s16 on stdin (resampled to 32 kHz, 3600 windows) vs 60 s of it: the peak
    RSS may not grow by more than 4 MB (the ring buffer, the resampler state and the last N
    probabilities are all listen holds; Python's and onnxruntime's allocators add a little noise).
    The cheap waveform model keeps the hour to seconds; the log-mel front end it skips reuses one
    set of buffers per input shape (signal/frontend.py, _workspace), whatever the count of windows."""
    model = rm.waveform_model(tmp_path_factory)
    minute, minute_summary = peak_rss_of_stream(model, 60)
    hour, hour_summary = peak_rss_of_stream(model, 3600)
    print(f"peak RSS: 1 minute {minute / 1024:.1f} MB, 1 hour {hour / 1024:.1f} MB")
    assert minute_summary["classified"] == 60 and hour_summary["classified"] == 3600
    assert hour_summary["audio_seconds"] == pytest.approx(3600, abs=0.01)
    assert hour <= minute + 4 * 1024


class SlowClassifier:
    """The real classifier behind a fixed sleep: far slower than the hop, on any machine."""

    def __init__(self, clf: OnnxClassifier, seconds: float):
        self.clf, self.seconds = clf, seconds
        self.frontend = clf.frontend

    def logits_from_waveforms(self, windows):
        time.sleep(self.seconds)
        return self.clf.logits_from_waveforms(windows)


def test_windows_a_slow_model_misses_are_dropped_and_counted(band_model, tmp_path):
    """A 2.5-s file paced like a microphone, a window every 50 ms, 0.25 s per window: most windows
    must be dropped, and every window end is accounted for exactly once (classified + dropped).
    Only a lower bound on the sleep matters, so a slower machine drops more, never fewer than the
    assertion needs (at most one window per 0.25 s can be classified)."""
    path = rm.write_wav(tmp_path / "paced.wav", 2.5, seed=4)
    classify = WindowClassifier(SlowClassifier(OnnxClassifier(band_model), 0.25), 1, config.DEFAULT_FRONTEND)
    results: list[Result] = []
    hop = RATE // 20
    started = time.monotonic()
    run_live(sources.FileSource(path), WindowStream(hop), lambda w, d: results.append(classify(w, d)), True)
    assert time.monotonic() - started >= 2.4  # paced: the file took its own length to arrive
    tally = classify.tally
    due = (5 * RATE // 2 - CLIP) // hop + 1  # window ends 1.00, 1.05, ..., 2.50 s
    assert tally.windows == tally.classified + tally.dropped == due == 31
    assert tally.dropped >= due // 2  # about 8 of the 31 fit in 1.75 s at 0.25 s each
    steps = [round(r.t * 20) for r in results]  # on the hop grid, in order, the last one = the file's end
    assert steps == sorted(set(steps)) and steps[-1] == 50
    assert all(r.t * 20 == pytest.approx(k) for r, k in zip(results, steps, strict=True))
    assert [r.dropped for r in results] == sorted(r.dropped for r in results)  # a running count
    assert results[-1].dropped == tally.dropped


def test_sigterm_mid_run_ends_cleanly_with_summary_and_complete_csv(model, tmp_path):
    """SIGTERM while listen waits in a read on a quiet pipe (as with a live `arecord |`): exit 0,
    the summary, and a CSV whose every row is whole and equals the JSON lines. The device test
    stops a live (PortAudio) run the same way."""
    out = tmp_path / "timeline.tsv"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tfsep_edge.cli", "listen", str(model), "-", "--rate", "16000", "--json"]
        + ["--csv", str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    # 2.2 s of audio (the resampler holds back a few ms), then the pipe stays open and quiet
    proc.stdin.write((1000 * np.random.default_rng(3).standard_normal(35_200)).astype("<i2").tobytes())
    proc.stdin.flush()
    try:
        lines = read_lines(proc.stdout, 3)  # windows at 1.0, 1.5, 2.0 s
    finally:
        proc.send_signal(signal.SIGTERM)
    rest, err = proc.communicate(timeout=60)
    err = err.decode()
    assert proc.returncode == 0, err
    windows, summary = json_lines(b"".join(lines).decode() + rest.decode())
    assert summary["stopped_by"] == "SIGTERM" and summary["classified"] == 3
    assert "stopped (SIGTERM)" in err and "Traceback" not in err
    rows = [r.split("\t") for r in out.read_text().splitlines()]
    assert len(rows) == 1 + summary["classified"] == 1 + len(windows)
    for row, window in zip(rows[1:], windows, strict=True):
        assert row[0] == "stdin" and float(row[1]) == window["t"] and row[2] == window["label"]
        assert len(row) == 3 + config.NUM_CLASSES
        np.testing.assert_allclose([float(v) for v in row[3:]], window["probs"], atol=1e-6)


# --- a real audio server -------------------------------------------------------------------


def pulseaudio_missing() -> str | None:
    missing = [tool for tool in ("pulseaudio", "paplay", "pactl") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed (Debian: apt-get install pulseaudio)"
    if ctypes.util.find_library("portaudio") is None:
        return "libportaudio2 not installed (Debian: apt-get install libportaudio2 libasound2-plugins)"
    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"sounddevice unavailable ({exc}); pip install 'tfsep-edge[listen]'"
    return None


@pytest.fixture()
def pulse_server():
    """A private PulseAudio server (own socket and runtime folder, so parallel runs do not meet):
    a null sink at 44.1 kHz whose monitor is the default source, as a loopback microphone."""
    reason = pulseaudio_missing()
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="tfsep-pa-"))  # short: a unix socket path has ~100 bytes
    socket = root / "native"
    env = {**os.environ, "HOME": str(root), "XDG_RUNTIME_DIR": str(root), "PULSE_RUNTIME_PATH": str(root)}
    env["PULSE_SERVER"] = f"unix:{socket}"
    server = subprocess.Popen(
        ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--resample-method=soxr-vhq"]
        + ["--load=module-null-sink sink_name=tfsep rate=44100", f"--load=module-native-protocol-unix socket={socket}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(100):
            if subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode == 0:
                break
            if server.poll() is not None:
                pytest.fail(f"pulseaudio exited: {server.stderr.read().decode()[-500:]}")
            time.sleep(0.1)
        for cmd in (["set-default-sink", "tfsep"], ["set-default-source", "tfsep.monitor"]):
            subprocess.run(["pactl", *cmd], env=env, check=True)
        yield env
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


def test_pulseaudio_device_labels_equal_the_file_windows(band_model, tmp_path, pulse_server):
    """A WAV of four 1.25-s tones played into the null sink; `listen --device pulse` records its
    monitor through PortAudio (ALSA's pulse plugin, 44.1 kHz) and must give, window for window,
    a label the same model gives on the file's own windows.

    Alignment: the recording starts before the playback at an unknown moment s, so a listened
    window ending at t covers the file's window ending at t - s. The last silent window (ending at
    t0, no sound in it) and the first one with sound (t1) bound s to [t0, t1): one hop apart when
    no window was dropped between them. Each listened window is compared with the file's windows
    over that range (plus 50 ms for the resamplers' filter ringing ahead of the sound): one window
    of alignment slack."""
    env = pulse_server
    groups = [2, 6, 4, 8]
    tones = tone_sequence(groups, 1.25)
    wav = write(tmp_path / "tones.wav", tones, RATE)
    devices = subprocess.Popen(  # alongside listen's start-up, which takes longer
        [sys.executable, "-m", "tfsep_edge.cli", "listen", "--list-devices"], env=env, stdout=subprocess.PIPE, text=True
    )
    hop = 0.5
    proc = subprocess.Popen(
        [sys.executable, "-m", "tfsep_edge.cli", "listen", str(band_model), "--device", "pulse", "--json"]
        + ["--hop", str(hop)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        first_line = read_lines(proc.stdout, 1)[0]  # audio flows: the monitor's silence
        assert json.loads(first_line or "{}").get("skipped", "").startswith("digital silence"), first_line
        subprocess.run(["paplay", str(wav)], env=env, check=True, timeout=30)
        time.sleep(1.0)  # the tail of the sound through the capture buffers
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "pulse" in devices.communicate(timeout=30)[0] and devices.returncode == 0
    windows, summary = json_lines(first_line + rest)
    assert summary["stopped_by"] == "SIGTERM" and "stopped (SIGTERM)" in err
    heard = [w for w in windows if "label" in w]
    assert heard, err
    # The file's windows every 10 ms over the sound with a second of silence on each side.
    pad = RATE
    padded = np.concatenate([np.zeros(pad, np.float32), load_audio(wav), np.zeros(pad, np.float32)])
    clf = OnnxClassifier(band_model)
    ends = np.arange(CLIP, len(padded) + 1, RATE // 100)
    windows_ref = np.stack([padded[e - CLIP : e] for e in ends])
    sounding = windows_ref.any(axis=1)
    labels_ref = np.where(sounding, clf.logits_from_waveforms(windows_ref).argmax(axis=1), -1)
    first = windows.index(heard[0])
    t0, t1 = windows[first - 1]["t"], heard[0]["t"]  # first >= 1: the first window was silence
    assert windows[first - 1]["skipped"].startswith("digital silence")
    compared = 0
    for w in heard:
        # the file window (padded coordinates) this one covers ends in (t - t1, t - t0] + pad
        lo, hi = w["t"] - t1 + pad / RATE, w["t"] - t0 + pad / RATE
        near = (ends / RATE > lo - 0.05) & (ends / RATE <= hi + 0.05) & sounding
        if not near.any():  # past the end of the padded file
            continue
        allowed = {config.LABELS[i] for i in labels_ref[near]}
        assert w["label"] in allowed, (w["t"], w["label"], allowed)
        compared += 1
    print(f"compared {compared} windows:", " ".join(f"{w['t']}:{w['label']}" for w in heard))
    assert compared >= 8 and {w["label"] for w in heard} >= {config.LABELS[g] for g in groups}


# --- bad input -----------------------------------------------------------------------------


def one_line_exit_2(done, *needles: str) -> None:
    """A subprocess.CompletedProcess or a CliRunner result: one `error:` line, exit 2."""
    code = getattr(done, "returncode", getattr(done, "exit_code", None))
    lines = done.stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def invoke(*args):
    """The CLI in this process (typer's runner): the option checks, without a Python start each."""
    from typer.testing import CliRunner

    from tfsep_edge.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--input", "{wav}", "--hop", "0"], ["--hop 0"]),
        (["--input", "{wav}", "--hop", "-0.5"], ["--hop -0.5"]),
        (["--input", "{wav}", "--hop", "1.5"], ["--hop 1.5", "at most 1"]),
        (["--input", "{wav}", "--smooth", "0"], ["--smooth 0"]),
        (["--input", "{missing}"], ["nope.wav", "no such audio file"]),
        (["--input", "{wav}", "--rate", "16000"], ["--rate"]),
        (["--input", "{wav}", "--device", "x"], ["either --device"]),
        (["-"], ["--rate"]),
        (["-", "--rate", "8000", "--format", "u8"], ["--format u8"]),
        (["--input", "{wav}", "--csv", "{nodir}"], ["does not exist"]),
        (["--input", "{wav}", "--threads", "0"], ["--threads 0"]),
    ],
)
def test_bad_options_are_one_line_exit_2(band_model, tmp_path, args, needles):
    paths = {"wav": rm.write_wav(tmp_path / "ok.wav", 1.5), "missing": tmp_path / "nope.wav"}
    paths["nodir"] = tmp_path / "no" / "t.tsv"
    done = invoke("listen", band_model, *[a.format(**paths) for a in args])
    one_line_exit_2(done, *needles)
    assert done.stdout == ""


def test_stdin_that_ends_mid_sample_is_one_line_exit_2(band_model, tmp_path):
    earlier = tmp_path / "earlier.tsv"
    earlier.write_text("an earlier run's timeline\n")
    args = ["listen", str(band_model), "-", "--rate", "8000", "--channels", "2", "--csv", str(earlier)]
    done = subprocess.run(
        [sys.executable, "-m", "tfsep_edge.cli", *args],
        input=b"\x01\x00" * 1001,  # 500 whole frames of 2 x s16, then half of one
        capture_output=True,
        cwd=REPO,
    )
    done.stderr = done.stderr.decode()
    one_line_exit_2(done, "stdin", "mid-sample", "--channels")
    assert earlier.read_text() == "an earlier run's timeline\n"  # no window, so the file is left alone


def test_stdin_that_ends_mid_sample_after_windows_keeps_them(band_model, tmp_path):
    out = tmp_path / "t.tsv"
    data = (1000 * np.random.default_rng(1).standard_normal(2 * 8000)).astype("<i2").tobytes() + b"\x01"
    args = ["listen", str(band_model), "-", "--rate", "8000", "--csv", str(out)]
    done = subprocess.run([sys.executable, "-m", "tfsep_edge.cli", *args], input=data, capture_output=True, cwd=REPO)
    err = done.stderr.decode().strip().splitlines()
    assert done.returncode == 2 and "mid-sample" in err[-1] and "3 classified" in err[-2]
    assert len(out.read_text().splitlines()) == 1 + 3  # the windows before the error are kept


def test_models_that_are_not_classifiers_are_one_line_exit_2(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    wav = rm.write_wav(tmp_path / "a.wav", 1.5)
    identity = tmp_path / "identity.onnx"  # loads fine, but takes and returns (batch, 7)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 7])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 7])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(identity))
    for not_a_model in (wav, tmp_path / "absent.onnx", identity):
        one_line_exit_2(invoke("listen", not_a_model, "--input", wav), not_a_model.name)
    one_line_exit_2(invoke("listen", "--input", wav), "give the ONNX model")


def test_predict_timeline_options_and_short_files(band_model, tmp_path):
    wav = rm.write_wav(tmp_path / "a.wav", 1.5)
    one_line_exit_2(invoke("predict", band_model, wav, "--hop", "0.5"), "--timeline")
    one_line_exit_2(invoke("predict", band_model, wav, "--timeline", "--batch", "4"), "--batch")
    one_line_exit_2(invoke("predict", band_model, wav, "--timeline", "--hop", "0"), "--hop 0")
    short = rm.write_wav(tmp_path / "short.wav", 0.4)
    out = tmp_path / "t.tsv"
    one_line_exit_2(invoke("predict", band_model, short, "--timeline", "--csv", out), "short.wav", "shorter than one")
    assert not out.exists()
    both = invoke("predict", band_model, wav, short, "--timeline")  # one good file: exit 1, the other reported
    assert both.exit_code == 1 and "short.wav" in both.stderr
    assert [line.split("\t")[1] for line in both.stdout.splitlines()] == ["1.000", "1.500"]


class FakeSoundDevice:
    """sounddevice's query/check calls for one input device that refuses every setting."""

    class CallbackAbort(Exception):
        pass

    default = type("Default", (), {"device": [0, 0]})()

    def query_devices(self, key=None, kind=None):
        device = {"index": 0, "name": "USB mic", "max_input_channels": 1, "default_samplerate": 44100.0}
        if key is None and kind is None:
            return [device]
        if key not in (None, 0, "USB mic", "USB"):
            raise ValueError(f"No input device matching {key!r}")
        return device

    def check_input_settings(self, **settings):
        raise RuntimeError("Invalid sample rate")


def test_devices_that_do_not_exist_or_do_not_open_are_one_line_errors():
    sd = FakeSoundDevice()
    with pytest.raises(TfsepError, match=r"--device webcam: no such input device .*--list-devices"):
        sources.DeviceSource(sd, "webcam")
    with pytest.raises(
        TfsepError, match=r"--device USB \(USB mic\): does not open at 44100, 48000, 32000, 16000, 8000 Hz"
    ):
        sources.DeviceSource(sd, "USB")
    with pytest.raises(TfsepError, match=r"does not open at 22050 Hz"):
        sources.DeviceSource(sd, "0", rate=22_050)
    assert sources.list_input_devices(sd) == [
        {"index": 0, "name": "USB mic", "channels": 1, "rate": 44100, "default": True}
    ]


def test_light_install_streams_files_and_names_the_listen_extra(band_model, tmp_path, no_torch):
    """No torch and no sounddevice (a Pi with `pip install tfsep-edge`): files and stdin work, a
    device asks for the extra."""
    blocker = Path(no_torch["PYTHONPATH"].split(os.pathsep)[0])
    (blocker / "sounddevice.py").write_text("raise ImportError('sounddevice is blocked in this test')\n")
    wav = rm.write_wav(tmp_path / "a.wav", 2.0)
    done = run_cli("listen", band_model, "--input", wav, "--json", env=no_torch)
    assert done.returncode == 0, done.stderr
    assert json_lines(done.stdout)[1]["classified"] == 3
    one_line_exit_2(run_cli("listen", "--list-devices", env=no_torch), "pip install 'tfsep-edge[listen]'")
