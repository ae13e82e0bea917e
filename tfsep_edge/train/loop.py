"""Train TF-SepNet the report's way (sections 2.3, 2.4, 3.3, 4): one loop, read top to bottom.

Recipe (every part an option, defaults as the report): Adam, batch 32, 200 epochs, learning
rate warmed up linearly 0 -> 0.01 over 10 epochs then cosine-annealed to 0 (set every step);
device simulation with MicIRP responses (offline: 32 responses, each convolved with device-A
clips to make a new device, in the report's proportion: its 7,500 clips per response are 7.34%
of TAU22's 102,150 device-A clips, so each response takes that share of the data set's device-A
clips, at most 7,500; --devsim-clips N sets the count instead; or online: each device-A clip
convolved with a random response with probability p);
Freq-MixStyle (alpha 0.3, p 0.5) and Mixup (alpha 0.3) on the log-mel; dropout 0.2;
knowledge distillation from a teacher.

Knowledge distillation: loss = CE(student, labels) + lambda * KL(p_teacher^T || p_student^T)
with p^T = softmax(logits / T), the KL averaged over the batch, defaults lambda 20, T 5. The KL
is NOT multiplied by T^2: at temperature T its gradient shrinks by about 1/T^2, and the
report's lambda = 20 (close to T^2 = 25) plays that role, giving the distillation term about
the weight of the label term (20 / 25 = 0.8). Multiplying by T^2 as well would weight it ~500x.
The teacher is a checkpoint (run on the same augmented batch as the student) or precomputed
logits aligned with fold1_train.csv (a .npy with a FILE.filenames.txt beside it, or a .pt
{"logits": (N, 10), "filenames": [...]}, as `save_teacher_logits` writes); precomputed
targets are mixed with the same Mixup lambda as the labels, and simulated clips use their
source clip's row.

Under `torchrun --nproc_per_node N` the same code trains with DistributedDataParallel (gloo
on CPU, nccl on CUDA); --batch-size stays the global batch (each process takes 1/N of it)
and only rank 0 validates and writes files. Every epoch is seeded from (seed, epoch, rank), so
`--resume` from last.pt continues exactly as an uninterrupted run would.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, fields
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tfsep_edge.core.config import DEFAULT_FRONTEND, NUM_CLASSES
from tfsep_edge.core.errors import TfsepError, check_at_least_one
from tfsep_edge.core.fileio import check_output_folder, make_folder, write_bytes_atomic, write_text_atomic
from tfsep_edge.core.progress import progress_bar
from tfsep_edge.datasets.cache import SplitData, default_cache_dir, default_ir_dir, is_synthetic, load_split
from tfsep_edge.datasets.tau import read_split, read_train_subset
from tfsep_edge.model.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from tfsep_edge.model.tfsepnet import TFSepNet, check_width
from tfsep_edge.signal.frontend import log_mel_torch
from tfsep_edge.train import augment
from tfsep_edge.train.batches import (
    WaveBatches,
    concat,
    devsim_summary,
    epoch_batches,
    offline_device_simulation,
    require_device_a,
)

DEVSIM_MODES = ("offline", "online", "none")
METRIC_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "clips_per_s", "seconds")


@dataclass
class TrainOptions:
    width: int = 12
    epochs: int = 200
    batch_size: int = 32
    lr: float = 0.01
    warmup_epochs: float = 10
    device: str = "cpu"
    teacher: str | None = None
    kd_lambda: float = 20.0
    kd_temperature: float = 5.0
    mixup_alpha: float = 0.3  # 0 turns Mixup off
    mixstyle_p: float = 0.5  # 0 turns Freq-MixStyle off
    mixstyle_alpha: float = 0.3
    dropout: float = 0.2
    devsim: str = "offline"  # offline | online | none
    devsim_p: float = 0.5  # online: probability a device-A clip is convolved
    devsim_irs: int = 32  # offline: responses used
    devsim_clips: int | None = None  # offline: device-A clips per response; None: the report's proportion
    ir_dir: str | None = None  # default: the 66 MicIRP responses shipped as package data
    seed: int = 0
    workers: int = 0
    threads: int | None = None
    cache_dir: str | None = None
    val_split: str = "evaluate"
    train_split: str | None = None  # a DCASE subset list (split25.csv ...) of fold1_train.csv

    def check(self) -> None:
        """Every user-facing value, validated with a one-line error."""
        check_width(self.width)
        positive = {"--epochs": self.epochs, "--batch-size": self.batch_size, "--lr": self.lr}
        for name, v in positive.items():
            if not v > 0:
                raise TfsepError(f"{name} {v}: must be positive")
        if self.batch_size < 2:
            raise TfsepError(f"--batch-size {self.batch_size}: BatchNorm needs at least 2")
        unit = {"--mixstyle-p": self.mixstyle_p, "--devsim-p": self.devsim_p, "--dropout": self.dropout}
        for name, v in unit.items():
            if not 0 <= v <= 1:
                raise TfsepError(f"{name} {v}: must be in [0, 1]")
        nonneg = {
            "--warmup-epochs": self.warmup_epochs,
            "--mixup-alpha": self.mixup_alpha,
            "--mixstyle-alpha": self.mixstyle_alpha,
            "--kd-lambda": self.kd_lambda,
            "--workers": self.workers,
        }
        for name, v in nonneg.items():
            if v < 0:
                raise TfsepError(f"{name} {v}: must be >= 0")
        if self.mixstyle_p > 0 and self.mixstyle_alpha <= 0:
            raise TfsepError(f"--mixstyle-alpha {self.mixstyle_alpha}: must be > 0 (or --mixstyle-p 0)")
        if self.kd_temperature <= 0:
            raise TfsepError(f"--kd-temperature {self.kd_temperature}: must be positive")
        if self.devsim not in DEVSIM_MODES:
            raise TfsepError(f"--devsim {self.devsim}: choose one of {', '.join(DEVSIM_MODES)}")
        if self.devsim_irs < 1:
            raise TfsepError(f"--devsim-irs {self.devsim_irs}: must be at least 1")
        if self.devsim_clips is not None and self.devsim_clips < 1:
            raise TfsepError(
                f"--devsim-clips {self.devsim_clips}: must be at least 1 (leave it out for the report's proportion)"
            )
        if self.device not in ("cpu", "cuda"):
            raise TfsepError(f"--device {self.device}: choose cpu or cuda")
        check_at_least_one("--threads", self.threads)

    @classmethod
    def resolve(cls, given: dict, stored: dict | None = None) -> TrainOptions:
        """Options given explicitly > options of the run being resumed > the report's defaults."""
        known = {f.name for f in fields(cls)}
        unknown = set(given) - known
        if unknown:
            raise TfsepError(f"unknown training options: {', '.join(sorted(unknown))}")
        values = {k: v for k, v in (stored or {}).items() if k in known}
        values.update({k: v for k, v in given.items() if v is not None})
        return cls(**values)


# --- the pieces the loop uses ------------------------------------------------------------------


def lr_at(epoch: float, base_lr: float, warmup_epochs: float, total_epochs: float) -> float:
    """Linear warm-up 0 -> base over warmup_epochs, then cosine to 0 at total_epochs."""
    if epoch < warmup_epochs:
        return base_lr * epoch / warmup_epochs
    progress = min(1.0, (epoch - warmup_epochs) / max(total_epochs - warmup_epochs, 1e-9))
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against probability rows (Mixup's mixed one-hot labels)."""
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def kd_loss(student_logits: torch.Tensor, teacher_probs_t: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(p_teacher^T || p_student^T), batch mean, not scaled by T^2 (see the module doc)."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    return F.kl_div(log_p_student, teacher_probs_t, reduction="batchmean")


def resolve_device(name: str, local_rank: int) -> torch.device:
    if name == "cuda":
        if not torch.cuda.is_available():
            raise TfsepError("--device cuda: no CUDA device (or a CPU-only PyTorch build); use --device cpu")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def distributed_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def default_threads() -> int:
    """OMP_NUM_THREADS if set, else 1 per process.

    TF-SepNet's small depthwise convolutions barely parallelise inside one process: on the shared
    2-core development machine 2 threads trained 4-15x slower than 1, for C=12 and C=40
    (benchmarks/results/train_throughput.md). Scale with processes (torchrun) or set --threads.
    """
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    return 1


def load_teacher_logits(path: Path, filenames: list[str]) -> np.ndarray:
    """Precomputed teacher logits (N, 10) aligned with `filenames`; TfsepError if they are not."""
    names = None
    if path.suffix == ".npy":
        try:
            logits = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise TfsepError(f"{path}: not a readable .npy of teacher logits ({exc})") from None
        sidecar = path.with_suffix(".filenames.txt")
        if sidecar.is_file():
            names = sidecar.read_text().splitlines()
    else:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        logits, names = (obj, None) if isinstance(obj, torch.Tensor) else (obj["logits"], obj.get("filenames"))
        logits = logits.numpy() if isinstance(logits, torch.Tensor) else np.asarray(logits)
    if logits.ndim != 2 or logits.shape[1] != NUM_CLASSES:
        raise TfsepError(f"{path}: teacher logits of shape {logits.shape}; expected (N, {NUM_CLASSES})")
    if names is not None and len(names) != len(filenames) and set(filenames) <= set(names):
        row_of = {n: i for i, n in enumerate(names)}  # full-split logits, training on a subset of it
        logits, names = logits[[row_of[n] for n in filenames]], list(filenames)
    if len(logits) != len(filenames):
        raise TfsepError(
            f"{path}: {len(logits)} teacher logit rows for {len(filenames)} training files; "
            "recompute them for this data set's fold1_train.csv"
        )
    if names is not None:
        bad = next((i for i, (a, b) in enumerate(zip(names, filenames, strict=False)) if a != b), None)
        if len(names) != len(filenames) or bad is not None:
            where = f"row {bad}: {names[bad]} vs {filenames[bad]}" if bad is not None else "different lengths"
            raise TfsepError(
                f"{path}: teacher logits are not in fold1_train.csv order ({where}); recompute them for this split"
            )
    elif path.suffix == ".npy":
        print(
            f"note: {path}: no {path.with_suffix('.filenames.txt').name}; only the row count was checked",
            file=sys.stderr,
        )
    if not np.isfinite(logits).all():
        raise TfsepError(f"{path}: teacher logits contain NaN or infinity")
    return logits.astype(np.float32)


def is_logits_file(path: Path) -> bool:
    """A .npy, or a .pt holding a (N, 10) tensor or a dict with 'logits' (not a checkpoint)."""
    if path.suffix == ".npy":
        return True
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return False
    return isinstance(obj, torch.Tensor) or (isinstance(obj, dict) and "logits" in obj)


@torch.no_grad()
def predict_logits(model: torch.nn.Module, split: SplitData, device: torch.device, batch: int = 128) -> np.ndarray:
    """(N, 10) logits of a split's clips: cached waveform -> log_mel_torch -> model (eval mode)."""
    model.eval()
    out = []
    for i in range(0, len(split), batch):
        waves = torch.from_numpy(split.waves.get(np.arange(i, min(i + batch, len(split))))).to(device)
        out.append(model(log_mel_torch(waves)).float().cpu())
    return torch.cat(out).numpy()


def save_teacher_logits(
    checkpoint: str | Path, data: str | Path, out: str | Path, cache_dir: str | None = None
) -> Path:
    """Precompute a teacher's logits on the train split, in fold1_train.csv order, as a .pt file."""
    model, _ = load_checkpoint(checkpoint)
    train = load_split(data, "train", cache_dir)
    logits = predict_logits(model, train, torch.device("cpu"))
    buf = io.BytesIO()
    torch.save({"logits": torch.from_numpy(logits), "filenames": train.filenames}, buf)
    write_bytes_atomic(out, buf.getvalue())
    return Path(out)


def offline_summary(train_set: SplitData, sim: SplitData, absolute: int | None) -> str:
    """The figures of an offline simulation, for the log."""
    n_irs = len(set(sim.devices))
    n_a = sum(d == "a" for d in train_set.devices)
    return devsim_summary(n_irs, len(sim) // n_irs, n_a, len(train_set), absolute)


def metrics_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


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
    given = {**(given or {}), **options}
    rank, world, local_rank = distributed_env()
    master = rank == 0
    log = (lambda msg: print(msg, file=sys.stderr)) if master else (lambda msg: None)

    # Options: explicit > resumed run's > defaults. A resumed run must keep its width.
    state = None
    if resume:
        if not (out / "last.pt").is_file():
            raise TfsepError(f"{out}: no last.pt to resume from; drop --resume to start a new run")
        payload = read_checkpoint(out / "last.pt")
        state = payload.get("train_state")
        if not isinstance(state, dict):
            raise TfsepError(f"{out / 'last.pt'}: has no training state; resume needs a last.pt written by train")
        stored_width = int(payload["model"]["width"])
        if (given or {}).get("width") not in (None, stored_width):
            raise TfsepError(
                f"{out / 'last.pt'}: the run being resumed has width {stored_width}, not --width {given['width']}; "
                f"drop --width or pass --width {stored_width}"
            )
        opts = TrainOptions.resolve(given or {}, state["options"])
    else:
        if (out / "last.pt").exists():
            raise TfsepError(f"{out}: already holds a run (last.pt); pass --resume to continue it or choose another -o")
        opts = TrainOptions.resolve(given or {})
    opts.check()
    if opts.train_split:  # absolute, so quantize and --resume find it from anywhere
        opts.train_split = str(Path(opts.train_split).resolve())
    warmup = opts.warmup_epochs
    if warmup >= opts.epochs:
        warmup = opts.epochs * 0.05  # the report's 10 of 200 epochs
        log(f"note: --warmup-epochs {opts.warmup_epochs} >= --epochs {opts.epochs}; warming up {warmup:g} epochs")

    # The split lists, before any folder is made or audio decoded: a bad subset or no device-A
    # clip under offline simulation is an error now, not after minutes of caching.
    subset = Path(opts.train_split) if opts.train_split else None
    source_name = str(subset) if subset else f"{data}: the train split"
    if subset is not None or opts.devsim == "offline":
        clips = read_train_subset(data, subset) if subset else read_split(data, "train")
        if opts.devsim == "offline":
            require_device_a([c.device for c in clips], source_name)

    # Processes, device, threads.
    device = resolve_device(opts.device, local_rank)
    own_group = world > 1 and not torch.distributed.is_initialized()
    if own_group:
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend, timeout=timedelta(hours=6))  # caching may be slow
    torch.set_num_threads(opts.threads or default_threads())

    # Data: rank 0 builds the caches (progress bars), the others then map them in.
    cache_dir = Path(opts.cache_dir) if opts.cache_dir else default_cache_dir(data)
    with _rank0_first(world, master):
        train_set = load_split(
            data, "train", cache_dir, workers=opts.workers, progress=progress and master, subset=subset
        )
        if subset is not None:
            log(f"training subset {subset}: {len(train_set)} of the train split's clips")
        train_filenames = train_set.filenames  # fold1_train.csv order, before simulated clips
        val_set = load_split(data, opts.val_split, cache_dir, workers=opts.workers, progress=progress and master)
        irs: list[torch.Tensor] = []
        if opts.devsim != "none":
            ir_dir = Path(opts.ir_dir) if opts.ir_dir else default_ir_dir()
            ir_names, ir_arrays = augment.load_irs(ir_dir)
            log(f"device simulation ({opts.devsim}): {len(ir_arrays)} impulse responses from {ir_dir}")
            if opts.devsim == "offline":
                sim = offline_device_simulation(
                    train_set,
                    ir_names,
                    ir_arrays,
                    opts.devsim_irs,
                    opts.devsim_clips,
                    opts.seed,
                    cache_dir,
                    progress and master,
                    source_name=source_name,
                )
                log(f"device simulation (offline): {offline_summary(train_set, sim, opts.devsim_clips)}")
                train_set = concat(train_set, sim)
            else:
                irs = [torch.from_numpy(h).to(device) for h in ir_arrays]
    if len(set(val_set.labels.tolist()) - {-1}) == 0:
        raise TfsepError(f"{data}: the {opts.val_split} split has no labels; choose --val-split evaluate")
    labels = torch.from_numpy(train_set.labels)
    is_device_a = torch.tensor([d == "a" for d in train_set.devices])

    # Model, optimizer, teacher.
    torch.manual_seed(opts.seed)
    model = TFSepNet(width=opts.width, dropout=opts.dropout).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=opts.lr)
    start_epoch, best_acc, history = 0, -1.0, []
    if state is not None:
        model.load_state_dict(payload["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, best_acc, history = int(state["epoch"]), float(state["best_val_acc"]), list(state["history"])
        log(f"resuming {out / 'last.pt'} after epoch {start_epoch}")
    ddp_model = model
    if world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[local_rank] if device.type == "cuda" else None
        )
    teacher, teacher_logits = None, None
    if opts.teacher:
        tpath = Path(opts.teacher)
        if not tpath.is_file():
            raise TfsepError(f"{tpath}: no such teacher checkpoint or logits file")
        if is_logits_file(tpath):
            logits = load_teacher_logits(tpath, train_filenames)
            source = train_set.source if len(train_set.source) else np.arange(len(train_filenames))
            teacher_logits = torch.from_numpy(logits[source])  # simulated clips: their source's row
        else:
            teacher = load_checkpoint(tpath)[0].to(device).eval()
        log(f"knowledge distillation from {tpath} (lambda {opts.kd_lambda:g}, T {opts.kd_temperature:g})")

    if master:  # once everything is read: a bad clip or teacher leaves no empty run folder behind
        make_folder(out)

    # The loop.
    per_rank_batch = max(2, opts.batch_size // world)
    t_run = time.perf_counter()
    for epoch in range(start_epoch, opts.epochs):
        t0 = time.perf_counter()
        torch.manual_seed(opts.seed * 1_000_003 + epoch * 101 + rank)  # dropout: repeatable per epoch
        gen = torch.Generator().manual_seed(opts.seed * 1_000_003 + epoch * 101 + rank + 7)  # augmentations
        batches = epoch_batches(len(train_set), per_rank_batch, epoch, opts.seed, rank, world)
        loader = torch.utils.data.DataLoader(
            WaveBatches(train_set.waves),
            sampler=batches,
            batch_size=None,
            num_workers=opts.workers,
            pin_memory=device.type == "cuda",
        )
        ddp_model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        bar = _bar(len(batches), f"epoch {epoch + 1}/{opts.epochs}", progress and master)
        for step, (waves, rows) in enumerate(loader):
            lr = lr_at(epoch + step / len(batches), opts.lr, warmup, opts.epochs)
            for group in optimizer.param_groups:
                group["lr"] = lr
            # Waveform -> (device simulation) -> log-mel -> Freq-MixStyle -> Mixup.
            waves = waves.to(device, non_blocking=True)
            if irs:
                waves = augment.simulate_devices(waves, is_device_a[rows], irs, opts.devsim_p, gen)
            x = log_mel_torch(waves)
            x = augment.freq_mixstyle(x, opts.mixstyle_alpha, opts.mixstyle_p, gen)
            targets = F.one_hot(labels[rows], NUM_CLASSES).float().to(device)
            t_probs = None
            if teacher_logits is not None:
                t_probs = F.softmax(teacher_logits[rows].to(device) / opts.kd_temperature, dim=1)
            if opts.mixup_alpha > 0:
                x, targets, lam, perm = augment.mixup(x, targets, opts.mixup_alpha, gen)
                if t_probs is not None:
                    t_probs = lam[:, None] * t_probs + (1 - lam[:, None]) * t_probs[perm]
            if teacher is not None:
                with torch.no_grad():
                    t_probs = F.softmax(teacher(x) / opts.kd_temperature, dim=1)
            # Forward, loss, step.
            logits = ddp_model(x)
            loss = soft_cross_entropy(logits, targets)
            if t_probs is not None:
                loss = loss + opts.kd_lambda * kd_loss(logits, t_probs, opts.kd_temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            # Book-keeping.
            loss_sum += loss.item() * len(rows)
            correct += int((logits.argmax(1) == targets.argmax(1)).sum())
            seen += len(rows)
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2e}")
            bar.update(1)
        bar.close()
        train_seconds = time.perf_counter() - t0  # loading, augmenting, forward, backward (all ranks)
        if world > 1:
            totals = torch.tensor([loss_sum, correct, seen], dtype=torch.float64, device=device)
            torch.distributed.all_reduce(totals)
            loss_sum, correct, seen = totals.tolist()

        # Validation and checkpoints: rank 0 only; every write is atomic (temp file, rename).
        if master:
            val_logits = predict_logits(model, val_set, device)
            val_acc = float(np.mean(val_logits.argmax(1) == val_set.labels))
            val_loss = float(F.cross_entropy(torch.from_numpy(val_logits), torch.from_numpy(val_set.labels)))
            row = {
                "epoch": epoch + 1,
                "lr": f"{lr_at(epoch + 1, opts.lr, warmup, opts.epochs):.6g}",
                "train_loss": f"{loss_sum / max(seen, 1):.5f}",
                "train_acc": f"{correct / max(seen, 1):.5f}",
                "val_loss": f"{val_loss:.5f}",
                "val_acc": f"{val_acc:.5f}",
                "clips_per_s": f"{seen / train_seconds:.1f}",  # training only, all processes
                "seconds": f"{time.perf_counter() - t0:.2f}",
            }
            history.append(row)
            meta = {
                "epoch": epoch + 1,
                "val_acc": val_acc,
                "val_loss": val_loss,
                "val_split": opts.val_split,
                "data": str(data.resolve()),
                "synthetic_data": is_synthetic(data),
                "options": asdict(opts),
                "torch": str(torch.__version__),
            }
            if val_acc > best_acc:
                best_acc = val_acc
                save_checkpoint(model, out / "best.pt", DEFAULT_FRONTEND, meta)
            train_state = {
                "epoch": epoch + 1,
                "optimizer": optimizer.state_dict(),
                "best_val_acc": best_acc,
                "history": history,
                "options": asdict(opts),
                "torch_rng": torch.get_rng_state(),
            }
            save_checkpoint(model, out / "last.pt", DEFAULT_FRONTEND, meta, extra={"train_state": train_state})
            write_text_atomic(out / "metrics.csv", metrics_text(history))
            log(
                f"epoch {epoch + 1}/{opts.epochs}: loss {row['train_loss']} train acc {row['train_acc']} "
                f"val acc {row['val_acc']} (best {best_acc:.4f}) lr {row['lr']} [{row['seconds']} s]"
            )
    if world > 1:
        torch.distributed.barrier()
    if own_group:
        torch.distributed.destroy_process_group()
    seconds = time.perf_counter() - t_run
    last = history[-1] if history else {}
    return {
        "run_dir": str(out),
        "epochs": opts.epochs,
        "trained_epochs": opts.epochs - start_epoch,
        "best_val_acc": best_acc,
        "last_val_acc": float(last.get("val_acc", "nan")),
        "train_clips": len(train_set),
        "val_clips": len(val_set),
        "seconds": seconds,
        "synthetic_data": is_synthetic(data),
        "world_size": world,
        "width": opts.width,
    }


@contextlib.contextmanager
def _rank0_first(world: int, master: bool):
    """Rank 0 runs the block first (building caches); the others wait, then run it (cache hits)."""
    if world > 1 and not master:
        torch.distributed.barrier()
    yield
    if world > 1 and master:
        torch.distributed.barrier()


def _bar(total: int, desc: str, enabled: bool):
    return progress_bar(total, desc, "batch", enabled)
