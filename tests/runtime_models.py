"""Small ONNX models for the runtime, predict and bench tests (built once per test session).

- `logmel_model`: an untrained TF-SepNet(12) with randomised BN and AdaResNorm statistics through the project's
  own export (`export_real`). `export_logmel` makes the same model with torch's legacy exporter and
  hand-set metadata, for the cases the real export never produces (no metadata, another shape).
- `waveform_model`: a hand-made graph taking (batch, 32000) waveforms: logits = the means of ten
  3200-sample segments, so a test can recompute them in numpy and see what the runtime fed.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from tfsep_edge.core import config

_CACHE: dict[str, Path] = {}


def set_metadata(model_proto, values: dict[str, str]) -> None:
    import onnx

    onnx.helper.set_model_props(model_proto, values)


def standard_meta(kind: str, width: int | None, precision: str = "fp32") -> dict[str, str]:
    meta = {
        config.META_INPUT: kind,
        config.META_LABELS: json.dumps(list(config.LABELS)),
        config.META_FRONTEND: json.dumps(config.DEFAULT_FRONTEND.to_dict()),
        config.META_PRECISION: precision,
        config.META_VERSION: "test",
    }
    if width is not None:
        meta[config.META_WIDTH] = str(width)
    return meta


def export_logmel(path: Path, width: int = 12, meta: dict[str, str] | None = None, seed: int = 0) -> Path:
    import onnx
    import torch

    cfg = config.DEFAULT_FRONTEND
    from tfsep_edge.model.tfsepnet import random_model

    model = random_model(width, seed)
    x = torch.zeros(1, 1, cfg.n_mels, cfg.n_frames)
    with warnings.catch_warnings():  # the legacy exporter's deprecation notices
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (x,),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["logmel"],
            output_names=["logits"],
            dynamic_axes={"logmel": {0: "batch"}, "logits": {0: "batch"}},
        )
    proto = onnx.load(str(path))
    set_metadata(proto, standard_meta("logmel", width) if meta is None else meta)
    onnx.save(proto, str(path))
    return path


def export_waveform(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    n = config.DEFAULT_FRONTEND.clip_samples
    shape = helper.make_tensor("shape", TensorProto.INT64, [3], [0, config.NUM_CLASSES, n // config.NUM_CLASSES])
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["waveform", "shape"], ["segments"]),
            helper.make_node("ReduceMean", ["segments"], ["logits"], axes=[2], keepdims=0),
        ],
        "segment_means",
        [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", n])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", config.NUM_CLASSES])],
        [shape],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    set_metadata(proto, standard_meta("waveform", None))
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def segment_means(windows: np.ndarray) -> np.ndarray:
    """What `export_waveform`'s graph computes, in numpy."""
    return windows.reshape(len(windows), config.NUM_CLASSES, -1).mean(axis=2)


def cached(name: str, tmp_path_factory, build) -> Path:
    """Build a model once per session (exports take about a second each)."""
    if name not in _CACHE or not _CACHE[name].exists():
        _CACHE[name] = build(tmp_path_factory.mktemp("models") / f"{name}.onnx")
    return _CACHE[name]


def export_real(path: Path, width: int = 12, seed: int = 0, frontend: bool = False) -> Path:
    """The project's own `tfsep-edge export` of an untrained checkpoint (validated, with metadata)."""
    from tfsep_edge.export.onnx_export import export
    from tfsep_edge.model.checkpoint import save_checkpoint
    from tfsep_edge.model.tfsepnet import random_model

    ckpt = path.with_suffix(".pt")
    save_checkpoint(random_model(width, seed), ckpt)
    export(ckpt, path, frontend=frontend, timing=False, echo=lambda _text: None)
    return path


def logmel_model(tmp_path_factory, width: int = 12) -> Path:
    return cached(f"logmel_c{width}", tmp_path_factory, lambda p: export_real(p, width))


def waveform_model(tmp_path_factory) -> Path:
    return cached("waveform", tmp_path_factory, export_waveform)


def write_wav(path: Path, seconds: float, rate: int = 32_000, channels: int = 1, seed: int = 0) -> Path:
    import soundfile as sf

    rng = np.random.default_rng(seed)
    data = (0.1 * rng.standard_normal((int(seconds * rate), channels))).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, rate)
    return path
