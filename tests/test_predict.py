"""`tfsep-edge predict` as a user runs it: torch-free, files and folders, the DCASE CSV, bad input."""

from __future__ import annotations

import csv
import shutil
import sys

import numpy as np
import pytest
import runtime_models as rm
from conftest import run_cli

from tfsep_edge.core import config
from tfsep_edge.runtime.classifier import OnnxClassifier


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return rm.logmel_model(tmp_path_factory)


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory, data_dir):
    """A folder tree: mono 32 kHz, stereo 48 kHz, a 4.5-s clip, a short clip, and the MicIRP WAVs."""
    root = tmp_path_factory.mktemp("audio") / "audio"
    rm.write_wav(root / "mono32k.wav", 1.0, seed=1)
    rm.write_wav(root / "sub" / "stereo48k.wav", 1.0, rate=48_000, channels=2, seed=2)
    rm.write_wav(root / "sub" / "deeper" / "long.wav", 4.5, rate=44_100, seed=3)
    rm.write_wav(root / "short.wav", 0.3, rate=16_000, seed=4)
    for wav in sorted((data_dir / "micirp").glob("*.wav"))[:2]:
        shutil.copy(wav, root / wav.name)
    (root / "notes.txt").write_text("not audio, ignored by the folder search")
    return root


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f, delimiter="\t"))


def test_predict_runs_without_torch(model, audio_dir, tmp_path, no_torch):
    blocked = run_cli("budget", "--width", "12", env=no_torch)  # sanity: torch really is unavailable there
    assert blocked.returncode != 0
    out = tmp_path / "out.csv"
    done = run_cli("predict", model, audio_dir, "--csv", out, "--top", "3", env=no_torch)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 6
    # Each line: the name, then 3 scenes with probabilities in descending order.
    for line in lines:
        name, *tops = line.split("\t")
        assert name.startswith("audio/") and len(tops) == 3
        probs = [float(t.split()[1]) for t in tops]
        assert probs == sorted(probs, reverse=True)
        assert all(t.split()[0] in config.LABELS for t in tops)


def test_csv_is_the_dcase_format(model, audio_dir, tmp_path):
    out = tmp_path / "out.csv"
    done = run_cli("predict", model, audio_dir, "--csv", out, "--batch", "3")
    assert done.returncode == 0, done.stderr
    raw = out.read_text(encoding="utf-8")
    rows = read_csv(out)
    assert rows[0] == ["filename", "scene_label", *config.LABELS]
    assert raw.splitlines()[0] == "filename\tscene_label\t" + "\t".join(config.LABELS)
    names = [r[0] for r in rows[1:]]
    assert sorted(names) == sorted(
        [
            "audio/mono32k.wav",
            "audio/short.wav",
            "audio/sub/stereo48k.wav",
            "audio/sub/deeper/long.wav",
            "audio/BBCmarconi_B.wav",
            "audio/IR_AKGD12.wav",
        ]
    )
    clf = OnnxClassifier(model)
    for row in rows[1:]:
        assert len(row) == 2 + config.NUM_CLASSES
        probs = np.array([float(v) for v in row[2:]])
        assert abs(probs.sum() - 1.0) < 1e-4
        assert row[1] == config.LABELS[int(np.argmax(probs))]
        # The same numbers as the Python API on the same file (resampled, downmixed, windowed).
        logits = clf.predict_file(audio_dir.parent / row[0])
        expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        np.testing.assert_allclose(probs, expected, atol=2e-6)
    assert not list(tmp_path.glob(".out.csv.*")), "temporary file left behind"


def test_single_files_keep_their_given_names(model, audio_dir):
    wav = audio_dir / "mono32k.wav"
    done = run_cli("predict", model, wav, audio_dir / "short.wav")
    assert done.returncode == 0, done.stderr
    assert [ln.split("\t")[0] for ln in done.stdout.splitlines()] == [str(wav), str(audio_dir / "short.wav")]


def test_waveform_input_model(tmp_path_factory, audio_dir, tmp_path):
    path = rm.waveform_model(tmp_path_factory)
    out = tmp_path / "w.csv"
    done = run_cli("predict", path, audio_dir / "mono32k.wav", "--csv", out)
    assert done.returncode == 0, done.stderr
    import soundfile as sf

    wave, _ = sf.read(str(audio_dir / "mono32k.wav"), dtype="float32")
    logits = rm.segment_means(wave[None, :32_000])[0]
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    row = read_csv(out)[1]
    np.testing.assert_allclose([float(v) for v in row[2:]], probs, atol=2e-6)


def test_bad_file_is_skipped_with_exit_1(model, audio_dir, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(audio_dir, mixed)
    (mixed / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage")
    out = tmp_path / "m.csv"
    done = run_cli("predict", model, mixed, "--csv", out)
    assert done.returncode == 1
    assert "broken.wav" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stdout.strip().splitlines()) == 6
    assert len(read_csv(out)) == 1 + 6  # the good files are still written


@pytest.mark.parametrize(
    "args, message",
    [
        (["{audio}", "--threads", "0"], "--threads 0"),
        (["{audio}", "--top", "0"], "--top 0"),
        (["{audio}", "--top", "11"], "--top 11"),
        (["{audio}", "--batch", "0"], "--batch 0"),
        (["{missing}"], "no such file or folder"),
        (["{empty}"], "folder has no audio files"),
        (["{broken_header}"], "cannot read as audio"),
    ],
)
def test_bad_input_is_one_line_exit_2(model, audio_dir, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no audio here")
    (tmp_path / "bh.wav").write_bytes(b"RIFF\xff\xff\xff\xffWAVEfmt \x10\x00")
    paths = {
        "audio": audio_dir,
        "missing": tmp_path / "nope",
        "empty": tmp_path / "empty",
        "broken_header": tmp_path / "bh.wav",
    }
    done = run_cli("predict", model, *[a.format(**paths) for a in args])
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and message in done.stderr
    assert done.stdout == ""


def test_bad_models_are_one_line_exit_2(audio_dir, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01not onnx" * 50)
    for model in (junk, tmp_path / "absent.onnx", audio_dir / "mono32k.wav"):
        done = run_cli("predict", model, audio_dir)
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and str(model.name) in lines[0], done.stderr


@pytest.mark.parametrize("hidden", ["width", "batch"])
def test_symbolic_input_hiding_another_shape_is_one_line_exit_2(audio_dir, tmp_path, hidden):
    """Input dims ('N', 1, 'H', 'W') pass the header check, but the graph really needs W=7, or
    (Flatten over the batch) runs only one example at a time."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    if hidden == "width":
        nodes = [
            helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2], keepdims=0),
            helper.make_node("MatMul", ["m", "w"], ["logits"]),
        ]
        weight = np.ones((7, 10), np.float32)
    else:
        nodes = [
            helper.make_node("Flatten", ["x"], ["m"], axis=0),
            helper.make_node("MatMul", ["m", "w"], ["logits"]),
        ]
        weight = np.ones((128 * 44, 10), np.float32)
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, "H", "W"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(weight, "w")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    path = tmp_path / "symbolic.onnx"
    onnx.save(proto, str(path))
    # bench feeds batch 1 by default, which the batch-hiding graph can take
    bench_args = ("bench", path, "--runs", "3") + (("--batch", "2") if hidden == "batch" else ())
    for args in (("predict", path, audio_dir), bench_args):
        done = run_cli(*args)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, done.stderr
        assert "symbolic.onnx" in lines[0] and "Traceback" not in done.stderr


def test_output_path_that_is_a_folder_fails_before_work(model, audio_dir, tmp_path):
    folder = tmp_path / "taken"
    folder.mkdir()
    for args in (
        ("predict", model, audio_dir, "--csv", folder),
        ("bench", model, "--runs", "3", "--json", folder),
    ):
        done = run_cli(*args)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and "is a folder" in lines[0], done.stderr
        assert done.stdout == ""  # nothing classified or measured first
    assert list(folder.iterdir()) == []


def test_csv_into_missing_folder_fails_before_work(model, audio_dir, tmp_path):
    done = run_cli("predict", model, audio_dir, "--csv", tmp_path / "no" / "out.csv")
    assert done.returncode == 2 and "does not exist" in done.stderr


def test_folder_where_nothing_reads_is_exit_2_without_csv(model, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("x.wav", "y.wav"):
        (bad / name).write_bytes(b"not a wav")
    out = tmp_path / "o.csv"
    done = run_cli("predict", model, bad, "--csv", out)
    assert done.returncode == 2
    assert "none of the 2 audio files" in done.stderr.strip().splitlines()[-1]
    assert not out.exists()


def test_real_exports_logmel_and_waveform_agree(tmp_path, audio_dir):
    """The project's own export, both inputs: predict's numpy front end vs the front end in the graph."""
    from tfsep_edge.export.onnx_export import export
    from tfsep_edge.model.checkpoint import save_checkpoint
    from tfsep_edge.model.tfsepnet import random_model

    ckpt = tmp_path / "c12.pt"
    save_checkpoint(random_model(12, seed=5), ckpt)
    outs = {}
    for kind, frontend in (("logmel", False), ("waveform", True)):
        onnx_path = tmp_path / f"{kind}.onnx"
        export(ckpt, onnx_path, frontend=frontend, timing=False, echo=lambda _text: None)
        assert OnnxClassifier(onnx_path).input_kind == kind
        csv_path = tmp_path / f"{kind}.csv"
        done = run_cli("predict", onnx_path, audio_dir, "--csv", csv_path)
        assert done.returncode == 0, done.stderr
        outs[kind] = {row[0]: np.array([float(v) for v in row[2:]]) for row in read_csv(csv_path)[1:]}
    assert outs["logmel"].keys() == outs["waveform"].keys() and len(outs["logmel"]) == 6
    for name, probs in outs["logmel"].items():
        np.testing.assert_allclose(outs["waveform"][name], probs, atol=1e-4)


def test_progress_bar_only_on_a_terminal(monkeypatch):
    """Piped stderr (CI logs, `2> log`) gets no tqdm redraws; a terminal gets the bar."""
    import io

    from tfsep_edge.core.progress import progress_bar

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    # (stream, enabled, bar shown): a pipe never; a terminal unless the caller turned it off
    for stream, enabled, shown in ((io.StringIO(), True, False), (Terminal(), True, True), (Terminal(), False, False)):
        monkeypatch.setattr(sys, "stderr", stream)
        with progress_bar(3, "files", enabled=enabled) as bar:
            bar.update(3)
        assert ("files" in stream.getvalue()) is shown
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(sys, "stderr", closed)  # isatty() raises ValueError: no bar, no crash
    assert progress_bar(3, "files").disable


def test_jobs_give_the_same_rows_in_the_same_order(model, audio_dir, tmp_path):
    """--jobs 2 (spawned processes, the model loaded once in each): the same stdout lines and CSV
    bytes as one job, a broken file still reported and skipped with exit 1."""
    mixed = tmp_path / "mixed"
    shutil.copytree(audio_dir, mixed)
    for i in range(12):  # enough files for several chunks per process
        rm.write_wav(mixed / "more" / f"clip{i:02d}.wav", 1.0 + 0.25 * (i % 3), seed=10 + i)
    (mixed / "more" / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage")
    runs = {}
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}.csv"
        done = run_cli("predict", model, mixed, "--csv", out, "--top", "2", "--jobs", str(jobs), "--batch", "4")
        assert done.returncode == 1, done.stderr
        assert "broken.wav" in done.stderr and "Traceback" not in done.stderr
        runs[jobs] = (done.stdout, out.read_bytes())
    assert len(runs[1][0].strip().splitlines()) == 6 + 12
    assert runs[2] == runs[1]


@pytest.mark.parametrize("jobs", ["0", "-3"])
def test_jobs_below_one_is_one_line_exit_2(model, audio_dir, jobs):
    done = run_cli("predict", model, audio_dir, "--jobs", jobs)
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: --jobs {jobs}: must be at least 1"
    assert done.stdout == ""
