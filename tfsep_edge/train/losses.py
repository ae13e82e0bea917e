"""The training losses: cross-entropy against probability rows, and knowledge distillation.

Knowledge distillation (the report's section 2.4): loss = CE(student, labels) + lambda *
KL(p_teacher^T || p_student^T) with p^T = softmax(logits / T), the KL averaged over the batch,
defaults lambda 20, T 5. The KL is NOT multiplied by T^2: at temperature T its gradient shrinks
by about 1/T^2, and the report's lambda = 20 (close to T^2 = 25) plays that role, giving the
distillation term about the weight of the label term (20 / 25 = 0.8). Multiplying by T^2 as well
would weight it ~500x. train/loop.py and INT8 fine-tuning (quant/finetune.py) both use these.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against probability rows (Mixup's mixed one-hot labels)."""
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def softened(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """p^T = softmax(logits / T): a teacher's targets for kd_loss."""
    return F.softmax(logits / temperature, dim=1)


def kd_loss(student_logits: torch.Tensor, teacher_probs_t: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(p_teacher^T || p_student^T), batch mean, not scaled by T^2 (see the module doc)."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    return F.kl_div(log_p_student, teacher_probs_t, reduction="batchmean")
