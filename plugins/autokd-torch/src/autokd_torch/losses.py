"""Feature distances used by name in ``loss_types``: ``loss_fn(student, teacher) -> scalar``.

These formulas are the contract the TensorFlow backend mirrors; change them in both.
For inputs of shape ``(..., C)`` with ``N = numel / C`` positions:

- ``KL``:  ``sum(p_t * (log p_t - log p_s)) / N`` where ``p_t = softmax(teacher)`` and
  ``log p_s = log_softmax(student)`` over the last dimension: KL(teacher || student),
  averaged over every other position (for 2-D inputs this is PyTorch's ``batchmean``).
- ``CE``:  ``-sum(p_t * log p_s) / N``: soft-target cross entropy, same averaging.
- ``MSE``: ``mean((student - teacher) ** 2)`` over all elements.
- ``L1``:  ``mean(|student - teacher|)`` over all elements.

``KL`` and ``CE`` always apply the softmax, also to features that are already
probabilities (attention maps): both frameworks then agree, and the distance is still
zero exactly when the two inputs are equal.

On a padded batch the criteria call every loss (these and any plugin's) with the
per-token features at the real positions only (:func:`autokd_torch.padding.real_positions`:
``(N_real, D)`` hidden states, ``(N_real, H, L)`` attention maps, ``(N_real, C)`` token
logits), so ``N`` above counts real positions and ``MSE`` averages over real tokens ×
units: the masked mean of TextBrewer's ``hid_mse_loss`` and of ``ignore_index=-100``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from autokd import registry

__all__ = ["kl_divergence", "soft_cross_entropy", "mse", "l1", "get_loss", "BUILTIN_LOSSES"]


def _check_pair(student: torch.Tensor, teacher: torch.Tensor, name: str) -> None:
    if not isinstance(student, torch.Tensor) or not isinstance(teacher, torch.Tensor):
        raise TypeError(f"{name} loss compares two tensors, got {type(student).__name__} and {type(teacher).__name__}")
    if student.shape != teacher.shape:
        raise ValueError(
            f"{name} loss needs features of the same shape, got student {tuple(student.shape)} and "
            f"teacher {tuple(teacher.shape)}"
        )


def _positions(x: torch.Tensor, name: str) -> int:
    if x.dim() == 0:
        raise ValueError(f"{name} loss compares distributions over the last dimension; got a 0-d tensor")
    return max(x.numel() // x.shape[-1], 1)


def kl_divergence(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """KL(softmax(teacher) || softmax(student)) over the last dimension, summed there and
    averaged over every other position (``batchmean`` for 2-D inputs)."""
    _check_pair(student, teacher, "KL")
    log_p_s = F.log_softmax(student, dim=-1)
    log_p_t = F.log_softmax(teacher, dim=-1)
    return F.kl_div(log_p_s, log_p_t, reduction="sum", log_target=True) / _positions(student, "KL")


def soft_cross_entropy(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Cross entropy of softmax(student) against the soft targets softmax(teacher), over
    the last dimension, averaged over every other position."""
    _check_pair(student, teacher, "CE")
    log_p_s = F.log_softmax(student, dim=-1)
    p_t = F.softmax(teacher, dim=-1)
    return -(p_t * log_p_s).sum() / _positions(student, "CE")


def mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared difference over all elements."""
    _check_pair(student, teacher, "MSE")
    return F.mse_loss(student, teacher)


def l1(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference over all elements."""
    _check_pair(student, teacher, "L1")
    return F.l1_loss(student, teacher)


BUILTIN_LOSSES = {"KL": kl_divergence, "CE": soft_cross_entropy, "MSE": mse, "L1": l1}


def get_loss(name: str, field: str = "loss_types"):
    """The registered PyTorch loss ``name`` (built-in or from another plugin)."""
    try:
        return registry().losses.get(name, "pytorch")
    except LookupError as exc:
        raise type(exc)(f"{field}: {exc}") from None
