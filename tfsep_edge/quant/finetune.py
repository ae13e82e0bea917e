"""INT8 fine-tuning (quantization-aware training from the PTQ result), for when PTQ is not enough.

Starts from the calibrated INT8 model's quantization points: its fake-quant twin (quant/twin.py:
float ops with fake quantization at exactly those scales and zero points) is trained with the
straight-through estimator (PyTorch's fake_quantize ops pass the gradient inside the range).
Only the quantized convs' weights and biases move (and, in an integer model, the AdaResNorms'
gamma, rho and beta, trained through their exact integer ops); every scale and zero point stays,
BatchNorm stays frozen (folded into the convs by fusion), and the float islands (AdaResNorm, the
float stem) keep their float model's values, so the ONNX builders and the export rule see the same
model structure as after PTQ. The float model is the teacher: loss = lambda * KL(p_float^T ||
p_int8^T) (train/losses.py's KD term; T = 1, no label term unless label_weight > 0). The trained
weights are then rounded onto the same per-channel grids and written back into a copy of the
INT8 model.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from tfsep_edge.core.config import NUM_CLASSES
from tfsep_edge.core.errors import TfsepError
from tfsep_edge.datasets.cache import load_split
from tfsep_edge.datasets.tau import is_tau_layout
from tfsep_edge.quant.artifact import QuantizedArtifact
from tfsep_edge.quant.engine import engine_scope, known_warnings_silenced
from tfsep_edge.quant.integer_norm import IntegerNorm
from tfsep_edge.quant.twin import FakeQuantConv, qconv_of
from tfsep_edge.signal.frontend import log_mel_torch
from tfsep_edge.train.batches import epoch_batches
from tfsep_edge.train.losses import kd_loss, soft_cross_entropy, softened


@dataclass(frozen=True)
class FinetuneOptions:
    epochs: int = 3
    lr: float = 1e-4  # small: the weights start on their int8 grids and should move a few steps
    batch_size: int = 32
    # Fidelity to the float model is the goal, so its outputs are the only target by default:
    # with train's label loss added, the INT8 model went on learning the labels and away from its
    # teacher (docs/quantization.md, "INT8 fine-tuning").
    kd_lambda: float = 1.0
    kd_temperature: float = 1.0
    label_weight: float = 0.0  # > 0 adds label_weight * CE(labels)
    seed: int = 0

    def check(self) -> None:
        if self.epochs < 1:
            raise TfsepError(f"--finetune-epochs {self.epochs}: must be at least 1 (leave out --finetune for PTQ only)")


def check_finetune_data(data: Path) -> None:
    if not Path(data).exists():
        raise TfsepError(f"--finetune {data}: no such data folder")
    if not is_tau_layout(data):
        raise TfsepError(
            f"--finetune {data}: needs a labelled TAU22 data folder (meta.csv, evaluation_setup/fold1_train.csv)"
        )


def trainable_twin(artifact: QuantizedArtifact) -> torch.nn.Module:
    """The fake-quant twin with only the quantized convs' weights and biases trainable."""
    fq = artifact.fake_quant_model()
    for p in fq.parameters():
        p.requires_grad_(False)
    for m in fq.modules():
        if isinstance(m, FakeQuantConv):
            m.weight.requires_grad_(True)
            if m.bias is not None:
                m.bias.requires_grad_(True)
        elif isinstance(m, IntegerNorm):  # an integer model's norms: trained through their exact integers
            for p in (m.rho, m.gamma, m.beta):
                p.requires_grad_(True)
    return fq.eval()  # eval: no dropout; BatchNorm is folded and frozen


def write_back(artifact: QuantizedArtifact, fq: torch.nn.Module) -> torch.nn.Module:
    """A copy of the INT8 model holding the twin's weights, rounded onto the same grids."""
    int8 = copy.deepcopy(artifact.int8_model)
    with engine_scope(artifact.options.engine), known_warnings_silenced():
        for name, m in fq.named_modules():
            if isinstance(m, IntegerNorm):  # the INT8 model's float island holds what the twin reads
                norm = int8.get_submodule(name).body
                with torch.no_grad():
                    for src, dst in ((m.rho, norm.rho), (m.gamma, norm.gamma), (m.beta, norm.beta)):
                        dst.copy_(src.detach().reshape(dst.shape))
            if not isinstance(m, FakeQuantConv):
                continue
            qconv, _ = qconv_of(int8.get_submodule(name.rsplit(".", 1)[0]))
            w = m.weight.detach()
            qw = torch.quantize_per_channel(w, m.w_scale.double(), m.w_zero_point.long(), 0, torch.qint8)
            qconv.set_weight_bias(qw, None if m.bias is None else m.grid_bias().detach().clone())
    return int8


def finetune(
    artifact: QuantizedArtifact,
    data: Path,
    options: FinetuneOptions,
    subset: Path | None = None,
    log: Callable[[str], None] = print,
) -> tuple[QuantizedArtifact, dict]:
    """Fine-tune `artifact` on DATA's train split (or `subset` of it) -> (new artifact, summary)."""
    options.check()
    check_finetune_data(data)
    train = load_split(data, "train", progress=False, subset=subset)
    labels = torch.from_numpy(train.labels)
    teacher = artifact.float_model.eval()
    fq = trainable_twin(artifact)
    params = [p for p in fq.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=options.lr)
    torch.manual_seed(options.seed)
    steps_total = options.epochs * max(1, math.ceil(len(train) / options.batch_size))
    step, loss_sum = 0, 0.0
    for epoch in range(options.epochs):
        loss_sum, seen = 0.0, 0
        for rows in epoch_batches(len(train), options.batch_size, epoch, options.seed):
            x = log_mel_torch(torch.from_numpy(train.waves.get(rows)), artifact.frontend)
            for group in optimizer.param_groups:  # cosine to 0: the last steps settle on the grid
                group["lr"] = options.lr * 0.5 * (1 + math.cos(math.pi * step / steps_total))
            with torch.no_grad():
                t_probs = softened(teacher(x), options.kd_temperature)
            logits = fq(x)
            targets = F.one_hot(labels[rows], NUM_CLASSES).float()
            loss = options.label_weight * soft_cross_entropy(logits, targets) + options.kd_lambda * kd_loss(
                logits, t_probs, options.kd_temperature
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum, seen, step = loss_sum + loss.item() * len(rows), seen + len(rows), step + 1
        log(f"INT8 fine-tuning epoch {epoch + 1}/{options.epochs}: loss {loss_sum / max(seen, 1):.4f}")
    int8 = write_back(artifact, fq)
    summary = {
        "data": str(Path(data)),
        "subset": str(subset) if subset else None,
        "clips": len(train),
        "epochs": options.epochs,
        "lr": options.lr,
        "batch_size": options.batch_size,
        "kd_lambda": options.kd_lambda,
        "kd_temperature": options.kd_temperature,
        "label_weight": options.label_weight,
        "final_epoch_loss": round(loss_sum / max(seen, 1), 5),
    }
    info = {**artifact.info, "finetune": summary}
    return QuantizedArtifact(int8, artifact.float_model, artifact.options, info), summary
