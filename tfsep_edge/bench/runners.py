"""The models under test: one Runner per file (onnxruntime, LiteRT, or PyTorch through
runtime.torch_models), with its load time, input kind and MAC count."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tfsep_edge.bench.machine import rss_mb
from tfsep_edge.core.config import FrontendConfig
from tfsep_edge.core.kinds import Kind, artifact_kind
from tfsep_edge.runtime.torch_models import load_torch_model, official_macs, torch_log_mel, width_macs


@dataclass
class Runner:
    """One model under test: how to prepare its input and how to call it."""

    name: str
    path: str
    runtime: str  # "onnxruntime" | "litert" | "torch-fp32" | "torch-int8"
    precision: str
    width: int | None
    input_kind: str  # what the timed model call takes: "logmel" or "waveform"
    load_ms: float
    frontend: Callable  # (B, samples) float32 windows -> the model's input
    model: Callable  # model input -> (B, 10) logits as numpy
    macs: int | None = None
    macs_source: str | None = None
    extra: dict = field(default_factory=dict)
    rss_load_mb: float | None = None
    cfg: FrontendConfig | None = None  # the front end it takes (from its file, checkpoint or artifact)


def count_macs_torch(model, cfg: FrontendConfig) -> tuple[int | None, str | None]:
    """MACs of one clip by the budget's official (NeSsi/torchinfo) count; None if unavailable."""
    try:
        return official_macs(model, cfg), "counted (budget.official_count)"
    except Exception:  # a missing torchinfo must not stop a latency run
        return None, None


def count_macs_width(width: int | None, cfg: FrontendConfig) -> tuple[int | None, str | None]:
    """For an ONNX file without a budget in its metadata: count the float model of its width, but
    only when torch is already loaded (a light-runtime run must not import it for this)."""
    if width is None or "torch" not in sys.modules:
        return None, None
    try:
        return width_macs(width, cfg), "counted (budget.official_count)"
    except Exception:
        return None, None


def load_onnx(path: Path, threads: int) -> Runner:
    """An ONNX file on onnxruntime, or a .tflite on LiteRT (XNNPACK): runtime.classifier.open_classifier decides."""
    from tfsep_edge.runtime.classifier import open_classifier

    before = rss_mb()
    t0 = time.perf_counter_ns()
    clf = open_classifier(path, threads=threads, check=False)  # its first inference is measured below
    load_ms = (time.perf_counter_ns() - t0) / 1e6
    litert = type(clf).__name__ == "TfliteClassifier"
    macs = clf.info.budget.get("macs")
    known = isinstance(macs, (int, float)) and macs > 0
    meta = "TFLite" if litert else "ONNX"
    macs, source = (
        (int(macs), f"{meta} metadata (tfsep_edge.budget)") if known else count_macs_width(clf.width, clf.frontend)
    )
    threads_key = "litert_threads" if litert else "onnxruntime_threads"
    return Runner(
        name=path.name,
        path=str(path),
        runtime="litert" if litert else "onnxruntime",
        precision=clf.precision,
        width=clf.width,
        input_kind=clf.input_kind,
        load_ms=load_ms,
        frontend=clf.model_input,
        model=clf.run,
        macs=macs,
        macs_source=source,
        extra={threads_key: threads, "frontend_in_model": clf.input_kind == "waveform"},
        rss_load_mb=_delta(before),
        cfg=clf.frontend,
    )


def load_torch(path: Path, kind: Kind, threads: int) -> Runner:
    """A PyTorch eager runner (runtime.torch_models loads it): MACs and width from its float model."""
    before = rss_mb()
    tm = load_torch_model(path, kind, threads)
    macs, source = count_macs_torch(tm.float_model, tm.frontend)

    def call(x):
        import torch

        with torch.inference_mode():
            return tm.module(x).numpy()

    return Runner(
        name=path.name,
        path=str(path),
        runtime=f"torch-{tm.precision}",
        precision=tm.precision,
        width=tm.float_model.width,
        input_kind="logmel",
        load_ms=tm.load_ms,
        frontend=torch_log_mel(tm.frontend),
        model=call,
        macs=macs,
        macs_source=source,
        extra=tm.extra,
        rss_load_mb=_delta(before),
        cfg=tm.frontend,
    )


def _delta(before: float | None) -> float | None:
    after = rss_mb()
    return None if before is None or after is None else round(after - before, 1)


def load_runner(path: Path, threads: int) -> Runner:
    """Pick the runtime from what the path holds (core.kinds)."""
    kind = artifact_kind(path)
    if kind.needs_torch:
        return load_torch(path, kind, threads)
    return load_onnx(path, threads)  # Kind.ONNX or Kind.TFLITE
