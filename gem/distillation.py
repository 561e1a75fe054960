r"""Adaptive knowledge preservation loss (weighted distillation from a general model).

GEM specialises to domains without forgetting what the general (teacher)
model knew by mixing, per sample, the task loss on labels with a distillation
term that pulls the student's softened distribution towards the teacher's.
"Adaptive" means the mix is chosen per sample from its domain (and
optionally from how much the teacher can be trusted on that sample).

For a batch of N samples with student logits z^s_i, teacher logits z^t_i,
labels y_i, domains d_i:

    p^s_i = softmax(z^s_i / T)        p^t_i = softmax(z^t_i / T)
    CE_i  = -log softmax(z^s_i)[y_i]                          (temperature 1)
    KL_i  = T^2 * sum_c p^t_ic (log p^t_ic - log p^s_ic)      (T^2 keeps gradient scale)
    a_i   = clip(alpha * omega[d_i] * c_i, 0, 1)
            c_i = softmax(z^t_i)[y_i] if confidence_weighting else 1
    l_i   = (1 - a_i) * CE_i + a_i * KL_i
    L     = sum_i w_i l_i / sum_i w_i

``omega`` are per-domain preservation weights (default 1 for every domain:
e.g. lower it for the domain being specialised, raise it for general domains
whose knowledge must be kept); ``w_i`` are per-sample weights (default 1).
Without a teacher, a_i = 0 and L is the (weighted) cross-entropy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class LossParts:
    """The loss and its batch-mean components, for logging."""

    loss: torch.Tensor
    ce: torch.Tensor
    kl: torch.Tensor
    mean_alpha: torch.Tensor


def knowledge_preservation_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor | None = None,
    *,
    temperature: float = 2.0,
    alpha: float = 0.5,
    domain_ids: torch.Tensor | None = None,
    domain_weights: Sequence[float] | torch.Tensor | None = None,
    sample_weights: torch.Tensor | None = None,
    confidence_weighting: bool = False,
) -> LossParts:
    """Compute the loss defined in the module docstring.

    Shapes: logits ``[N, C]``, labels/domain_ids int64 ``[N]``, sample_weights
    ``[N]``, domain_weights ``[num_domains]``. The teacher's logits are
    detached (it is frozen by definition).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    n = student_logits.shape[0]
    ce = F.cross_entropy(student_logits, labels, reduction="none")
    w = (
        torch.ones(n, dtype=student_logits.dtype, device=student_logits.device)
        if sample_weights is None
        else sample_weights.to(student_logits.dtype)
    )
    if teacher_logits is None:
        kl = torch.zeros_like(ce)
        a = torch.zeros_like(ce)
    else:
        t = teacher_logits.detach()
        log_ps = F.log_softmax(student_logits / temperature, dim=-1)
        log_pt = F.log_softmax(t / temperature, dim=-1)
        kl = (temperature**2) * (log_pt.exp() * (log_pt - log_ps)).sum(-1)
        a = torch.full_like(ce, alpha)
        if domain_weights is not None:
            if domain_ids is None:
                raise ValueError("domain_weights given without domain_ids")
            omega = torch.as_tensor(domain_weights, dtype=ce.dtype, device=ce.device)
            a = a * omega[domain_ids]
        if confidence_weighting:
            a = a * F.softmax(t, dim=-1).gather(1, labels.unsqueeze(1)).squeeze(1)
        a = a.clamp(0.0, 1.0)
    per_sample = (1.0 - a) * ce + a * kl
    loss = (w * per_sample).sum() / w.sum().clamp(min=1e-12)
    return LossParts(loss=loss, ce=ce.mean(), kl=kl.mean(), mean_alpha=a.mean())
