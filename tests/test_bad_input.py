"""Bad input, systematically: every command that reads an artifact is fed every artifact kind cut
short (0 bytes, a few bytes, about half), another kind's file under the right extension, and
unwritable or occupied output paths. Each must end as a user error: exit 2, exactly one line on
stderr naming the file, no traceback, and nothing written (or half-written) where the output goes.

The valid artifacts (an untrained C=8 checkpoint, its quantize folder, its ONNX and .tflite
exports, a WAV, a tiny SYNTHETIC data set) are built once per module, on first use; the bad
files are derived from them. Commands that import torch before they can look at their input
cost seconds a call, so the fast tier holds the torch-free commands' cases (all of predict's,
one per input kind for the others) and the crash this file was written for; the rest are slow.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import runtime_models as rm
from conftest import run_cli

torch = pytest.importorskip("torch")
pytest.importorskip("ai_edge_litert")

from tfsep_edge.core.kinds import QUANTIZED_FILE  # noqa: E402

UNWRITABLE_ROOT = Path("/proc/x")
ONE_EPOCH = (
    "--epochs",
    "1",
    "--warmup-epochs",
    "0",
    "--width",
    "8",
)  # train options: as little work as there is  # a folder no one can create, not even root


# --- the valid artifacts, each built once, when a test first needs it ----------------------------


def _checkpoint(root: Path, _art) -> Path:
    from tfsep_edge.model.checkpoint import save_checkpoint
    from tfsep_edge.model.tfsepnet import random_model

    save_checkpoint(random_model(8), root / "c8.pt")
    return root / "c8.pt"


def _onnx(root: Path, art) -> Path:
    from tfsep_edge.export.onnx_export import export

    export(art["checkpoint"], root / "c8.onnx", timing=False, echo=lambda _text: None)
    return root / "c8.onnx"


def _tflite(root: Path, art) -> Path:
    from tfsep_edge.export.tflite_export import export_tflite

    export_tflite(art["checkpoint"], root / "c8.tflite", timing=False, echo=lambda _text: None)
    return root / "c8.tflite"


def _quantized(root: Path, art) -> Path:
    """A quantize folder as the command writes it, calibrated on noise: its numbers do not matter here."""
    from tfsep_edge.model.checkpoint import load_model
    from tfsep_edge.quant.artifact import save_quantized
    from tfsep_edge.quant.calibrate import QuantOptions
    from tfsep_edge.quant.quantize import quantize_model

    model = quantize_model(load_model(art["checkpoint"]), [torch.randn(8, 1, 128, 44)], QuantOptions(engine="x86"))[0]
    return save_quantized(model, root / "c8-int8")


def _synth_set(root: Path, _art) -> Path:
    from tfsep_edge.datasets.synth import synthesize

    return synthesize(root / "synth", clips_per_class=2, seed=0)


BUILDERS = {
    "checkpoint": _checkpoint,  # an untrained C=8 model: every other model is made from it
    "onnx": _onnx,
    "tflite": _tflite,
    "quantized": _quantized,
    "wav": lambda root, _art: rm.write_wav(root / "clip.wav", 1.0),
    "data": _synth_set,
}


class Artifacts:
    """The valid artifacts by kind, built on first use: the fast tier never pays for the quantize
    folder, which only slow cases read."""

    def __init__(self, root: Path):
        self.root = root
        self.built: dict[str, Path] = {}

    def __getitem__(self, kind: str) -> Path:
        if kind not in self.built:
            torch.set_num_threads(1)
            self.built[kind] = BUILDERS[kind](self.root, self)
        return self.built[kind]


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Artifacts:
    return Artifacts(tmp_path_factory.mktemp("good"))


# --- bad inputs: how each is made from the valid artifacts --------------------------------------


def _cut(kind: str, keep: Callable[[int], int]) -> Callable[[Artifacts, Path], Path]:
    """A copy of the `kind` artifact holding only its first keep(size) bytes (for a quantize
    folder: its model file cut)."""

    def make(good: Artifacts, where: Path) -> Path:
        source = good[kind]
        if source.is_dir():
            folder = where / source.name
            shutil.copytree(source, folder)
            model = folder / QUANTIZED_FILE
            model.write_bytes(model.read_bytes()[: keep(model.stat().st_size)])
            return folder
        target = where / source.name
        target.write_bytes(source.read_bytes()[: keep(source.stat().st_size)])
        return target

    return make


def _as(kind: str, name: str) -> Callable[[Artifacts, Path], Path]:
    """Another kind's file (or text) under the name (and extension) this input expects."""

    def make(good: Artifacts, where: Path) -> Path:
        target = where / name
        if kind == "text":
            target.write_text("this is not a model, just some text a user saved\n")
        elif name == QUANTIZED_FILE:  # a quantize folder whose model file is something else
            (where / "fake-int8").mkdir()
            target = where / "fake-int8" / QUANTIZED_FILE
            shutil.copy(good[kind], target)
            return target.parent
        else:
            shutil.copy(good[kind], target)
        return target

    return make


def _data(change: str) -> Callable[[Artifacts, Path], Path]:
    """A copy of the SYNTHETIC data set damaged in one way."""

    def make(good: Artifacts, where: Path) -> Path:
        if change == "empty folder":
            (where / "data").mkdir()
            return where / "data"
        if change == "a wav file":
            return _as("wav", "data")(good, where)
        data = shutil.copytree(good["data"], where / "data", ignore=shutil.ignore_patterns(".tfsep-cache"))
        if change == "split lists cut mid-row":  # the last row names a clip that is not there
            for split in (data / "evaluation_setup").glob("fold1_*.csv"):
                split.write_bytes(split.read_bytes()[: split.stat().st_size // 2])
        elif change == "split list empty":
            (data / "evaluation_setup" / "fold1_train.csv").write_bytes(b"")
            (data / "evaluation_setup" / "fold1_evaluate.csv").write_bytes(b"")
        elif change in ("a clip empty", "a clip cut to half"):
            for clip in sorted((data / "audio").glob("*.wav")):  # every clip: each split meets one
                size = clip.stat().st_size
                clip.write_bytes(clip.read_bytes()[: 0 if change == "a clip empty" else size // 2])
        return data

    return make


CUTS = {"0 bytes": lambda _n: 0, "7 bytes": lambda _n: 7, "half": lambda n: n // 2}
# For a 58 kB .tflite, 2,000 bytes holds the flatbuffer's root table but not the tables it points to.
TFLITE_CUTS = {**CUTS, "2000 bytes": lambda _n: 2000}


def bad_inputs(kind: str) -> dict[str, Callable[[Artifacts, Path], Path]]:
    """Every bad version of an input of `kind`, by a name that says what it is."""
    cuts = TFLITE_CUTS if kind == "tflite" else CUTS
    out = {f"{kind} cut to {name}": _cut(kind, keep) for name, keep in cuts.items()}
    impostors = {
        "onnx": {"wav named .onnx": _as("wav", "m.onnx"), "tflite named .onnx": _as("tflite", "m.onnx")},
        "tflite": {"onnx named .tflite": _as("onnx", "m.tflite"), "wav named .tflite": _as("wav", "m.tflite")},
        "checkpoint": {"text named .pt": _as("text", "m.pt"), "onnx named .pt": _as("onnx", "m.pt")},
        "quantized": {"onnx as the quantize folder's model": _as("onnx", QUANTIZED_FILE)},
        "wav": {"text named .wav": _as("text", "a.wav"), "onnx named .wav": _as("onnx", "a.wav")},
    }
    if kind == "data":
        names = ("empty folder", "a wav file", "split lists cut mid-row", "split list empty", "a clip empty")
        return {f"data: {name}": _data(name) for name in (*names, "a clip cut to half")}
    return out | impostors[kind]


# --- the commands, each with the inputs it reads and the outputs it writes ----------------------


@dataclass(frozen=True)
class Command:
    """One command called with one input replaced: `argv(inputs, out)` gets the inputs (the bad one
    among the valid artifacts) and a fresh output folder; `output` names the file or folder the
    call would write there (it must not appear)."""

    name: str
    reads: tuple[str, ...]  # the input kinds this command is fed bad versions of
    argv: Callable[[Inputs, Path], list]
    model: str = "onnx"  # the valid model it runs when another input is the bad one
    output: str | None = None
    torch_first: bool = False  # imports torch before it looks at its input (~2.5 s a call)


class Inputs:
    """The valid artifacts with one replaced; ["model"] is the bad model, or the command's valid one."""

    def __init__(self, good: Artifacts, command: Command, kind: str, bad: Path):
        self.good, self.command = good, command
        self.replaced = {"model" if kind in MODEL_KINDS else kind: bad}

    def __getitem__(self, key: str) -> Path:
        if key in self.replaced:
            return self.replaced[key]
        return self.good[self.command.model if key == "model" else key]


MODEL_KINDS = ("onnx", "tflite", "checkpoint", "quantized")
COMMANDS = [
    Command(
        "predict",
        ("onnx", "tflite", "wav"),
        lambda i, out: ["predict", i["model"], i["wav"], "--csv", out / "pred.csv"],
        output="pred.csv",
    ),
    Command(
        "listen",
        ("onnx", "tflite", "wav"),
        lambda i, out: ["listen", i["model"], "--input", i["wav"], "--csv", out / "tl.csv"],
        output="tl.csv",
    ),
    Command(
        "bench",
        MODEL_KINDS,
        lambda i, out: ["bench", i["model"], "--warmup", "0", "--runs", "1", "--json", out / "b.json"],
        output="b.json",
    ),
    Command("budget", MODEL_KINDS, lambda i, out: ["budget", i["model"]], torch_first=True),
    Command(
        "evaluate",
        (*MODEL_KINDS, "data"),
        lambda i, out: ["evaluate", i["model"], i["data"], "--json", out / "e.json"],
        output="e.json",
    ),
    Command(
        "export",
        ("checkpoint", "quantized"),
        lambda i, out: ["export", i["model"], "--onnx", out / "x.onnx", *(["--int8"] if i["model"].is_dir() else [])],
        model="checkpoint",
        output="x.onnx",
        torch_first=True,
    ),
    Command(
        "quantize",
        ("checkpoint", "data"),
        lambda i, out: [
            "quantize",
            i["model"],
            "--calib",
            i["data"],
            "--num-calib",
            "8",
            "--no-sensitivity",
            "-o",
            out / "q",
        ],
        model="checkpoint",
        output="q",
        torch_first=True,
    ),
    Command(
        "train",
        ("data",),
        lambda i, out: ["train", i["data"], "-o", out / "run", *ONE_EPOCH],
        output="run",
        torch_first=True,
    ),
]

# The fast tier: predict meets every bad model and audio file (its readers are the ones listen,
# bench and evaluate share), the others one bad file per kind; cases that import torch before
# failing are slow, but for the crashes this file was written for.
REPRESENTATIVE = {
    "onnx": "onnx cut to half",
    "tflite": "tflite cut to 2000 bytes",
    "wav": "wav cut to half",
    "data": "data: a clip cut to half",
}
FAST_TORCH_CASES = {("budget", "tflite cut to half")}


def _fast(command: Command, kind: str, case: str) -> bool:
    if command.torch_first or kind in ("checkpoint", "quantized"):
        return (command.name, case) in FAST_TORCH_CASES
    return command.name == "predict" or REPRESENTATIVE[kind] == case


def _input_cases():
    for command in COMMANDS:
        for kind in command.reads:
            for case, make in bad_inputs(kind).items():
                marks = [] if _fast(command, kind, case) else [pytest.mark.slow]
                yield pytest.param(command, kind, make, id=f"{command.name}-{case}", marks=marks)


def _one_line_error(done, *names: object) -> str:
    """The checks every case shares; returns the error line."""
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, f"exit {done.returncode}; stderr:\n{done.stderr[-3000:]}"
    assert len(lines) == 1, done.stderr[-3000:]
    assert any(str(n) in lines[0] for n in names), f"names none of {names}: {lines[0]}"
    return lines[0]


def _listing(folder: Path) -> dict[str, bytes | None]:
    """What a folder holds (files with their bytes): compared before and after a call."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("command, kind, make", list(_input_cases()))
def test_bad_input_is_one_line_exit_2(good, tmp_path, command, kind, make):
    bad_dir, out_dir = tmp_path / "bad", tmp_path / "out"
    bad_dir.mkdir()
    out_dir.mkdir()
    bad = make(good, bad_dir)
    argv = command.argv(Inputs(good, command, kind, bad), out_dir)
    before = _listing(bad_dir)
    done = run_cli(*argv, timeout=300)
    _one_line_error(done, bad, bad.name)
    assert _listing(out_dir) == {}, "the failed call left output behind"
    assert _listing(bad_dir) == before, "the failed call changed its input"


# --- unwritable and occupied outputs ------------------------------------------------------------


@dataclass(frozen=True)
class Output:
    """A command writing one file or folder; `argv(good, target)` writes it at `target`."""

    name: str
    argv: Callable[[Artifacts, Path], list]
    folder: bool = False  # the output is a folder (an existing file there is "occupied")
    suffix: str = ""
    torch_first: bool = False


OUTPUTS = [
    Output("predict --csv", lambda g, t: ["predict", g["onnx"], g["wav"], "--csv", t], suffix=".csv"),
    Output("listen --csv", lambda g, t: ["listen", g["onnx"], "--input", g["wav"], "--csv", t], suffix=".csv"),
    Output(
        "bench --json", lambda g, t: ["bench", g["onnx"], "--warmup", "0", "--runs", "1", "--json", t], suffix=".json"
    ),
    Output("evaluate --json", lambda g, t: ["evaluate", g["onnx"], g["data"], "--json", t], suffix=".json"),
    Output("evaluate --plot", lambda g, t: ["evaluate", g["onnx"], g["data"], "--plot", t], suffix=".png"),
    Output("synth", lambda g, t: ["synth", t, "--clips-per-class", "2"], folder=True),
    Output("export --onnx", lambda g, t: ["export", g["checkpoint"], "--onnx", t], suffix=".onnx", torch_first=True),
    Output(
        "export --tflite", lambda g, t: ["export", g["checkpoint"], "--tflite", t], suffix=".tflite", torch_first=True
    ),
    Output(
        "quantize -o",
        lambda g, t: [
            "quantize",
            g["checkpoint"],
            "--calib",
            g["data"],
            "--num-calib",
            "8",
            "--no-sensitivity",
            "-o",
            t,
        ],
        folder=True,
        torch_first=True,
    ),
    Output("train -o", lambda g, t: ["train", g["data"], "-o", t, *ONE_EPOCH], folder=True, torch_first=True),
]
PLACES = ("unwritable", "under a file", "occupied")


# The fast tier: every place for one file output and for synth's folder (the checks in
# core/fileio that every command shares; /proc/x for synth: os.access says yes there to root,
# only a folder actually made tells), one place for each other torch-free command.
FAST_OUTPUTS = {"predict --csv": PLACES, "synth": PLACES}


def _output_cases():
    for output in OUTPUTS:
        fast = FAST_OUTPUTS.get(output.name, () if output.torch_first else ("occupied",))
        for place in PLACES:
            marks = [] if place in fast else [pytest.mark.slow]
            yield pytest.param(output, place, id=f"{output.name}-{place}", marks=marks)


@pytest.mark.parametrize("output, place", list(_output_cases()))
def test_bad_output_path_is_one_line_exit_2(good, tmp_path, output, place):
    name = "out" + output.suffix
    if place == "unwritable":
        target = UNWRITABLE_ROOT / name
    elif place == "under a file":
        (tmp_path / "plain").write_text("a regular file\n")
        target = tmp_path / "plain" / name
    elif output.folder:  # occupied: a file where the folder is to be made
        target = tmp_path / name
        target.write_text("a file the user keeps\n")
    else:  # occupied: a folder where the file is to be written
        target = tmp_path / name
        (target / "keep").mkdir(parents=True)
    before = _listing(tmp_path)
    done = run_cli(*output.argv(good, target), timeout=300)
    _one_line_error(done, target)
    assert not UNWRITABLE_ROOT.exists()
    assert _listing(tmp_path) == before, "the failed call wrote something"
