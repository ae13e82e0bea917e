"""INT8 fidelity before and after `quantize --finetune` (PTQ vs INT8 fine-tuning), C=12 and C=40
(SYNTHETIC data).

For each width: the given trained checkpoint (or one trained here: no device simulation, a few
epochs, best.pt), then the quantize command's code with --finetune on the set's train split
(engine x86, histogram observer, no sensitivity scan), evaluated on the held-out evaluate split
both as the report computes it (exact int8 arithmetic) and as deployed (the INT8 ONNX on
onnxruntime). One report holds both stages (before = PTQ).

    .venv/bin/python benchmarks/finetune_fidelity.py --data SYNTH --widths 12 40 --checkpoints c12.pt c40.pt

Writes benchmarks/results/finetune_fidelity.json and .md. SYNTHETIC data: the figures show the
method, not TAU22 accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tfsep_edge.core.fileio import write_text_atomic  # noqa: E402
from tfsep_edge.datasets.synth import synthesize  # noqa: E402
from tfsep_edge.datasets.tau import read_split  # noqa: E402

OUT = REPO / "benchmarks" / "results"


def one_width(data: Path, work: Path, width: int, epochs: int, ft_epochs: int, checkpoint: Path | None) -> dict:
    """PTQ then fine-tuning of one width; trains `epochs` first unless `checkpoint` is given."""
    from tfsep_edge.quant.pipeline import QuantizeRequest, run_quantize
    from tfsep_edge.train.loop import train

    if checkpoint is None:
        given = {"width": width, "epochs": epochs, "devsim": "none", "warmup_epochs": 1, "lr": 0.005, "threads": 1}
        train(data, work / f"c{width}", given=given, progress=False)
        checkpoint = work / f"c{width}" / "best.pt"
    req = QuantizeRequest(
        checkpoint=checkpoint,
        calib=data,
        eval=data,
        engine="x86",
        sensitivity=False,
        out=work / f"c{width}-int8",
        finetune=data,
        finetune_epochs=ft_epochs,
    )
    _, report = run_quantize(req, log=lambda m: print(m, flush=True))
    ft = report["finetune"]
    deployed = deployed_fidelity(data, checkpoint, req.out, work / f"c{width}")
    return {
        "width": width,
        "checkpoint": checkpoint.name,
        "finetune_epochs": ft_epochs,
        "clips": ft["clips"],
        **ft,
        "deployed": deployed,
    }


def deployed_fidelity(data: Path, checkpoint: Path, finetuned: Path, work: Path) -> dict:
    """The same figures for what is deployed: the INT8 ONNX (onnxruntime) of PTQ and of the
    fine-tuned model, on the evaluate split (the report's exact-arithmetic figures, checked)."""
    from trained_agreement import onnxruntime_logits, quantize_and_export

    from tfsep_edge.datasets.cache import load_split
    from tfsep_edge.export.onnx_export import export
    from tfsep_edge.runtime.evaluate import load_logits_fn, split_logits
    from tfsep_edge.signal.frontend import log_mel

    work.mkdir(parents=True, exist_ok=True)
    quantize_and_export(data, checkpoint, work / "ptq-int8", work / "ptq.onnx", reduce_range=False)
    export(finetuned, work / "finetuned.onnx", int8=True, echo=lambda _s: None, timing=False)
    split = load_split(data, "evaluate", progress=False, dtype="float32")
    fp32 = split_logits(load_logits_fn(checkpoint), split, progress=False)
    fn = load_logits_fn(finetuned)
    mels = np.ascontiguousarray(log_mel(split.waves.get(np.arange(len(split))), fn.frontend)[:, None])
    out = {"fp32_accuracy": float((fp32.argmax(1) == split.labels).mean())}
    for stage, onnx_file in (("before", "ptq.onnx"), ("after", "finetuned.onnx")):
        int8 = onnxruntime_logits(work / onnx_file, mels)
        acc = float((int8.argmax(1) == split.labels).mean())
        out[stage] = {
            "agreement": float((int8.argmax(1) == fp32.argmax(1)).mean()),
            "int8_accuracy": acc,
            "accuracy_drop_pp": 100 * (out["fp32_accuracy"] - acc),
        }
    return out


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        "# INT8 fidelity: PTQ vs INT8 fine-tuning (`quantize --finetune`)",
        "",
        f"SYNTHETIC data ({meta['train_clips']:,} train, {meta['evaluate_clips']:,} held-out evaluate clips; "
        f"{meta['trained']}; engine x86, histogram observer; calibration and fine-tuning on the train split, "
        "figures on the evaluate split). Not TAU22 accuracy.",
        "",
        "| C | stage | INT8 run by | top-1 agreement FP32 vs INT8 | logit SQNR dB | FP32 acc | INT8 acc | drop pp |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for stage in ("before", "after"):
            name = "PTQ" if stage == "before" else f"fine-tuned {r['finetune_epochs']} epochs"
            m = r[stage]
            sq = "inf" if m["logit_sqnr_db"] is None else f"{m['logit_sqnr_db']:.1f}"
            lines.append(
                f"| {r['width']} | {name} | exact int8 (quantize report) | {m['agreement']:.1%} | {sq} | "
                f"{m['fp32_accuracy']:.1%} | {m['int8_accuracy']:.1%} | {m['accuracy_drop_pp']:+.2f} |"
            )
            if "deployed" in r:
                d = r["deployed"][stage]
                lines.append(
                    f"| {r['width']} | {name} | INT8 ONNX, onnxruntime (deployed) | {d['agreement']:.1%} | - | "
                    f"{r['deployed']['fp32_accuracy']:.1%} | {d['int8_accuracy']:.1%} | {d['accuracy_drop_pp']:+.2f} |"
                )
    r0 = rows[0]
    loss = f"{r0['kd_lambda']:g} x KL(FP32 || INT8) at T={r0['kd_temperature']:g}"
    if r0.get("label_weight"):
        loss += f" + {r0['label_weight']:g} x CE(labels)"
    lines += [
        "",
        f"Fine-tuning loss: {loss}; lr {r0['lr']:g}, batch {r0['batch_size']}, {r0['finetune_epochs']} epochs.",
        "Reading: agreement and SQNR measure the INT8 model's distance from its FP32 teacher; all columns",
        f"count the same {meta['evaluate_clips']:,} held-out clips, so one clip moves a figure by "
        f"{100 / meta['evaluate_clips']:.2f} points.",
    ]
    return "\n".join(lines) + "\n"


def rewrite_markdown() -> None:
    """Rebuild the .md from the committed .json (after a change of the table's text only)."""
    saved = json.loads((OUT / "finetune_fidelity.json").read_text())
    write_text_atomic(OUT / "finetune_fidelity.md", markdown(saved["rows"], saved["meta"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[12, 40])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--finetune-epochs", type=int, default=3)
    ap.add_argument("--clips-per-class", type=int, default=30)
    ap.add_argument("--data", type=Path, help="an existing synthetic set written by `synth` (else one is written)")
    ap.add_argument(
        "--checkpoints", type=Path, nargs="+", help="trained checkpoints, one per width in --widths (else trained here)"
    )
    ap.add_argument("--trained", default=None, help="how the given checkpoints were trained (for the table's header)")
    args = ap.parse_args()
    checkpoints = args.checkpoints or [None] * len(args.widths)
    if len(checkpoints) != len(args.widths):
        ap.error("--checkpoints: give one per width")
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or synthesize(Path(tmp) / "synth", clips_per_class=args.clips_per_class, seed=0)
        meta = {
            "data": "SYNTHETIC",
            "train_clips": len(read_split(data, "train")),
            "evaluate_clips": len(read_split(data, "evaluate")),
            "trained": args.trained or f"models trained {args.epochs} epochs here, devsim none",
        }
        rows = [
            one_width(data, Path(tmp), w, args.epochs, args.finetune_epochs, ck)
            for w, ck in zip(args.widths, checkpoints, strict=True)
        ]
    OUT.mkdir(parents=True, exist_ok=True)
    write_text_atomic(OUT / "finetune_fidelity.json", json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    write_text_atomic(OUT / "finetune_fidelity.md", markdown(rows, meta))
    print(markdown(rows, meta))


if __name__ == "__main__":
    main()
