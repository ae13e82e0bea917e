"""The `tfsep-edge` command line. Parses options, calls one function, prints.

Nothing heavy is imported at module level: torch-only commands import torch inside, and say
how to install it when it is missing. Errors a user can cause (TfsepError) become one line
on stderr and exit code 2.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Optional

import typer

from tfsep_edge.core.config import DEFAULT_NUM_CALIB, INT16_NORMS
from tfsep_edge.core.errors import TfsepError, check_at_least_one
from tfsep_edge.core.torch_check import require_torch

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="TF-SepNet from a PyTorch checkpoint to a verified INT8 model on an edge CPU.",
)


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def user_errors(fn):
    """Turn TfsepError into one line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TfsepError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


MODEL_HELP = "model family: tfsepnet | bcresnet | tfsepnet-v2 (TF-SepNet-64) [tfsepnet]"
NORM_HELP = "tfsepnet only: adaresnorm (the report's) | resnorm (Table 3's ablation) [adaresnorm]"
DEPTH_HELP = "tfsepnet-v2 only: 16 | 17 (17: a max-pool before the last stage) [17]"


@app.command()
@user_errors
def budget(
    model: Optional[Path] = typer.Argument(
        None, help="checkpoint, quantize folder, .onnx or .tflite; none: an untrained model of --width"
    ),
    width: Optional[int] = typer.Option(
        None,
        "--width",
        help="count an untrained model of this width (default: the family's, tfsepnet 12); with MODEL: must match it",
    ),
    model_family: Optional[str] = typer.Option(None, "--model", help=MODEL_HELP),
    norm: Optional[str] = typer.Option(None, "--norm", help=NORM_HELP),
    depth: Optional[int] = typer.Option(None, "--depth", help=DEPTH_HELP),
    table3: bool = typer.Option(
        False,
        "--table3",
        help="every network of the report's Table 3 and TF-SepNet-64: the report's figures next to ours",
    ),
    shuffle_groups: Optional[int] = typer.Option(
        None, "--shuffle-groups", help="default width // 4; needed for reference state_dicts trained otherwise"
    ),
    n_mels: Optional[int] = typer.Option(
        None, "--n-mels", help="input mel bands (7..1024) [the family's: 128; tfsepnet-v2 512]"
    ),
    frames: Optional[int] = typer.Option(
        None, "--frames", help="input frames (7..1024) [the family's 1 s: 44; tfsepnet-v2 64]"
    ),
    dtype: str = typer.Option("int8", "--dtype", help="int8 | float16 | float32: storage type of the parameters"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    sweep: bool = typer.Option(False, "--sweep", help="list every valid width 8..64 and the largest that fits"),
    ram: Optional[str] = typer.Option(
        None, "--ram", help="a .tflite: RAM limit (96K = 96,000 bytes, 96KiB, 80000); TFLite Micro's arena must fit"
    ),
    flash: Optional[str] = typer.Option(None, "--flash", help="a .tflite: flash limit for the model (same units)"),
) -> None:
    """Parameters, bytes and MACs by the official DCASE (NeSsi) rule; PASS/FAIL against the limits.

    Counts torchinfo's total_params and total_mult_adds on the float model at 1x1xN_MELSxFRAMES,
    prints a per-layer table, the limits (param bytes <= 128,000, MACs <= 30,000,000) with headroom,
    and, as a separate figure, the elementwise work the official rule leaves out. With neither MODEL
    nor --width it counts an untrained width-12 model. A .tflite also gets its microcontroller
    figures: RAM (the smallest TFLite Micro arena, measured) and flash, against --ram / --flash.
    Exit 0 fits, 1 does not fit, 2 bad input.
    """
    from tfsep_edge.budget.count import FamilyOptions, budget_command
    from tfsep_edge.runtime.micro import footprint

    if table3:
        from tfsep_edge.budget.table3 import table3_command

        picked = {"MODEL": model, "--width": width, "--model": model_family, "--norm": norm, "--depth": depth}
        picked |= {"--sweep": sweep or None, "--ram": ram, "--flash": flash, "--shuffle-groups": shuffle_groups}
        raise typer.Exit(table3_command([k for k, v in picked.items() if v is not None], as_json))

    code = budget_command(
        model=model,
        width=width,
        shuffle_groups=shuffle_groups,
        n_mels=n_mels,
        frames=frames,
        dtype=dtype,
        as_json=as_json,
        sweep=sweep,
        ram=ram,
        flash=flash,
        measure_device=footprint,
        family=FamilyOptions(model_family, norm, depth),
    )
    raise typer.Exit(code)


@app.command()
@user_errors
def synth(
    out: Path = typer.Argument(..., help="folder to write (new, or an earlier synthetic set to replace)"),
    clips_per_class: int = typer.Option(20, "--clips-per-class", help="clips per scene class (about 40% evaluate)"),
    seed: int = typer.Option(0, "--seed"),
    preset: str = typer.Option(
        "easy", "--preset", help="easy: wide margins (demo, tests) | tau-like: scenes overlap, accuracy near TAU22's"
    ),
    size: str = typer.Option(
        "small",
        "--size",
        help="small: --clips-per-class | tau22: TAU22's 230,350 clips, devices, fold-1 split sizes, 24-bit WAVs",
    ),
    fraction: Optional[float] = typer.Option(
        None, "--fraction", help="with --size tau22: this share of TAU22's clips, same proportions"
    ),
    clips: Optional[int] = typer.Option(None, "--clips", help="with --size tau22: N clips in all, same proportions"),
    workers: int = typer.Option(0, "--workers", help="write the clips in N processes (the same files)"),
) -> None:
    """Write a SYNTHETIC data set in the TAU22 layout (small for the demo and tests, or TAU22's
    size and proportions with --size tau22), with DCASE 2024/2025-style training subsets
    split_setup/split5.csv ... split100.csv (for --train-split)."""
    from tfsep_edge.datasets.synth import clips_of_fraction, preset_overlap, synthesize
    from tfsep_edge.datasets.tau import read_split

    if fraction is not None and clips is not None:
        raise TfsepError(f"--fraction {fraction} and --clips {clips}: give one of them")
    if fraction is not None:
        clips = clips_of_fraction(fraction)
    path = synthesize(
        out,
        clips_per_class=clips_per_class,
        seed=seed,
        overlap=preset_overlap(preset),
        size=size,
        clips=clips,
        workers=workers,
    )
    counts = {s: len(read_split(path, s)) for s in ("train", "evaluate")}
    typer.echo(
        f"wrote SYNTHETIC TAU22-layout set {path}: {counts['train']} train, {counts['evaluate']} evaluate clips; "
        f"training subsets in {path / 'split_setup'}"
    )


@app.command()
@user_errors
def predict(
    model: Path = typer.Argument(..., help="ONNX or .tflite model (from `tfsep-edge export`)"),
    audio: list[Path] = typer.Argument(..., help="audio files or folders (searched recursively)"),
    csv: Optional[Path] = typer.Option(None, "--csv", help="write the DCASE Task 1 output (tab-separated)"),
    top: int = typer.Option(1, "--top", help="print the K most likely scenes per file"),
    threads: int = typer.Option(1, "--threads", help="onnxruntime / LiteRT threads"),
    batch: Optional[int] = typer.Option(None, "--batch", help="1-s windows per inference call [16]"),
    timeline: bool = typer.Option(
        False, "--timeline", help="one result per 1-s window, --hop apart, each file streamed (long recordings)"
    ),
    hop: Optional[float] = typer.Option(None, "--hop", help="with --timeline: seconds between windows [0.5]"),
    jobs: int = typer.Option(1, "--jobs", help="classify files in N processes (same output, same order)"),
) -> None:
    """Classify audio files with an ONNX or .tflite model, torch-free (the edge runtime)."""
    check_at_least_one("--jobs", jobs)
    from tfsep_edge.bench.machine import pin_blas_threads

    pin_blas_threads(max(threads, 1))  # the numpy front end's products stay on --threads cores too
    if timeline:
        if batch is not None:
            raise TfsepError("--batch does not apply to --timeline (windows are classified one at a time, as listen)")
        from tfsep_edge.runtime.stream import DEFAULT_HOP
        from tfsep_edge.runtime.timeline import timeline_command

        if jobs != 1:
            raise TfsepError("--jobs does not apply to --timeline (each file is streamed, as listen)")
        raise typer.Exit(timeline_command(model, audio, csv, DEFAULT_HOP if hop is None else hop, top, threads))
    if hop is not None:
        raise TfsepError("--hop applies to --timeline only (without it, a file gets one label)")
    from tfsep_edge.runtime.classifier import predict_command

    code = predict_command(model, audio, csv, top, threads, 16 if batch is None else batch, jobs=jobs)
    raise typer.Exit(code)


@app.command()
@user_errors
def listen(
    model: Optional[Path] = typer.Argument(None, help="ONNX or .tflite model (not needed with --list-devices)"),
    source: Optional[str] = typer.Argument(None, help="same as --input: a recording, or - for raw PCM on stdin"),
    device: Optional[str] = typer.Option(
        None, "--device", help="microphone, as PortAudio names it or its index (--list-devices) [the default input]"
    ),
    input_: Optional[str] = typer.Option(None, "--input", help="a recording to stream, or - for raw PCM on stdin"),
    hop: float = typer.Option(0.5, "--hop", help="seconds between windows (0 < HOP <= 1)"),
    smooth: int = typer.Option(1, "--smooth", help="average the probabilities of the last N windows"),
    threads: int = typer.Option(1, "--threads", help="onnxruntime / LiteRT threads"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per window on stdout, then a summary"),
    csv: Optional[Path] = typer.Option(None, "--csv", help="write the timeline (DCASE columns and a time column)"),
    realtime: bool = typer.Option(
        False, "--realtime", help="treat --input as live: pace a file like a microphone; never block a pipe (drop)"
    ),
    rate: Optional[int] = typer.Option(None, "--rate", help="sample rate of raw PCM on stdin; or open a device at it"),
    channels: Optional[int] = typer.Option(None, "--channels", help="channels of raw PCM [1]; or of a device"),
    pcm_format: str = typer.Option("s16le", "--format", help="raw PCM on stdin: s16le | s32le | f32le"),
    list_devices: bool = typer.Option(False, "--list-devices", help="list the input devices and exit"),
) -> None:
    """Classify a microphone, a stream on stdin or a long recording, a 1-s window every --hop seconds.

    Windows the classifier has no time for (live sources) are dropped and counted; memory stays
    flat however long it runs. Ctrl-C or SIGTERM ends it with a summary. Needs the [listen] extra
    for microphones.
    """
    from tfsep_edge.runtime.listen import list_devices_command, listen_command

    if list_devices:
        raise typer.Exit(list_devices_command())
    if model is None:
        raise TfsepError("give the ONNX model: tfsep-edge listen MODEL [--device NAME | --input FILE | -]")
    if source is not None and input_ is not None and source != input_:
        raise TfsepError(f"give the input once: {source} or --input {input_}")
    from tfsep_edge.bench.machine import pin_blas_threads

    pin_blas_threads(max(threads, 1))
    options = dict(hop=hop, smooth=smooth, threads=threads, as_json=as_json, csv=csv, realtime=realtime)
    pcm = dict(rate=rate, channels=channels, pcm_format=pcm_format)
    raise typer.Exit(listen_command(model, device, input_ or source, **options, **pcm))


@app.command()
@user_errors
def bench(
    models: list[Path] = typer.Argument(
        ..., help="ONNX / .tflite files, checkpoints (.pt), quantized model folders; with --compare: JSON results"
    ),
    threads: int = typer.Option(1, "--threads", help="intra-op threads (onnxruntime, LiteRT and torch)"),
    warmup: int = typer.Option(50, "--warmup", help="unrecorded rounds before measuring"),
    runs: Optional[int] = typer.Option(None, "--runs", help="measured rounds (default 1000 or 10 s, whichever first)"),
    seconds: Optional[float] = typer.Option(None, "--seconds", help="measure for this long instead of a run count"),
    batch: int = typer.Option(1, "--batch", help="clips per inference call"),
    include_frontend: bool = typer.Option(
        False, "--include-frontend/--model-only", help="time wav samples -> label (front end shown) or the model alone"
    ),
    json_out: Optional[Path] = typer.Option(None, "--json", help="write the full result as JSON"),
    markdown: bool = typer.Option(False, "--markdown", help="print a markdown table"),
    compare: bool = typer.Option(False, "--compare", help="merge result files from bench --json into one table"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="with --compare: draw a latency chart (PNG)"),
) -> None:
    """Latency of ONNX (onnxruntime), .tflite (LiteRT) and PyTorch FP32/INT8 models side by side, round-robin."""
    from tfsep_edge.bench.machine import pin_blas_threads

    pin_blas_threads(max(threads, 1))
    from tfsep_edge.bench.harness import bench_command

    options = (threads, warmup, runs, seconds, batch, include_frontend)
    code = bench_command(models, *options, json_out, markdown, compare, plot)
    raise typer.Exit(code)


@app.command()
@user_errors
def train(
    data: Path = typer.Argument(..., help="data folder in the TAU22 layout (meta.csv, evaluation_setup/, audio/)"),
    out: Path = typer.Option(Path("runs/train"), "-o", "--out", help="run folder: best.pt, last.pt, metrics.csv"),
    model_family: Optional[str] = typer.Option(None, "--model", help=MODEL_HELP),
    width: Optional[int] = typer.Option(
        None, "--width", help="base channels C [the family's: tfsepnet 12, bcresnet 40, tfsepnet-v2 64]"
    ),
    norm: Optional[str] = typer.Option(None, "--norm", help=NORM_HELP),
    depth: Optional[int] = typer.Option(None, "--depth", help=DEPTH_HELP),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="[200]"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="global batch [32]"),
    lr: Optional[float] = typer.Option(None, "--lr", help="peak learning rate [0.01]"),
    warmup_epochs: Optional[float] = typer.Option(None, "--warmup-epochs", help="linear warm-up [10]"),
    device: Optional[str] = typer.Option(None, "--device", help="cpu | cuda [cpu]"),
    teacher: Optional[str] = typer.Option(None, "--teacher", help="teacher checkpoint, or .npy/.pt logits"),
    kd_lambda: Optional[float] = typer.Option(None, "--kd-lambda", help="[20]"),
    kd_temperature: Optional[float] = typer.Option(None, "--kd-temperature", help="[5]"),
    mixup_alpha: Optional[float] = typer.Option(None, "--mixup-alpha", help="0 = off [0.3]"),
    mixstyle_p: Optional[float] = typer.Option(None, "--mixstyle-p", help="0 = off [0.5]"),
    mixstyle_alpha: Optional[float] = typer.Option(None, "--mixstyle-alpha", help="[0.3]"),
    dropout: Optional[float] = typer.Option(None, "--dropout", help="[0.2]"),
    devsim: Optional[str] = typer.Option(None, "--devsim", help="device simulation: offline | online | none [offline]"),
    devsim_p: Optional[float] = typer.Option(None, "--devsim-p", help="online: probability per device-A clip [0.5]"),
    devsim_irs: Optional[int] = typer.Option(None, "--devsim-irs", help="offline: impulse responses [32]"),
    devsim_clips: Optional[int] = typer.Option(
        None,
        "--devsim-clips",
        help="offline: device-A clips per response, as a count [the report's proportion: 7.34% of the device-A "
        "clips per response (its 7,500 of TAU22's 102,150), at most 7,500; the run's log states the figures]",
    ),
    ir_dir: Optional[str] = typer.Option(
        None, "--dir-path", help="impulse-response folder [the 66 MicIRP responses shipped with tfsep-edge]"
    ),
    val_split: Optional[str] = typer.Option(None, "--val-split", help="split validated each epoch [evaluate]"),
    train_split: Optional[str] = typer.Option(
        None,
        "--train-split",
        help="train on a DCASE 2024/2025 subset list of fold1_train.csv (split5.csv ... split100.csv, tab-separated "
        "filename, scene_label; 2025 uses split25); device simulation draws from it only [the whole train split]",
    ),
    seed: Optional[int] = typer.Option(None, "--seed", help="[0]"),
    workers: Optional[int] = typer.Option(None, "--workers", help="data loader / caching processes [0]"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch threads per process [1]"),
    cache_dir: Optional[str] = typer.Option(None, "--cache-dir", help="waveform cache [DATA/.tfsep-cache]"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in -o from its last.pt"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as one JSON object"),
) -> None:
    """Train TF-SepNet with the report's recipe (runs under torchrun for DDP).

    Offline device simulation (the default) convolves device-A clips with 32 impulse responses, one
    new device per response, in the report's proportion: it simulated 7,500 clips per response
    from TAU22's 102,150 device-A clips (each new device the size of a real non-A device), so here
    each response takes 7.34% of the training set's device-A clips (at least 1, at most 7,500).
    --devsim-clips N takes N per response instead.
    """
    given = {k: v for k, v in locals().items() if k not in ("data", "out", "resume", "as_json", "model_family")}
    given["model"] = model_family
    require_torch()
    import json
    import os

    from tfsep_edge.train.loop import train as train_run

    summary = train_run(data, out, given, resume=resume)
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return
    if as_json:
        typer.echo(json.dumps(summary))
        return
    tag = " (SYNTHETIC data)" if summary["synthetic_data"] else ""
    typer.echo(
        f"trained {summary['model']} C={summary['width']} for {summary['trained_epochs']} epochs "
        f"in {summary['seconds']:.1f} s on "
        f"{summary['train_clips']} clips{tag}: validation accuracy {summary['last_val_acc']:.4f} last, "
        f"{summary['best_val_acc']:.4f} best -> {summary['run_dir']}/best.pt, last.pt, metrics.csv"
    )


@app.command()
@user_errors
def evaluate(
    model: Path = typer.Argument(..., help="checkpoint, `tfsep-edge quantize` output, .onnx or .tflite file"),
    data: Path = typer.Argument(..., help="data folder in the TAU22 layout"),
    split: str = typer.Option("evaluate", "--split", help="evaluate | train"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="write every number to this JSON file"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="write a PNG: confusion matrix and per-device bars"),
    batch: int = typer.Option(64, "--batch"),
    threads: int = typer.Option(1, "--threads", help="inference threads"),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="waveform cache [DATA/.tfsep-cache]"),
) -> None:
    """Accuracy, log loss, per device (Table 3 layout), per class and the confusion matrix."""
    from tfsep_edge.core.fileio import check_output_file
    from tfsep_edge.runtime import evaluate as ev

    check_at_least_one("--batch", batch)
    check_at_least_one("--threads", threads)
    for out in (json_out, plot):  # before the evaluation, not after it
        if out is not None:
            check_output_file(out)
    result = ev.evaluate(model, data, split, batch=batch, threads=threads, cache_dir=cache_dir)
    typer.echo(ev.format_report(result))
    if json_out:
        ev.write_json(result, json_out)
        typer.echo(f"wrote {json_out}")
    if plot:
        ev.plot(result, plot)
        typer.echo(f"wrote {plot}")


@app.command()
@user_errors
def export(
    model: Path = typer.Argument(..., help="checkpoint (FP32) or `tfsep-edge quantize` output folder (--int8)"),
    onnx_out: Optional[Path] = typer.Option(None, "--onnx", help="the ONNX file to write (OUT.onnx)"),
    tflite_out: Optional[Path] = typer.Option(None, "--tflite", help="the LiteRT file to write (OUT.tflite)"),
    int8: bool = typer.Option(False, "--int8", help="INT8 with PyTorch's calibrated scales (QDQ ONNX or int8 TFLite)"),
    frontend: bool = typer.Option(
        False, "--frontend/--no-frontend", help="ONNX: take raw 32 kHz waveform (batch, 32000) with the log-mel inside"
    ),
    opset: Optional[int] = typer.Option(None, "--opset", help="ONNX opset: 17..20 [17]"),
    micro: Optional[Path] = typer.Option(
        None,
        "--micro",
        help="with --int8 --io int8 --tflite: also write DIR/tfsep_model.h and .cc for a TFLite Micro application",
    ),
    io: str = typer.Option(
        "float",
        "--io",
        help="float | int8: int8 log-mel input and int8 logits, scales in the metadata (the --int8 ONNX or "
        ".tflite of a `quantize --integer` model)",
    ),
    as_json: bool = typer.Option(False, "--json", help="print the summary as one JSON object"),
) -> None:
    """Export a clean, validated ONNX or TFLite model (exit 1 and no file if validation fails)."""
    if micro is not None and (tflite_out is None or not int8 or io != "int8"):
        raise TfsepError(
            f"{micro}: --micro writes the C/C++ pair of an integer .tflite; add --int8 --io int8 --tflite OUT.tflite "
            "(from a `tfsep-edge quantize --integer` folder)"
        )
    if (onnx_out is None) == (tflite_out is None):
        given = "both --onnx and --tflite" if onnx_out is not None else "neither --onnx nor --tflite"
        raise TfsepError(f"{model}: {given} given; export writes one file: pass --onnx OUT.onnx or --tflite OUT.tflite")
    require_torch()
    import json

    from tfsep_edge.export.rule import ExportValidationError

    out = onnx_out if onnx_out is not None else tflite_out
    echo = (lambda _text: None) if as_json else typer.echo
    from tfsep_edge.export.driver import export_model
    from tfsep_edge.export.onnx_export import ONNX
    from tfsep_edge.export.tflite_export import TFLITE

    backend = TFLITE if tflite_out is not None else ONNX  # its check_request refuses options of the other format
    try:
        summary = export_model(backend, model, out, int8=int8, frontend=frontend, opset=opset, echo=echo, io=io)
    except ExportValidationError as exc:
        typer.echo(f"error: validation failed, nothing written to {out}: {exc}", err=True)
        raise typer.Exit(1) from None
    if micro is not None:
        from tfsep_edge.export.micro_source import write_micro_source

        written = write_micro_source(tflite_out, micro, arena_size=summary["validation"].get("tflm_arena_bytes"))
        summary["micro"] = written
        echo(
            f"wrote {written['source']} and {written['header']}: the model as a C array ({written['bytes']:,} bytes), "
            f"its io quantization and labels; tensor arena {written['arena_size']:,} bytes "
            f"(measured {written['arena_measured']:,} + margin)"
        )
    if as_json:
        typer.echo(json.dumps(summary, sort_keys=True))


@app.command()
@user_errors
def verify(
    model_file: Path = typer.Argument(..., help="an exported .onnx or .tflite (made earlier, or by another tool)"),
    source: Path = typer.Argument(
        ..., help="its checkpoint (FP32 file) or `tfsep-edge quantize` output folder (INT8 file)"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the summary as one JSON object"),
) -> None:
    """Check an existing ONNX or TFLite model by the export rule against its source (exit 1 if it fails).

    FP32 files are compared with the float model, INT8 files with the fake-quant twin, on the
    same audio and with the same summary as `export`; what the file is comes from its metadata,
    else from its graph.
    """
    require_torch()
    import json

    from tfsep_edge.export.rule import ExportValidationError
    from tfsep_edge.export.verify import verify as run_verify

    echo = (lambda _text: None) if as_json else typer.echo
    try:
        summary = run_verify(model_file, source, echo=echo)
    except ExportValidationError as exc:
        typer.echo(f"error: {model_file} fails the export rule against {source}: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(summary, sort_keys=True))


@app.command()
@user_errors
def quantize(
    checkpoint: Path = typer.Argument(..., help="FP32 checkpoint (tfsep-edge or reference state_dict)"),
    calib: Path = typer.Option(..., "--calib", help="calibration audio: folder of WAVs, list file, or TAU22 layout"),
    engine: Optional[str] = typer.Option(None, "--engine", help="x86 | qnnpack (default: qnnpack on ARM, else x86)"),
    observer: str = typer.Option("histogram", "--observer", help="histogram | minmax activation observer"),
    num_calib: int = typer.Option(DEFAULT_NUM_CALIB, "--num-calib", help="calibration files to use (all if fewer)"),
    eval_data: Optional[Path] = typer.Option(None, "--eval", help="TAU22 layout, or folder of audio (+ labels.csv)"),
    max_drop: Optional[float] = typer.Option(
        None, "--max-drop", help="leave layers in float until INT8 is within PP points"
    ),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="output folder (default: <checkpoint stem>-int8)"),
    seed: int = typer.Option(0, "--seed", help="seed of the calibration subset choice"),
    train_split: Optional[Path] = typer.Option(
        None,
        "--train-split",
        help="calibrate only from this DCASE training subset list (split25.csv ...) of --calib's TAU22 set "
        "[the subset the checkpoint was trained on, when --calib is its data set]",
    ),
    sensitivity: bool = typer.Option(True, "--sensitivity/--no-sensitivity", help="per-layer float-fallback scan"),
    reduce_range: bool = typer.Option(
        False,
        "--reduce-range",
        help="7-bit activations, for x86 int8 kernels without VNNI (OpenVINO, PyTorch fbgemm on AVX2) whose "
        "16-bit sums of two u8 x s8 products saturate: within the calibrated range they cannot, at some logit "
        "SQNR (docs/export.md)",
    ),
    finetune: Optional[Path] = typer.Option(
        None,
        "--finetune",
        help="INT8 fine-tuning after PTQ on this TAU22 folder's train split: from the calibrated quantization "
        "points, through fake quantization (STE), BatchNorm frozen, the FP32 model as KD teacher",
    ),
    finetune_epochs: int = typer.Option(3, "--finetune-epochs", help="epochs of INT8 fine-tuning"),
    integer: bool = typer.Option(
        False,
        "--integer",
        help="integer from input to logits: int8 input and stem, AdaResNorm in integer ops (statistics in "
        "int16 where --int16-norms says), int8 means and global mean (TFLite Micro; docs/quantization.md)",
    ),
    int16_norms: Optional[str] = typer.Option(
        None,
        "--int16-norms",
        help=f"with --integer: the norms whose statistics are int16, {' | '.join(INT16_NORMS)} (default first); "
        "more: higher fidelity, a larger TFLite Micro arena (docs/quantization.md)",
    ),
    as_json: bool = typer.Option(False, "--json", help="print the report as one JSON object"),
) -> None:
    """Static INT8 quantization (fused Conv-BN-ReLU, calibrated) with a fidelity report; optionally
    INT8 fine-tuning (--finetune), reported before/after."""
    require_torch()
    from tfsep_edge.quant.pipeline import quantize_command

    code = quantize_command(
        checkpoint=checkpoint,
        calib=calib,
        engine=engine,
        observer=observer,
        num_calib=num_calib,
        eval=eval_data,
        max_drop=max_drop,
        out=out,
        seed=seed,
        train_split=train_split,
        finetune=finetune,
        finetune_epochs=finetune_epochs,
        sensitivity=sensitivity,
        reduce_range=reduce_range,
        integer=integer,
        int16_norms=int16_norms,
        as_json=as_json,
    )
    raise typer.Exit(code)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
