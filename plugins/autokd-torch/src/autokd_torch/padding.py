"""Padded positions of a batch, and the per-token features that have them.

A collator that pads each batch to its longest example (dynamic padding) gives the same
example a different padded length in different batches. The teacher's outputs at the
real tokens do not depend on that length (the attention mask hides the padding), but
its outputs *at* the padded positions do, and there is a different number of them. So
per-token features are handled by their real positions only:

- a *per-token* feature has one or more dimensions that follow the batch's padded
  length ``L`` (hidden states ``(B, L, D)``: dim 1; attention maps ``(B, H, L, L)``:
  dims 2 and 3; token logits ``(B, L, C)``: dim 1). Which dimensions those are is
  measured, not guessed from the shape (:func:`autokd_torch.teacher` runs the teacher on
  one example shortened by a token and sees which dimensions shrink), so a pooled
  ``(B, 384)`` feature is not mistaken for a per-token one in a batch padded to 384;
- the teacher's per-token features are zeroed at padded positions, in the live path as
  well as when rebuilt from the teacher-output cache (issue #8), so that both are equal
  number for number, whatever batch an example is in; the criteria zero the student's
  features at the same positions;
- a loss sees only the real positions (issue #20, :func:`real_positions`): a per-token
  feature is cut to the batch's longest example and its first per-token dimension is
  gathered at the real tokens, so ``(B, L, D)`` hidden states become ``(N_real, D)`` and
  ``(B, H, L, L)`` attention maps ``(N_real, H, L_longest)``. A loss averaging over all
  but the last dimension then averages over the real tokens (× heads), as TextBrewer's
  masked losses and Hugging Face's ``ignore_index=-100`` do, and the same batch padded
  to any length gives the same loss.

Only right padding is supported (``attention_mask`` rows of ones, then zeros), which is
what Hugging Face collators of encoder models produce.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import torch

__all__ = [
    "TokenPositions",
    "token_positions",
    "zero_padded",
    "real_positions",
    "trim_row",
    "repad_rows",
    "slice_rows",
    "shorten",
]


@attrs.frozen
class TokenPositions:
    """Where a batch's real tokens are.

    :ivar seq_len: the padded length ``L``.
    :ivar lengths: each example's number of real tokens.
    :ivar mask: ``(B, L)`` bool, True at real tokens.
    :ivar right_padded: whether every row is its real tokens followed by padding.
    """

    seq_len: int
    lengths: tuple[int, ...]
    mask: torch.Tensor = attrs.field(eq=False)
    right_padded: bool = True

    @property
    def padded(self) -> bool:
        """Whether any example is shorter than ``seq_len``."""
        return any(n < self.seq_len for n in self.lengths)


def token_positions(inputs: Any) -> TokenPositions | None:
    """The token positions of a dict batch, from its ``attention_mask`` (or, without one,
    its ``input_ids``: every position real); None for other inputs."""
    if not isinstance(inputs, Mapping):
        return None
    mask = inputs.get("attention_mask")
    if isinstance(mask, torch.Tensor) and mask.dim() == 2:
        real = mask != 0
        lengths = real.sum(1)
        expected = torch.arange(real.shape[1], device=real.device).unsqueeze(0) < lengths.unsqueeze(1)
        return TokenPositions(int(real.shape[1]), tuple(lengths.tolist()), real, bool(torch.equal(real, expected)))
    ids = inputs.get("input_ids")
    if isinstance(ids, torch.Tensor) and ids.dim() == 2:
        batch, length = ids.shape
        mask = torch.ones(batch, length, dtype=torch.bool, device=ids.device)
        return TokenPositions(int(length), (int(length),) * int(batch), mask)
    return None


def _keep_mask(mask: torch.Tensor, ndim: int, token_dims: Sequence[int]) -> torch.Tensor:
    keep = None
    for d in token_dims:
        shape = [mask.shape[0]] + [1] * (ndim - 1)
        shape[d] = mask.shape[1]
        m = mask.view(shape)
        keep = m if keep is None else keep & m
    return keep


def zero_padded(feature: torch.Tensor, mask: torch.Tensor, token_dims: Sequence[int]) -> torch.Tensor:
    """``feature`` with every element at a padded position of one of its ``token_dims``
    set to zero (``mask``: ``(B, L)``, True at real tokens)."""
    if not token_dims or bool(mask.all()):
        return feature
    keep = _keep_mask(mask.to(feature.device), feature.dim(), token_dims)
    return feature.masked_fill(~keep, 0)


def real_positions(feature: torch.Tensor, mask: torch.Tensor, token_dims: Sequence[int]) -> torch.Tensor:
    """``feature`` at the real positions of its batch (``mask``: ``(B, L)``, True at real
    tokens; ``token_dims``: the feature's dimensions that follow ``L``).

    Every token dimension is cut to the longest example (right padding), then the batch
    dimension and the first token dimension are merged into one of the real positions:
    ``(B, L, D) -> (N_real, D)``, ``(B, H, L, L) -> (N_real, H, L_longest)`` (query rows;
    keys past an example's end stay zero, as the attention mask made them). A feature
    without token dimensions is returned as it is.
    """
    if not token_dims:
        return feature
    mask = mask.to(feature.device)
    longest = int(mask.sum(1).max())
    if not bool(mask[:, longest:].any()):  # right padded: drop the columns no example reaches
        index = [slice(None)] * feature.dim()
        for d in token_dims:
            index[d] = slice(0, longest)
        feature = feature[tuple(index)]
        mask = mask[:, :longest]
    return feature.movedim(token_dims[0], 1)[mask]


def trim_row(row: torch.Tensor, token_dims: Sequence[int], length: int) -> torch.Tensor:
    """One example's feature (``row``: a batch feature without its batch dim) cut to its
    ``length`` real tokens along the batch's ``token_dims``."""
    if not token_dims:
        return row
    index = [slice(None)] * row.dim()
    for d in token_dims:
        index[d - 1] = slice(0, length)
    return row[tuple(index)]


def repad_rows(
    rows: Sequence[torch.Tensor],
    token_dims: Sequence[int],
    seq_len: int | None,
    dtype: torch.dtype,
    device: torch.device | None = None,
) -> torch.Tensor:
    """A batch feature from examples' rows, zero-padded to ``seq_len`` along
    ``token_dims`` (the inverse of :func:`trim_row` after :func:`zero_padded`)."""
    first = rows[0]
    shape = list(first.shape)
    for d in token_dims:
        shape[d - 1] = seq_len
    if token_dims:
        out = torch.zeros([len(rows)] + shape, dtype=dtype)
        for i, row in enumerate(rows):
            out[i][tuple(slice(0, n) for n in row.shape)].copy_(row)
    else:
        out = torch.empty([len(rows)] + shape, dtype=dtype)
        for i, row in enumerate(rows):
            out[i].copy_(row)
    return out if device is None else out.to(device)


def slice_rows(inputs: Any, rows: Sequence[int], batch_size: int) -> Any:
    """The examples ``rows`` of a batch's inputs (tensors with ``batch_size`` rows are
    indexed, anything else kept)."""
    if isinstance(inputs, torch.Tensor):
        if inputs.dim() > 0 and inputs.shape[0] == batch_size:
            return inputs[torch.as_tensor(list(rows), dtype=torch.long, device=inputs.device)]
        return inputs
    if isinstance(inputs, Mapping):
        return {k: slice_rows(v, rows, batch_size) for k, v in inputs.items()}
    if isinstance(inputs, tuple | list):
        return type(inputs)(slice_rows(v, rows, batch_size) for v in inputs)
    return inputs


def shorten(inputs: Mapping[str, Any], seq_len: int) -> dict[str, Any]:
    """A dict batch with its last token position dropped (tensors whose dim 1 is
    ``seq_len``): running the teacher on it shows which output dimensions follow the
    padded length."""
    out = {}
    for key, value in inputs.items():
        if isinstance(value, torch.Tensor) and value.dim() >= 2 and value.shape[1] == seq_len:
            value = value[:, : seq_len - 1]
        out[key] = value
    return out
