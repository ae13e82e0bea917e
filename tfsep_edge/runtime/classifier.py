"""The light edge runtime: an onnxruntime session plus the numpy front end. No torch.

`open_classifier` picks the runtime from the file: onnxruntime for ONNX, LiteRT for .tflite
(runtime/tflite_classifier.py, the same interface).

`OnnxClassifier` reads what the model takes from its metadata (config.META_*), checks the
input shape, and classifies log-mels, waveforms or files. `predict_stream` classifies many files
in fixed-size batches and yields one result per file, so memory does not grow with the count.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfsep_edge.core import config
from tfsep_edge.core.config import DEFAULT_FRONTEND, LABELS, NUM_CLASSES, FrontendConfig
from tfsep_edge.core.errors import TfsepError, check_at_least_one, first_line
from tfsep_edge.core.kinds import Kind, artifact_kind, require_kind
from tfsep_edge.runtime.model_info import (
    Classifier,
    ModelInfo,
    labels_budget_width,
    session_logits,
)
from tfsep_edge.signal.audio import load_audio, split_windows

INPUT_KINDS = ("logmel", "waveform")
EXPORT_HINT = "export it with `tfsep-edge export`"


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def session_options(threads: int = 1):
    """Sequential execution with `threads` intra-op threads and one inter-op thread."""
    import onnxruntime as ort

    check_at_least_one("--threads", threads)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # 4 = fatal only: warnings (unused initializers) are noise, and errors come back as exceptions
    # that tfsep-edge turns into its one-line messages (ORT would print them a second time).
    opts.log_severity_level = 4
    if platform.machine().lower() in ("x86_64", "amd64", "i686", "x86"):
        # x86 runs the INT8 graph's convs in float on dequantized values (onnx_int8.hold_int8), so
        # onnxruntime's QDQ fusions find nothing to fuse; turned off, it folds the constant weight
        # and bias DequantizeLinears and keeps one DQ per tensor. Same outputs bit for bit, and
        # INT8 runs faster (benchmarks/results/export_speed.md).
        opts.add_session_config_entry("session.disable_quant_qdq", "1")
    return opts


def open_session(path: Path, threads: int = 1):
    """onnxruntime.InferenceSession on the CPU; TfsepError naming the file if it is not ONNX."""
    import onnxruntime as ort

    if path.is_dir():
        raise TfsepError(f"{path}: is a folder; give the .onnx model file ({EXPORT_HINT})")
    if not path.is_file():
        raise TfsepError(f"{path}: no such model file")
    try:
        return ort.InferenceSession(
            str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"]
        )
    except TfsepError:
        raise
    except Exception as exc:  # ORT raises several types (InvalidProtobuf, Fail, InvalidGraph)
        reason = first_line(exc, 160)
        raise TfsepError(f"{path}: not a loadable ONNX model ({reason}); {EXPORT_HINT}") from None


def _static(dim) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


def read_model_info(session, path: Path) -> ModelInfo:
    meta = dict(session.get_modelmeta().custom_metadata_map or {})
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) < 1:
        raise TfsepError(f"{path}: has {len(inputs)} inputs; a TF-SepNet classifier has one; {EXPORT_HINT}")
    inp = inputs[0]
    shape = list(inp.shape)
    kind = meta.get(config.META_INPUT) or {4: "logmel", 2: "waveform"}.get(len(shape), "")
    if kind not in INPUT_KINDS:
        raise TfsepError(
            f"{path}: input '{inp.name}' has shape {shape}; expected (batch, 1, n_mels, frames) log-mel "
            f"or (batch, samples) waveform; {EXPORT_HINT}"
        )
    try:
        frontend = FrontendConfig.from_dict(json.loads(meta[config.META_FRONTEND]))
    except (KeyError, ValueError, TypeError):
        frontend = DEFAULT_FRONTEND
    expected = [None, 1, frontend.n_mels, frontend.n_frames] if kind == "logmel" else [None, frontend.clip_samples]
    dims_ok = len(shape) == len(expected) and all(
        e is None or _static(d) is None or d == e for d, e in zip(shape, expected, strict=False)
    )
    int8_in = inp.type == "tensor(int8)" and config.META_IO in meta  # an --io int8 file
    if not dims_ok or not (inp.type == "tensor(float)" or int8_in):
        want = "(batch, " + ", ".join(str(e) for e in expected[1:]) + ")"
        raise TfsepError(
            f"{path}: input '{inp.name}' is {inp.type} {shape}, but a {kind} model must take float {want}; "
            f"{EXPORT_HINT} with the default front end"
        )
    out_shape = list(outputs[0].shape)
    if len(out_shape) != 2 or _static(out_shape[1]) not in (None, NUM_CLASSES):
        raise TfsepError(f"{path}: output is {out_shape}, expected (batch, {NUM_CLASSES}) logits; {EXPORT_HINT}")
    labels, budget, width = labels_budget_width(path, meta)
    return ModelInfo(
        input_kind=kind,
        labels=labels,
        frontend=frontend,
        precision=meta.get(config.META_PRECISION, "unknown"),
        width=int(width) if width and str(width).isdigit() else None,
        budget=budget if isinstance(budget, dict) else {},
        fixed_batch=_static(shape[0]),
    )


class OnnxClassifier(Classifier):
    """A TF-SepNet ONNX model on onnxruntime's CPU provider (1 thread by default: the edge case)."""

    def __init__(self, path: str | Path, threads: int = 1, check: bool = True):
        self.path = Path(path)
        self.threads = threads
        self.session = open_session(self.path, threads)
        self.info = read_model_info(self.session, self.path)
        self._run = session_logits(self.session, self.path)  # through an int8 input and output (--io int8)
        if check:
            self.check_runs()

    def check_runs(self) -> None:
        """A silent batch of 2 through the graph: a model whose symbolic input dimensions hide
        another shape (or a batch it cannot take) fails here, with one line naming it, not in
        the middle of a folder."""
        batch = self.info.fixed_batch or 2
        cfg = self.frontend
        shape = (batch, 1, cfg.n_mels, cfg.n_frames) if self.input_kind == "logmel" else (batch, cfg.clip_samples)
        try:
            out = self._run(np.zeros(shape, np.float32))
        except Exception as exc:  # onnxruntime's Fail / InvalidArgument / RuntimeException
            reason = first_line(exc, 200)
            raise TfsepError(
                f"{self.path}: onnxruntime cannot run it on a {shape} input ({reason}); {EXPORT_HINT}"
            ) from None
        if out.shape != (batch, NUM_CLASSES):
            raise TfsepError(
                f"{self.path}: returns {list(out.shape)} for a batch of {batch}, not ({batch}, {NUM_CLASSES}) logits; "
                f"{EXPORT_HINT}"
            )

    def _infer(self, x: np.ndarray) -> np.ndarray:
        try:
            return self._run(x)
        except Exception as exc:  # a graph that loaded and passed check_runs but fails on this input
            reason = first_line(exc, 200)
            raise TfsepError(
                f"{self.path}: onnxruntime failed on a {x.shape} input ({reason}); {EXPORT_HINT}"
            ) from None


def open_classifier(path: str | Path, threads: int = 1, check: bool = True):
    """The classifier for what the file is: TfliteClassifier (LiteRT) for a .tflite, else OnnxClassifier."""
    from tfsep_edge.runtime.tflite_classifier import TfliteClassifier

    path = Path(path)
    if path.exists() and artifact_kind(path) is Kind.TFLITE:  # a missing file: OnnxClassifier says so
        return TfliteClassifier(path, threads=threads, check=check)
    return OnnxClassifier(path, threads=threads, check=check)


@dataclass
class FileResult:
    path: Path
    logits: np.ndarray | None  # (10,) mean window logits; None when the file failed
    error: str | None = None

    @property
    def probabilities(self) -> np.ndarray:
        return softmax(self.logits)


def predict_stream(clf: OnnxClassifier, files: Iterable[Path], batch: int = 16) -> Iterator[FileResult]:
    """Classify files in batches of up to `batch` windows, yielding results in input order.

    Only the files of the current batch (and one long file's windows) are held in memory.
    A file that cannot be read is yielded with its error and skipped. Batches also start at
    every `batch`-th file, so a file's batch depends only on the files since the last such
    start: predict_parallel cuts its chunks there, and every window meets the same batch as in
    one process (a runtime's float sums may depend on the batch a window runs in).
    """
    check_at_least_one("--batch", batch)
    pending: list[tuple[Path, np.ndarray]] = []
    pending_windows = 0

    def flush() -> Iterator[FileResult]:
        windows = np.concatenate([w for _, w in pending])
        logits = np.concatenate(
            [clf.logits_from_waveforms(windows[i : i + batch]) for i in range(0, len(windows), batch)]
        )
        start = 0
        for path, w in pending:
            yield FileResult(path, logits[start : start + len(w)].mean(axis=0))
            start += len(w)

    for i, path in enumerate(files):
        if i % batch == 0 and pending:
            yield from flush()
            pending, pending_windows = [], 0
        try:
            windows = split_windows(load_audio(path, clf.frontend), clf.frontend)
        except TfsepError as exc:
            yield from flush() if pending else ()
            pending, pending_windows = [], 0
            yield FileResult(path, None, str(exc))
            continue
        pending.append((path, windows))
        pending_windows += len(windows)
        if pending_windows >= batch:
            yield from flush()
            pending, pending_windows = [], 0
    if pending:
        yield from flush()


def audio_entries(paths: list[Path]) -> list[tuple[Path, str]]:
    """(file, name for output) for every file or folder argument; a folder's files are named
    relative to the folder's parent (`audio/x.wav`, as in the DCASE output format)."""
    from tfsep_edge.signal.audio import AUDIO_SUFFIXES, find_audio

    entries: list[tuple[Path, str]] = []
    for arg in paths:
        found = find_audio([arg])
        if arg.is_dir():
            if not found:
                kinds = ", ".join(AUDIO_SUFFIXES)
                raise TfsepError(f"{arg}: folder has no audio files ({kinds}); point at the folder that holds them")
            entries.extend((f, f.relative_to(arg.parent).as_posix()) for f in found)
        else:
            entries.extend((f, str(f)) for f in found)
    return entries


def csv_header() -> str:
    return "\t".join(["filename", "scene_label", *LABELS]) + "\n"


def csv_row(name: str, probs: np.ndarray) -> str:
    return "\t".join([name, LABELS[int(np.argmax(probs))], *(f"{p:.6f}" for p in probs)]) + "\n"


def top_line(name: str, probs: np.ndarray, top: int) -> str:
    order = np.argsort(-probs, kind="stable")[:top]
    return "\t".join([name, *(f"{LABELS[i]} {probs[i]:.3f}" for i in order)])


# --- predict --jobs N: files classified in N processes --------------------------------------
#
# Each worker process (spawned, so nothing of the parent's state is shared) loads the model once
# and runs predict_stream over consecutive chunks of the file list; the parent yields the chunks'
# results in input order. Chunks start where predict_stream starts a batch anyway, so every
# window runs in the same batch as with one job: labels and CSV rows equal one job's.
_WORKER: dict = {}


def _init_worker(model: str, threads: int, batch: int) -> None:
    _WORKER["clf"] = open_classifier(model, threads=threads, check=False)  # the parent checked it
    _WORKER["batch"] = batch


def _predict_chunk(files: list[str]) -> list[tuple[str, np.ndarray | None, str | None]]:
    return [
        (str(r.path), r.logits, r.error)
        for r in predict_stream(_WORKER["clf"], [Path(f) for f in files], _WORKER["batch"])
    ]


def chunk_size(n_files: int, jobs: int, batch: int) -> int:
    """Files per task: a multiple of `batch` (where predict_stream starts a batch anyway), ~8
    tasks per process where the list allows (balance, and progress that moves), about 32 files."""
    per_task = max(1, min(32, n_files // (8 * jobs)))
    return batch * max(1, round(per_task / batch))


def predict_parallel(
    model: Path, files: list[Path], jobs: int, threads: int = 1, batch: int = 16
) -> Iterator[FileResult]:
    """predict_stream's results in `jobs` spawned processes, in input order."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    size = chunk_size(len(files), jobs, batch)
    chunks = [[str(f) for f in files[i : i + size]] for i in range(0, len(files), size)]
    pool = ProcessPoolExecutor(
        max_workers=min(jobs, len(chunks)),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(str(model), threads, batch),
    )
    try:
        for results in pool.map(_predict_chunk, chunks):
            for path, logits, error in results:
                yield FileResult(Path(path), logits, error)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def predict_command(
    model: Path,
    audio: list[Path],
    csv: Path | None,
    top: int,
    threads: int,
    batch: int,
    progress: bool = True,
    jobs: int = 1,
) -> int:
    """`tfsep-edge predict`: prints the top scenes per file, optionally writes the DCASE CSV.
    Returns 0, or 1 if any file could not be classified (those are reported and skipped).
    `jobs` > 1 classifies the files in that many processes (same output, same order)."""
    import sys

    from tfsep_edge.core.fileio import atomic_path, check_output_file
    from tfsep_edge.core.progress import progress_bar

    check_at_least_one("--threads", threads)
    check_at_least_one("--jobs", jobs)
    if not 1 <= top <= NUM_CLASSES:
        raise TfsepError(f"--top {top}: must be between 1 and {NUM_CLASSES}")
    check_at_least_one("--batch", batch)
    if csv is not None:
        check_output_file(csv)
    entries = audio_entries(audio)
    if not entries:
        raise TfsepError("no audio files given; pass WAV files or folders")
    require_kind(model, (Kind.ONNX, Kind.TFLITE), "predict", EXPORT_HINT)
    clf = open_classifier(model, threads=threads)
    single = len(entries) == 1
    errors: list[str] = []

    def classify(out) -> None:
        names = (name for _, name in entries)
        bar = progress_bar(len(entries), unit="file", enabled=progress and not single)
        with bar:
            files = [f for f, _ in entries]
            if jobs > 1 and len(files) > 1:
                results = predict_parallel(model, files, jobs, threads, batch)
            else:
                results = predict_stream(clf, files, batch)
            for result, name in zip(results, names, strict=True):
                bar.update(1)
                if result.error is not None:
                    errors.append(result.error)
                    if not single:  # a lone file's error becomes the one-line exit-2 error below
                        bar.write(f"error: {result.error}; skipped", file=sys.stderr)
                    continue
                probs = result.probabilities
                bar.write(top_line(name, probs, top), file=sys.stdout)
                if out is not None:
                    out.write(csv_row(name, probs))
        if len(errors) == len(entries):  # nothing classified: a user error, and no CSV is left behind
            raise TfsepError(errors[0] if single else f"none of the {len(entries)} audio files could be read")

    if csv is None:
        classify(None)
    else:
        with atomic_path(csv) as tmp:
            with open(tmp, "w", encoding="utf-8", newline="") as out:
                out.write(csv_header())
                classify(out)
    failed = len(errors)
    summary = f"classified {len(entries) - failed} of {len(entries)} files" + (f", {failed} failed" if failed else "")
    print(summary + (f"; wrote {csv}" if csv is not None else ""), file=sys.stderr)
    return 1 if failed else 0
