"""`tfsep-edge quantize`: calibrate, convert, measure, fall back, write OUT, print the report.

The report (printed and quant_report.json):
- FP32 vs INT8 on the evaluation set (or, without --eval, on the calibration windows, which
  flatters INT8 and is labelled so): accuracy overall and per device when labelled, top-1
  agreement, logit SQNR, INT8 vs its fake-quant twin (what the ONNX export reproduces);
- per conv layer: SQNR of its INT8 output against float (cumulative, as deployed) and the
  change in agreement (and accuracy, when labelled) when that one layer is left in float,
  sorted worst first;
- with --max-drop PP: the layers left in float, one at a time in sensitivity order, until INT8
  is within PP points of FP32, and what that costs in bytes (or that it cannot).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tfsep_edge.core.config import INT16_NORMS, LABELS
from tfsep_edge.core.errors import TfsepError
from tfsep_edge.core.fileio import check_output_folder, check_writable_dir
from tfsep_edge.core.kinds import CALIB_LIST_FILE
from tfsep_edge.datasets.calibration import (
    DEFAULT_NUM_CALIB,
    DEFAULT_SEED,
    MIN_CALIB_FILES,
    AudioSet,
    list_text,
    load_calibration,
    load_windows,
    select_calibration,
    select_eval,
)
from tfsep_edge.model.checkpoint import load_checkpoint
from tfsep_edge.quant.analysis import layer_sqnr, run_exact_int8, run_float, run_int8, sqnr_db
from tfsep_edge.quant.artifact import QuantizedArtifact, is_quantized_dir, save_quantized
from tfsep_edge.quant.calibrate import Calibration, QuantOptions
from tfsep_edge.quant.engine import ENGINES, OBSERVERS, default_engine
from tfsep_edge.quant.finetune import FinetuneOptions, check_finetune_data, finetune
from tfsep_edge.quant.quantize import quantize_model
from tfsep_edge.quant.ready import (
    INTEGER_FAMILIES,
    QUANTIZABLE_FAMILIES,
    QBlock,
    QTFSepNet,
    conv_layers,
    stem_layers,
)

SENSITIVITY_WINDOWS = 512  # per-layer fallback runs use at most this many evaluation windows
SQNR_WINDOWS = 64  # per-layer SQNR from this many windows


@dataclass
class EvalData:
    """Windows and, per window, the file it came from; per file the label index (or -1) and device."""

    windows: torch.Tensor
    owners: np.ndarray
    labels: np.ndarray
    devices: list[str]
    description: str

    @property
    def labelled(self) -> bool:
        return len(self.labels) > 0 and bool((self.labels >= 0).all())

    def clip_logits(self, window_logits: torch.Tensor) -> np.ndarray:
        """Mean logits over each file's windows (TAU clips have one window)."""
        logits = window_logits.double().numpy()
        out = np.zeros((len(self.labels), logits.shape[1]))
        np.add.at(out, self.owners, logits)
        counts = np.bincount(self.owners, minlength=len(self.labels))[:, None]
        return out / np.maximum(counts, 1)

    def subset(self, max_windows: int) -> EvalData:
        """The first files whose windows fit in max_windows (whole files only)."""
        if len(self.windows) <= max_windows:
            return self
        n_files = int(self.owners[max_windows - 1]) or 1
        keep = self.owners < n_files
        return EvalData(
            self.windows[torch.from_numpy(keep)],
            self.owners[keep],
            self.labels[:n_files],
            self.devices[:n_files],
            f"{self.description} (first {n_files} files)",
        )


def eval_data(audio: AudioSet, cfg, warn, what: str, description: str) -> EvalData:
    windows, owners, kept = load_windows(audio, cfg, 1, warn, what=what)
    labels = np.array([LABELS.index(lab) if lab is not None else -1 for lab in kept.labels], dtype=np.int64)
    return EvalData(torch.from_numpy(windows), owners, labels, list(kept.devices), description)


# --- comparisons -----------------------------------------------------------------------------------


def compare(fp32: np.ndarray, int8: np.ndarray, data: EvalData) -> dict:
    """FP32 vs INT8 clip logits: agreement, SQNR, and (labelled) accuracies overall/per device."""
    out = {
        "clips": len(fp32),
        "agreement": float(np.mean(fp32.argmax(1) == int8.argmax(1))),
        "logit_sqnr_db": finite(sqnr_db(torch.from_numpy(fp32), torch.from_numpy(int8))),
        "max_abs_logit_diff": float(np.abs(fp32 - int8).max()) if len(fp32) else 0.0,
    }
    if data.labelled:
        from tfsep_edge.datasets.metrics import per_device_accuracy

        for name, logits in (("fp32", fp32), ("int8", int8)):
            preds = logits.argmax(1)
            dev = per_device_accuracy(preds, data.labels, data.devices)
            out[f"{name}_accuracy"] = float(np.mean(preds == data.labels))
            out[f"{name}_per_device"] = dev["devices"]
        out["device_counts"] = dev["counts"]
        out["accuracy_drop_pp"] = 100.0 * (out["fp32_accuracy"] - out["int8_accuracy"])
    return out


def finite(value: float) -> float | None:
    """JSON has no infinity: identical outputs (infinite SQNR) are written as null."""
    return None if math.isinf(value) else round(float(value), 2)


@dataclass
class Evaluator:
    """Runs INT8 variants, in exact int8 arithmetic, on one evaluation set against the fixed FP32
    logits: the figures and the choices made from them are the same on every CPU."""

    data: EvalData
    fp32: np.ndarray

    def measure(self, artifact: QuantizedArtifact) -> dict:
        return compare(self.fp32, self.data.clip_logits(run_exact_int8(artifact, self.data.windows)), self.data)

    def measure_twin(self, twin: torch.nn.Module) -> dict:
        """A modified fake-quant twin (integer_parts.float_variants) on the same data."""
        return compare(self.fp32, self.data.clip_logits(run_float(twin, self.data.windows)), self.data)


def fake_quant_agreement(artifact: QuantizedArtifact, data: EvalData) -> dict:
    """PyTorch's INT8 kernels on this CPU vs exact int8 arithmetic (the twin the exports reproduce)."""
    int8 = run_int8(artifact, data.windows)
    fq = run_exact_int8(artifact, data.windows)
    return {
        "windows": len(int8),
        "agreement": float((int8.argmax(1) == fq.argmax(1)).float().mean()) if len(int8) else 1.0,
        "max_abs_logit_diff": float((int8 - fq).abs().max()) if len(int8) else 0.0,
        "logit_sqnr_db": finite(sqnr_db(int8, fq)),
    }


def sensitivity(
    model,
    calibration: Calibration,
    options: QuantOptions,
    artifact: QuantizedArtifact,
    evaluator: Evaluator,
    progress: Callable[[str], None] | None = None,
) -> list[dict]:
    """Per conv layer: its INT8 output SQNR, and what leaving it alone in float changes."""
    sqnr = layer_sqnr(artifact, evaluator.data.windows[:SQNR_WINDOWS])
    base = evaluator.measure(artifact)
    rows = []
    layers = [n for n in conv_layers(artifact.fused_float_model()) if n not in options.float_layers]
    for i, name in enumerate(layers):
        if progress:
            progress(f"sensitivity {i + 1}/{len(layers)}: {name}")
        variant, _ = quantize_model(
            model, None, options.with_float_layers((*options.float_layers, name)), calibrated=calibration
        )
        row = gain_row(name, evaluator.measure(variant), base)
        row["output_sqnr_db"] = finite(sqnr[name])
        row["float_extra_bytes"] = variant.info["storage_bytes"]["total"] - artifact.info["storage_bytes"]["total"]
        rows.append(row)
    return worst_first(rows)


def gain_row(part: str, m: dict, base: dict) -> dict:
    """What computing `part` in float changed (m) against the INT8 model (base)."""
    row = {
        "layer": part,
        "float_agreement_gain": m["agreement"] - base["agreement"],
        "float_logit_sqnr_gain_db": (m["logit_sqnr_db"] or 99.0) - (base["logit_sqnr_db"] or 99.0),
    }
    if "int8_accuracy" in m:
        row["float_accuracy_gain_pp"] = 100.0 * (m["int8_accuracy"] - base["int8_accuracy"])
    return row


def worst_first(rows: list[dict]) -> list[dict]:
    """The part whose float version raises the logit SQNR most first. On a few hundred clips one
    part moves accuracy by a clip or two either way (noise); the SQNR gain is stable."""
    return sorted(rows, key=lambda r: (-r["float_logit_sqnr_gain_db"], -r["float_agreement_gain"], r["layer"]))


def integer_sensitivity(artifact: QuantizedArtifact, evaluator: Evaluator) -> list[dict]:
    """Per integer part of an integer model (integer_parts): what computing it alone in float
    changes, worst first, in the rows `sensitivity` gives (no per-layer output SQNR)."""
    from tfsep_edge.quant.integer_parts import float_variants

    base = evaluator.measure(artifact)
    variants = float_variants(artifact.fake_quant_model())
    return worst_first([gain_row(part, evaluator.measure_twin(v), base) for part, v in variants])


def fallback(
    model,
    calibration: Calibration,
    options: QuantOptions,
    evaluator: Evaluator,
    ranking: list[str],
    max_drop_pp: float,
    progress: Callable[[str], None] | None = None,
) -> tuple[QuantizedArtifact, dict]:
    """Leave layers in float one at a time (in `ranking` order) until the drop is <= max_drop_pp."""
    artifact, _ = quantize_model(model, None, options, calibrated=calibration)
    start_bytes = artifact.info["storage_bytes"]["total"]
    m = evaluator.measure(artifact)
    steps = [{"float_layers": list(options.float_layers), "drop_pp": m["accuracy_drop_pp"]}]
    added: list[str] = []
    for name in ranking:
        if m["accuracy_drop_pp"] <= max_drop_pp:
            break
        added.append(name)
        if progress:
            progress(f"--max-drop: leaving {name} in float")
        options = options.with_float_layers((*options.float_layers, name))
        artifact, _ = quantize_model(model, None, options, calibrated=calibration)
        m = evaluator.measure(artifact)
        steps.append({"added": name, "drop_pp": m["accuracy_drop_pp"], "agreement": m["agreement"]})
    met = m["accuracy_drop_pp"] <= max_drop_pp
    summary = {
        "max_drop_pp": max_drop_pp,
        "met": met,
        "final_drop_pp": m["accuracy_drop_pp"],
        "layers_left_float": added,
        "extra_bytes": artifact.info["storage_bytes"]["total"] - start_bytes,
        "steps": steps,
    }
    return artifact, summary


# Each design choice of the default configuration against its alternative, on the same
# calibration (observers) and evaluation data: the measurement that justifies it.
DESIGN_ALTERNATIVES = (
    ("means on int8 (requantized to the input grid) instead of float islands", {"float_means": False}),
    ("residual adds with their own qparams instead of the concat's", {"shared_add_qparams": False}),
    ("no bias correction", {"bias_correction": False}),
    ("stem conv (and input) in int8 instead of float", {"float_layers": ()}),
)


def design_choices(
    model, calibration: Calibration, options: QuantOptions, evaluator: Evaluator, calib: torch.Tensor
) -> list[dict]:
    base, _ = quantize_model(model, None, options, calibrated=calibration)
    rows = [{"variant": "chosen configuration", **_short(evaluator.measure(base)), "bytes": _bytes(base)}]
    stem = stem_layers(model)
    has_concat = any(isinstance(m, QBlock) for m in calibration.prepared.modules())
    for text, change in DESIGN_ALTERNATIVES:
        if options.integer:  # its alternative is the default model, compared in docs/quantization.md
            break
        if change.get("float_layers") == () and not set(stem) & set(options.float_layers):
            continue
        if "shared_add_qparams" in change and not has_concat:  # no block concat whose point the adds could share
            continue
        if "float_layers" in change:
            change = {"float_layers": tuple(n for n in options.float_layers if n not in stem)}
        variant = dataclasses.replace(options, **change)
        art, _ = quantize_model(model, None, variant, calibrated=calibration)
        rows.append({"variant": text, **_short(evaluator.measure(art)), "bytes": _bytes(art)})
    # These two need their own calibration (other weights / other observer ranges).
    own = []
    if options.gptq:
        own.append(("weights rounded to nearest instead of GPTQ", {"gptq": False}))
    if not options.reduce_range:
        own.append(("7-bit activations (reduce_range)", {"reduce_range": True}))
    for text, change in own:
        art, _ = quantize_model(model, calib.split(64), dataclasses.replace(options, **change))
        rows.append({"variant": text, **_short(evaluator.measure(art)), "bytes": _bytes(art)})
    return rows


def _short(m: dict) -> dict:
    keep = ("agreement", "logit_sqnr_db", "int8_accuracy", "accuracy_drop_pp")
    return {k: m[k] for k in keep if k in m}


def _bytes(art: QuantizedArtifact) -> int:
    return art.info["storage_bytes"]["total"]


# --- the command -----------------------------------------------------------------------------------


@dataclass
class QuantizeRequest:
    checkpoint: Path
    calib: Path
    engine: str | None = None
    observer: str = "histogram"
    num_calib: int | None = DEFAULT_NUM_CALIB
    eval: Path | None = None
    max_drop: float | None = None
    out: Path | None = None
    seed: int = DEFAULT_SEED
    sensitivity: bool = True
    float_stem: bool = True
    reduce_range: bool = False  # 7-bit activations: no u8 x s8 pair-sum overflow in x86 int8 kernels without VNNI
    train_split: Path | None = None  # calibrate from this DCASE training subset only
    finetune: Path | None = None  # INT8 fine-tuning on this TAU22 folder's train split (quant/finetune.py)
    finetune_epochs: int = 3
    integer: bool = False  # integer from input to logits (QuantOptions.integer)
    int16_norms: str | None = None  # with integer: which norms compute in int16 (core.config.INT16_NORMS); None: first


def default_out(checkpoint: Path) -> Path:
    return checkpoint.parent / f"{checkpoint.stem}-int8"


def check_request(req: QuantizeRequest) -> tuple[QuantOptions, Path]:
    engine = req.engine or default_engine()
    if engine not in ENGINES:
        raise TfsepError(f"--engine {engine}: choose one of {', '.join(ENGINES)}")
    if req.observer not in OBSERVERS:
        raise TfsepError(f"--observer {req.observer}: choose one of {', '.join(OBSERVERS)}")
    if req.num_calib is not None and req.num_calib < MIN_CALIB_FILES:
        raise TfsepError(f"--num-calib {req.num_calib}: must be at least {MIN_CALIB_FILES}")
    if req.max_drop is not None and not (0 <= req.max_drop <= 100):
        raise TfsepError(f"--max-drop {req.max_drop}: must be between 0 and 100 percentage points")
    if req.max_drop is not None and req.eval is None:
        raise TfsepError("--max-drop needs a labelled evaluation set: add --eval DATA")
    out = Path(req.out) if req.out is not None else default_out(Path(req.checkpoint))
    check_writable_dir(out)
    check_output_folder(out)
    if out.exists() and not is_quantized_dir(out):
        raise TfsepError(f"{out}: exists and is not a `tfsep-edge quantize` output; choose another -o folder")
    if req.finetune is not None:
        FinetuneOptions(epochs=req.finetune_epochs).check()
        check_finetune_data(req.finetune)
    if req.int16_norms not in (None, *INT16_NORMS):
        raise TfsepError(f"--int16-norms {req.int16_norms}: not a choice; use one of {', '.join(INT16_NORMS)}")
    if req.int16_norms is not None and not req.integer:
        raise TfsepError("--int16-norms chooses the statistics of an --integer model: add --integer or drop it")
    if req.integer:
        if req.max_drop is not None:
            raise TfsepError("--max-drop leaves layers in float; an --integer model has none: drop one of the two")
        options = QuantOptions(engine, req.observer, (), True, req.reduce_range, integer=True)
        return dataclasses.replace(options, int16_norms=req.int16_norms or options.int16_norms), out
    # no float layers yet: the stem is the model's (run_quantize adds it once the checkpoint is read)
    return QuantOptions(engine, req.observer, (), reduce_range=req.reduce_range), out


def calibration_subset(req: QuantizeRequest, ck_info: dict, log: Callable[[str], None]) -> Path | None:
    """--train-split, else the subset the checkpoint was trained on when --calib is its data set
    (calibration must not see clips outside the training subset)."""
    if req.train_split is not None:
        return Path(req.train_split)
    options = (ck_info.get("meta") or {}).get("options") or {}
    trained_on, data = options.get("train_split"), (ck_info.get("meta") or {}).get("data")
    if not trained_on or not data or Path(req.calib).resolve() != Path(data).resolve():
        return None
    if not Path(trained_on).is_file():
        raise TfsepError(
            f"{req.checkpoint}: trained on the subset {trained_on}, which is gone; pass --train-split FILE"
        )
    log(f"calibrating from the training subset {trained_on} (the checkpoint was trained on it)")
    return Path(trained_on)


def fidelity_row(measured: dict) -> dict:
    """The figures a before/after fine-tuning row shows."""
    keys = ("agreement", "logit_sqnr_db", "fp32_accuracy", "int8_accuracy", "accuracy_drop_pp")
    return {k: measured.get(k) for k in keys}


def check_quantizable(model, path: Path, integer: bool) -> None:
    """The INT8 model (quant/ready.py, the twin, the INT8 writers) knows these families' blocks;
    the integer model (--integer) those whose every op has an integer form."""
    family = model.config.family
    if family not in QUANTIZABLE_FAMILIES:
        raise TfsepError(
            f"{path}: quantize builds INT8 models of {' | '.join(QUANTIZABLE_FAMILIES)}, not a {family}; "
            f"export its FP32 ONNX instead (tfsep-edge export {path} --onnx OUT.onnx)"
        )
    try:  # what the quantization-ready model cannot hold (SubSpectralNorm sub-bands), before any calibration
        QTFSepNet(model)
    except TfsepError as exc:
        raise TfsepError(f"{path}: {exc}") from None
    if integer and family not in INTEGER_FAMILIES:
        raise TfsepError(
            f"{path}: --integer builds {' | '.join(INTEGER_FAMILIES)} only; a {family}'s SiLU has no integer "
            "form here: quantize it without --integer (its SiLU stays a float island)"
        )


def run_quantize(req: QuantizeRequest, log: Callable[[str], None] = print, warn=None) -> tuple[Path, dict]:
    """Everything `tfsep-edge quantize` does; returns (OUT, report)."""
    warn = warn or log
    started = time.perf_counter()
    options, out = check_request(req)
    model, ck_info = load_checkpoint(req.checkpoint)
    check_quantizable(model, req.checkpoint, options.integer)
    if req.float_stem and not options.integer:  # the family's stem: one conv, or TF-SepNet-64's two
        options = options.with_float_layers(stem_layers(model))
    frontend = ck_info["frontend"]

    subset = calibration_subset(req, ck_info, log)
    audio = select_calibration(req.calib, req.num_calib, req.seed, subset)
    calib_windows, audio = load_calibration(audio, frontend, warn)
    calib = torch.from_numpy(calib_windows)

    if req.eval is not None:
        ev_audio = select_eval(req.eval)
        data = eval_data(ev_audio, frontend, warn, "evaluation", f"{ev_audio.source} {req.eval}")
        if req.max_drop is not None and not data.labelled:
            raise TfsepError(f"{req.eval}: --max-drop needs labels (a TAU22 layout, or labels.csv in the folder)")
    else:  # no evaluation set: compare on the calibration windows themselves (each its own clip)
        n = len(calib)
        data = EvalData(calib, np.arange(n), np.full(n, -1), ["?"] * n, "the calibration windows (optimistic)")

    torch.manual_seed(0)
    log(f"calibrating on {len(calib)} windows from {len(audio.files)} files ({audio.source})")
    artifact, calibration = quantize_model(model, calib.split(64), options, frontend=frontend)
    evaluator = Evaluator(data, data.clip_logits(run_float(model, data.windows)))
    rows: list[dict] = []
    if req.sensitivity or req.max_drop is not None:
        sens_eval = Evaluator(data.subset(SENSITIVITY_WINDOWS), np.zeros(0))
        sens_eval.fp32 = sens_eval.data.clip_logits(run_float(model, sens_eval.data.windows))
        if options.integer:
            rows = integer_sensitivity(artifact, sens_eval)
        else:
            rows = sensitivity(model, calibration, options, artifact, sens_eval)
    choices = design_choices(model, calibration, options, evaluator, calib) if req.sensitivity else []
    fallback_summary = None
    if req.max_drop is not None:
        ranking = [r["layer"] for r in rows]
        artifact, fallback_summary = fallback(model, calibration, options, evaluator, ranking, req.max_drop, log)

    overall = evaluator.measure(artifact)
    finetune_summary = None
    if req.finetune is not None:
        same_data = Path(req.finetune).resolve() == Path(req.calib).resolve()
        artifact, finetune_summary = finetune(
            artifact,
            Path(req.finetune),
            FinetuneOptions(epochs=req.finetune_epochs, seed=req.seed),
            subset if same_data else None,
            log,
        )
        after = evaluator.measure(artifact)
        finetune_summary["before"], finetune_summary["after"] = fidelity_row(overall), fidelity_row(after)
        overall = after
    report = {
        "checkpoint": str(req.checkpoint),
        "out": str(out),
        "quantization": {k: v for k, v in artifact.info.items() if k != "labels"},
        "calibration": {
            "source": audio.source,
            "origin": str(audio.origin),
            "files": len(audio.files),
            "windows": len(calib),
            "seed": req.seed,
            "list_file": CALIB_LIST_FILE,
        },
        "evaluation": {"data": data.description, "labelled": data.labelled, **overall},
        "int8_vs_fake_quant": fake_quant_agreement(artifact, data.subset(SENSITIVITY_WINDOWS)),
        "layer_sensitivity": rows,
        "design_choices": choices,
        "max_drop": fallback_summary,
        "finetune": finetune_summary,
        "seconds": round(time.perf_counter() - started, 1),
    }
    artifact.info["calibration_list"] = CALIB_LIST_FILE
    text = list_text(audio, note=f"seed {req.seed}, --num-calib {req.num_calib}")
    save_quantized(artifact, out, report, {CALIB_LIST_FILE: text})
    return out, report


# --- printing --------------------------------------------------------------------------------------


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def format_report(report: dict, top: int = 10) -> str:
    q, ev = report["quantization"], report["evaluation"]
    lines = [
        f"INT8 model: {report['out']}  (engine {q['engine']}, observer {q['observer']}, "
        f"{'7-bit' if q.get('activation_reduce_range') else '8-bit'} activations, torch {q['versions']['torch']})",
        f"calibration: {report['calibration']['files']} files, {report['calibration']['windows']} windows "
        f"({report['calibration']['source']}); list in {report['calibration']['list_file']}",
        f"evaluation on {ev['data']}: {ev['clips']} clips; INT8 in exact int8 arithmetic (the fake-quant twin "
        "every export is validated against)",
    ]
    if ev.get("labelled"):
        lines.append(f"{'':10s}{'overall':>9s}" + "".join(f"{d:>7s}" for d in ev["fp32_per_device"]))
        for name in ("fp32", "int8"):
            per = ev[f"{name}_per_device"]
            lines.append(
                f"{name.upper():10s}{_pct(ev[f'{name}_accuracy']):>9s}" + "".join(f"{_pct(per[d]):>7s}" for d in per)
            )
        lines.append(f"accuracy drop: {ev['accuracy_drop_pp']:+.2f} points")
    sq = ev["logit_sqnr_db"]
    lines.append(
        f"top-1 agreement FP32 vs INT8: {_pct(ev['agreement'])}   logit SQNR: "
        + ("identical" if sq is None else f"{sq:.1f} dB")
    )
    fq = report["int8_vs_fake_quant"]
    lines.append(
        f"PyTorch's own INT8 kernels (engine {q['engine']}) here vs exact int8 arithmetic: agreement "
        f"{_pct(fq['agreement'])}, max |d logit| {fq['max_abs_logit_diff']:.4f} (x86 kernels without VNNI may saturate)"
    )
    sb = q["storage_bytes"]
    lines.append(
        f"stored: {sb['int8_weights']} B int8 weights, {sb['int32_biases']} B int32 biases, "
        f"{sb['float_qparams']} B float qparams, {sb['float_norm_params']} B float norm params, "
        f"{sb['float_params']} B float layers; total {sb['total']} B"
    )
    if q.get("integer"):
        wide = q.get("integer_points", {}).get("wide_norms", [])
        lines.append(
            "integer model: integer from input to logits in the twin and the exports (the convs as the int8 "
            "kernels compute them, AdaResNorm in integer ops with int16 statistics in "
            f"{', '.join(wide) or 'none'}, means and the global mean in int8 ops); PyTorch's INT8 model keeps "
            "AdaResNorm, the means and the global mean as float islands (torch has no int8 kernels for them)"
        )
    else:
        islands = "norms, means and SiLUs" if q.get("model", {}).get("family") == "bcresnet" else "norms and means"
        lines.append(f"float layers: {', '.join(q['float_layers']) or 'none'} (+ the {islands} as float islands)")
    rows = report["layer_sensitivity"]
    if rows:
        acc = "float_accuracy_gain_pp" in rows[0]
        what = "per integer part, computed alone in float" if q.get("integer") else "per layer, left alone in float"
        lines.append(f"sensitivity {what} (worst first, top {min(top, len(rows))} of {len(rows)}):")
        lines.append(
            f"  {'layer':32s}{'out SQNR':>9s}{'d agree':>9s}{'d SQNR':>8s}" + (f"{'d acc':>8s}" if acc else "")
        )
        for r in rows[:top]:
            s = r.get("output_sqnr_db", "-")
            line = (
                f"  {r['layer']:32s}{('inf' if s is None else s if isinstance(s, str) else f'{s:.1f}'):>9s}"
                f"{100 * r['float_agreement_gain']:>+8.1f}%{r['float_logit_sqnr_gain_db']:>+8.1f}"
            )
            if acc:
                line += f"{r['float_accuracy_gain_pp']:>+8.1f}"
            lines.append(line)
    if report.get("design_choices"):
        lines.append("design choices (same calibration; agreement / logit SQNR / bytes):")
        for r in report["design_choices"]:
            sq = r["logit_sqnr_db"]
            lines.append(
                f"  {r['variant']:72s}{_pct(r['agreement']):>7s}{('inf' if sq is None else f'{sq:.1f} dB'):>9s}"
                f"{r['bytes']:>8d} B"
            )
    ft = report.get("finetune")
    if ft:
        lines.append(f"INT8 fine-tuning: {ft['epochs']} epochs on {ft['clips']} clips of {ft['data']} (KD from FP32)")
        for name in ("before", "after"):
            r, sq = ft[name], ft[name]["logit_sqnr_db"]
            acc = "" if r["int8_accuracy"] is None else f", INT8 accuracy {_pct(r['int8_accuracy'])}"
            drop = "" if r["accuracy_drop_pp"] is None else f" (drop {r['accuracy_drop_pp']:+.2f} points)"
            sq_text = "identical" if sq is None else f"{sq:.1f} dB"
            lines.append(f"  {name:6s} agreement {_pct(r['agreement'])}, logit SQNR {sq_text}{acc}{drop}")
    md = report.get("max_drop")
    if md:
        kept = ", ".join(md["layers_left_float"]) or "none"
        verdict = "met" if md["met"] else "NOT met (every layer tried)"
        lines.append(
            f"--max-drop {md['max_drop_pp']}: {verdict}; final drop {md['final_drop_pp']:+.2f} points; "
            f"left in float: {kept}; cost {md['extra_bytes']:+d} B"
        )
    return "\n".join(lines)


def quantize_command(as_json: bool = False, **kwargs) -> int:
    import json
    import sys

    req = QuantizeRequest(**kwargs)

    def warn(msg: str) -> None:
        print(f"warning: {msg}", file=sys.stderr)

    _, report = run_quantize(req, log=lambda m: print(m, file=sys.stderr), warn=warn)
    print(json.dumps(report, sort_keys=True) if as_json else format_report(report))
    return 0
