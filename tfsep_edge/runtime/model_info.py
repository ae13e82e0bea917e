"""What an exported model takes and is, as its metadata (or, failing that, its graph) says: one
record for every runtime's classifier (runtime/classifier.py, runtime/tflite_classifier.py)."""

from __future__ import annotations

from dataclasses import dataclass

from tfsep_edge.core.config import FrontendConfig


@dataclass
class ModelInfo:
    """What the metadata (or, failing that, the graph) says about a model."""

    input_kind: str
    labels: tuple[str, ...]
    frontend: FrontendConfig
    precision: str
    width: int | None
    budget: dict
    fixed_batch: int | None  # a static batch size baked into the graph (None: dynamic)
