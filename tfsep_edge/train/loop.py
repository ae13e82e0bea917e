"""Train TF-SepNet the report's way (sections 2.3, 2.4, 3.3, 4): one loop, read top to bottom.

Recipe (every part an option, defaults as the report): Adam, batch 32, 200 epochs, learning
rate warmed up linearly 0 -> 0.01 over 10 epochs then cosine-annealed to 0 (set every step);
device simulation with MicIRP responses (offline: 32 responses, each convolved with device-A
clips to make a new device, in the report's proportion: its 7,500 clips per response are 7.34%
of TAU22's 102,150 device-A clips, so each response takes that share of the data set's device-A
clips, at most 7,500; --devsim-clips N sets the count instead; or online: each device-A clip
convolved with a random response with probability p);
Freq-MixStyle (alpha 0.3, p 0.5) and Mixup (alpha 0.3) on the log-mel; dropout 0.2;
knowledge distillation from a teacher checkpoint or precomputed logits (losses.py, teacher.py).

Under `torchrun --nproc_per_node N` the same code trains with DistributedDataParallel
(processes.py); --batch-size stays the global batch (each process takes 1/N of it) and only
rank 0 validates and writes files. Every epoch is seeded from (seed, epoch, rank), so
`--resume` from last.pt continues exactly as an uninterrupted run would.
"""

from __future__ import annotations

import csv
import io
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from tfsep_edge.core.config import NUM_CLASSES, FrontendConfig, preset_name
from tfsep_edge.core.errors import TfsepError
from tfsep_edge.core.fileio import check_output_folder, make_folder, write_text_atomic
from tfsep_edge.core.progress import progress_bar
from tfsep_edge.datasets.cache import is_synthetic
from tfsep_edge.model import families
from tfsep_edge.model.checkpoint import read_checkpoint, save_checkpoint
from tfsep_edge.signal.frontend import log_mel_torch
from tfsep_edge.train import augment
from tfsep_edge.train.batches import WaveBatches, epoch_batches
from tfsep_edge.train.losses import kd_loss, soft_cross_entropy
from tfsep_edge.train.options import TrainOptions
from tfsep_edge.train.processes import (
    Ranks,
    default_threads,
    distributed_env,
    distributed_model,
    join_process_group,
    leave_process_group,
    resolve_device,
    sum_over_ranks,
)
from tfsep_edge.train.teacher import Teacher, open_teacher
from tfsep_edge.train.training_data import TrainingData, check_split_lists, load_training_data
from tfsep_edge.train.validation import validate

METRIC_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "clips_per_s", "seconds")


# --- the training run ------------------------------------------------------------------------------


def train(
    data: str | Path,
    out: str | Path,
    given: dict | None = None,
    resume: bool = False,
    progress: bool = True,
    **options,
) -> dict:
    """Train on DATA (TAU22 layout) into run folder OUT; returns a summary dict (rank 0).

    Options (TrainOptions field names) come as the dict `given` and/or keywords, e.g.
    `train("data", "runs/x", epochs=20, warmup_epochs=2, devsim="online")`; options left out
    take the resumed run's values (with resume=True) or the report's defaults.
    """
    data, out = Path(data), check_output_folder(out)  # a file where -o goes fails now, not after caching
    ranks = distributed_env()
    log = (lambda msg: print(msg, file=sys.stderr)) if ranks.master else (lambda msg: None)
    run = open_run(data, out, {**(given or {}), **options}, resume, log)
    opts = run.opts
    check_split_lists(data, opts)

    device = resolve_device(opts.device, ranks.local_rank)
    own_group = join_process_group(ranks, device)
    torch.set_num_threads(opts.threads or default_threads())

    clips = load_training_data(data, opts, device, ranks, progress, log)
    model, optimizer = build_model(opts, device, run, log)
    ddp_model = distributed_model(model, ranks, device)  # trains; `model` validates and is saved
    teacher = open_teacher(opts.teacher, opts.kd_temperature, clips.train, clips.train_filenames, device, run.frontend)
    if teacher is not None:
        log(f"knowledge distillation from {Path(opts.teacher)} (lambda {opts.kd_lambda:g}, T {opts.kd_temperature:g})")
    if ranks.master:  # once everything is read: a bad clip or teacher leaves no empty run folder behind
        make_folder(out)
    fe = run.frontend
    log(f"{opts.model} on the {preset_name(fe) or 'custom'} front end ({fe.n_mels}x{fe.n_frames} log-mel per second)")

    t_run = time.perf_counter()
    for epoch in range(run.start_epoch, opts.epochs):
        stats = train_one_epoch(ddp_model, optimizer, clips, teacher, run, epoch, ranks, device, progress)
        if ranks.master:  # validation and checkpoints: rank 0 only
            val_acc, val_loss = validate(model, clips.val, device, run.frontend)
            row = metrics_row(run, epoch, stats, val_acc, val_loss)
            save_epoch(model, optimizer, run, row, val_acc, val_loss)
            log(
                f"epoch {epoch + 1}/{opts.epochs}: loss {row['train_loss']} train acc {row['train_acc']} "
                f"val acc {row['val_acc']} (best {run.best_acc:.4f}) lr {row['lr']} [{row['seconds']} s]"
            )
    leave_process_group(ranks, own_group)
    return run_summary(run, clips, ranks, time.perf_counter() - t_run)


# --- set-up: options, run folder, model ------------------------------------------------------------


@dataclass
class Run:
    """A run's options and where it stands: what `--resume` restores and every epoch updates."""

    data: Path
    out: Path
    opts: TrainOptions
    warmup: float  # epochs of linear warm-up actually used
    # The features it trains on (families.model_frontend: the resumed run's, else the family's).
    # The waveform cache does not depend on it: every preset reads 1-s clips at 32 kHz.
    frontend: FrontendConfig
    resumed: dict | None = None  # the last.pt payload being resumed
    start_epoch: int = 0
    best_acc: float = -1.0
    history: list[dict] = field(default_factory=list)  # one metrics row per epoch


def open_run(data: Path, out: Path, given: dict, resume: bool, log: Callable[[str], None]) -> Run:
    """Options: explicit > resumed run's > defaults. A resumed run must keep its width and front end."""
    payload, recorded = None, None
    if resume:
        if not (out / "last.pt").is_file():
            raise TfsepError(f"{out}: no last.pt to resume from; drop --resume to start a new run")
        payload = read_checkpoint(out / "last.pt")
        state = payload.get("train_state")
        if not isinstance(state, dict):
            raise TfsepError(f"{out / 'last.pt'}: has no training state; resume needs a last.pt written by train")
        stored_width = int(payload["model"]["width"])
        stored_family = payload["model"].get("family") or "tfsepnet"
        if given.get("model") not in (None, stored_family):
            raise TfsepError(
                f"{out / 'last.pt'}: the run being resumed trains a {stored_family}, not --model {given['model']}; "
                "drop --model"
            )
        if given.get("width") not in (None, stored_width):
            raise TfsepError(
                f"{out / 'last.pt'}: the run being resumed has width {stored_width}, not --width {given['width']}; "
                f"drop --width or pass --width {stored_width}"
            )
        opts = TrainOptions.resolve(given, state["options"])
        recorded = payload.get("frontend") or None
    else:
        if (out / "last.pt").exists():
            raise TfsepError(f"{out}: already holds a run (last.pt); pass --resume to continue it or choose another -o")
        opts = TrainOptions.resolve(given)
    opts.check()
    if opts.train_split:  # absolute, so quantize and --resume find it from anywhere
        opts.train_split = str(Path(opts.train_split).resolve())
    warmup = opts.warmup_epochs
    if warmup >= opts.epochs:
        warmup = opts.epochs * 0.05  # the report's 10 of 200 epochs
        log(f"note: --warmup-epochs {opts.warmup_epochs} >= --epochs {opts.epochs}; warming up {warmup:g} epochs")
    frontend = families.model_frontend(opts.model, recorded, out / "last.pt")
    return Run(data, out, opts, warmup, frontend, payload)


def build_model(opts: TrainOptions, device: torch.device, run: Run, log: Callable[[str], None]):
    """(model, optimizer), seeded; with the resumed run's weights, optimizer state and history."""
    torch.manual_seed(opts.seed)
    config = opts.model_config()
    model = families.build_model(config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=opts.lr)
    if run.resumed is not None:
        state = run.resumed["train_state"]
        model.load_state_dict(run.resumed["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        run.start_epoch, run.best_acc = int(state["epoch"]), float(state["best_val_acc"])
        run.history = list(state["history"])
        log(f"resuming {run.out / 'last.pt'} after epoch {run.start_epoch}")
    return model, optimizer


# --- one epoch -------------------------------------------------------------------------------------


def lr_at(epoch: float, base_lr: float, warmup_epochs: float, total_epochs: float) -> float:
    """Linear warm-up 0 -> base over warmup_epochs, then cosine to 0 at total_epochs."""
    if epoch < warmup_epochs:
        return base_lr * epoch / warmup_epochs
    progress = min(1.0, (epoch - warmup_epochs) / max(total_epochs - warmup_epochs, 1e-9))
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class EpochStats:
    started: float  # time.perf_counter() at the epoch's start
    train_seconds: float  # loading, augmenting, forward, backward (all ranks)
    loss_sum: float  # over every process's clips
    correct: float
    seen: float


def train_one_epoch(
    model, optimizer, clips: TrainingData, teacher: Teacher | None, run: Run, epoch: int, ranks: Ranks, device, progress
) -> EpochStats:
    """One pass over this rank's shuffled batches, the learning rate set every step."""
    opts = run.opts
    started = time.perf_counter()
    seed = opts.seed * 1_000_003 + epoch * 101 + ranks.rank
    torch.manual_seed(seed)  # dropout: repeatable per epoch
    gen = torch.Generator().manual_seed(seed + 7)  # augmentations
    batches = epoch_batches(
        len(clips.train), max(2, opts.batch_size // ranks.world), epoch, opts.seed, ranks.rank, ranks.world
    )
    loader = torch.utils.data.DataLoader(
        WaveBatches(clips.train.waves),
        sampler=batches,
        batch_size=None,
        num_workers=opts.workers,
        pin_memory=device.type == "cuda",
    )
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    bar = progress_bar(len(batches), f"epoch {epoch + 1}/{opts.epochs}", "batch", progress and ranks.master)
    for step, (waves, rows) in enumerate(loader):
        lr = lr_at(epoch + step / len(batches), opts.lr, run.warmup, opts.epochs)
        for group in optimizer.param_groups:
            group["lr"] = lr
        waves = waves.to(device, non_blocking=True)
        x, targets, t_probs = augmented_batch(waves, rows, clips, teacher, opts, gen, run.frontend)
        logits, loss = train_step(model, optimizer, x, targets, t_probs, opts)
        loss_sum += loss.item() * len(rows)
        correct += int((logits.argmax(1) == targets.argmax(1)).sum())
        seen += len(rows)
        bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2e}")
        bar.update(1)
    bar.close()
    train_seconds = time.perf_counter() - started
    loss_sum, correct, seen = sum_over_ranks([loss_sum, correct, seen], ranks, device)
    return EpochStats(started, train_seconds, loss_sum, correct, seen)


def augmented_batch(
    waves, rows, clips: TrainingData, teacher: Teacher | None, opts: TrainOptions, gen, cfg: FrontendConfig
):
    """Waveform -> (device simulation) -> log-mel -> Freq-MixStyle -> Mixup: (x, targets, the
    teacher's softened probabilities for the same batch or None)."""
    device = waves.device
    if clips.irs:
        waves = augment.simulate_devices(waves, clips.is_device_a[rows], clips.irs, opts.devsim_p, gen)
    x = log_mel_torch(waves, cfg)
    x = augment.freq_mixstyle(x, opts.mixstyle_alpha, opts.mixstyle_p, gen)
    targets = F.one_hot(clips.labels[rows], NUM_CLASSES).float().to(device)
    t_probs = teacher.probs_before_mixup(rows, device) if teacher is not None else None
    if opts.mixup_alpha > 0:
        x, targets, lam, perm = augment.mixup(x, targets, opts.mixup_alpha, gen)
        if t_probs is not None:  # precomputed targets mix with the labels' lambda
            t_probs = lam[:, None] * t_probs + (1 - lam[:, None]) * t_probs[perm]
    if teacher is not None and teacher.model is not None:
        t_probs = teacher.probs_of_batch(x)
    return x, targets, t_probs


def train_step(model, optimizer, x, targets, t_probs, opts: TrainOptions):
    """Forward, loss (labels, plus distillation with a teacher), backward, step: (logits, loss)."""
    logits = model(x)
    loss = soft_cross_entropy(logits, targets)
    if t_probs is not None:
        loss = loss + opts.kd_lambda * kd_loss(logits, t_probs, opts.kd_temperature)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return logits, loss


# --- evaluation, checkpoints, summary (rank 0) -----------------------------------------------------


def metrics_row(run: Run, epoch: int, stats: EpochStats, val_acc: float, val_loss: float) -> dict:
    """The epoch's row of metrics.csv."""
    opts = run.opts
    return {
        "epoch": epoch + 1,
        "lr": f"{lr_at(epoch + 1, opts.lr, run.warmup, opts.epochs):.6g}",
        "train_loss": f"{stats.loss_sum / max(stats.seen, 1):.5f}",
        "train_acc": f"{stats.correct / max(stats.seen, 1):.5f}",
        "val_loss": f"{val_loss:.5f}",
        "val_acc": f"{val_acc:.5f}",
        "clips_per_s": f"{stats.seen / stats.train_seconds:.1f}",  # training only, all processes
        "seconds": f"{time.perf_counter() - stats.started:.2f}",
    }


def save_epoch(model, optimizer, run: Run, row: dict, val_acc: float, val_loss: float) -> None:
    """best.pt when validation improved, last.pt (with what --resume needs), metrics.csv; every
    write atomic (temporary file, rename), so an interrupted run resumes from a whole epoch."""
    run.history.append(row)
    meta = {
        "epoch": row["epoch"],
        "val_acc": val_acc,
        "val_loss": val_loss,
        "val_split": run.opts.val_split,
        "data": str(run.data.resolve()),
        "synthetic_data": is_synthetic(run.data),
        "options": asdict(run.opts),
        "torch": str(torch.__version__),
    }
    if val_acc > run.best_acc:
        run.best_acc = val_acc
        save_checkpoint(model, run.out / "best.pt", run.frontend, meta)
    train_state = {
        "epoch": row["epoch"],
        "optimizer": optimizer.state_dict(),
        "best_val_acc": run.best_acc,
        "history": run.history,
        "options": asdict(run.opts),
        "torch_rng": torch.get_rng_state(),
    }
    save_checkpoint(model, run.out / "last.pt", run.frontend, meta, extra={"train_state": train_state})
    write_text_atomic(run.out / "metrics.csv", metrics_text(run.history))


def metrics_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def run_summary(run: Run, clips: TrainingData, ranks: Ranks, seconds: float) -> dict:
    last = run.history[-1] if run.history else {}
    return {
        "run_dir": str(run.out),
        "epochs": run.opts.epochs,
        "trained_epochs": run.opts.epochs - run.start_epoch,
        "best_val_acc": run.best_acc,
        "last_val_acc": float(last.get("val_acc", "nan")),
        "train_clips": len(clips.train),
        "val_clips": len(clips.val),
        "seconds": seconds,
        "synthetic_data": is_synthetic(run.data),
        "world_size": ranks.world,
        "model": run.opts.model,
        "width": run.opts.model_config().width,
    }
