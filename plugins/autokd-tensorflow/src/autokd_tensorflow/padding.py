"""Padded batches in TensorFlow: the per-token features a loss sees are those of the real
tokens only, by the core's rule (:mod:`autokd.distill`, issue #20), as in autokd-torch.

A batch padded to its longest example (dynamic padding) gives an example a different
padded length in different batches. Which output dimensions follow that length is
measured once per criterion (:func:`measure_token_dims`: the teacher on one example at
``L`` and ``L - 1`` tokens); then :func:`real_positions` zeroes a feature at the padded
positions of those dimensions, cuts them to the batch's last real position, and merges
the batch dimension with the first of them into one of the real positions::

    hidden states   (B, L, D)    -> (N_real, D)
    attention maps  (B, H, L, L) -> (N_real, H, L_longest)     (real query rows)
    token logits    (B, L, C)    -> (N_real, C)

so a loss averaging over all but the last dimension averages over the real tokens, and
the same batch padded to any length gives the same loss. It works eagerly and inside a
``tf.function`` (the number of real positions is dynamic).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from autokd.distill import token_dims

from . import _tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

import tensorflow as tf  # noqa: E402

log = logging.getLogger(__name__)

__all__ = ["token_mask", "real_positions", "shorten", "first_example", "measure_token_dims"]


def token_mask(inputs: Any):
    """``(B, L)`` bool, True at the real tokens of a dict batch (from its
    ``attention_mask``; without one, every ``input_ids`` position is real); None for other
    inputs."""
    if not isinstance(inputs, Mapping):
        return None
    mask = inputs.get("attention_mask")
    if mask is not None:
        mask = tf.convert_to_tensor(mask)
        if mask.shape.rank == 2:
            return mask if mask.dtype == tf.bool else tf.not_equal(mask, tf.zeros_like(mask))
    ids = inputs.get("input_ids")
    if ids is not None:
        ids = tf.convert_to_tensor(ids)
        if ids.shape.rank == 2:
            return tf.ones_like(ids, dtype=tf.bool)
    return None


def real_positions(feature, mask, dims: Sequence[int]):
    """``feature`` at the real positions of its batch (see the module docs); a feature
    without per-token ``dims`` is returned as it is."""
    if not dims:
        return feature
    feature = tf.convert_to_tensor(feature)
    mask = tf.cast(mask, tf.bool)
    length = tf.shape(mask)[1]
    positions = tf.range(1, length + 1)
    # the batch's last real position: its longest example, when padded on the right
    last = tf.reduce_max(tf.where(mask, positions[tf.newaxis, :], tf.zeros_like(positions)[tf.newaxis, :]))
    mask = mask[:, :last]
    rank = feature.shape.rank
    for d in dims:
        begin = [0] * rank
        size = [-1] * rank
        size[d] = last
        feature = tf.slice(feature, begin, size)
        shape = [-1] + [1] * (rank - 1)
        shape[d] = last
        keep = tf.reshape(tf.cast(mask, feature.dtype), shape)
        feature = feature * keep
    first = dims[0]
    order = [0, first] + [d for d in range(1, rank) if d != first]
    return tf.boolean_mask(tf.transpose(feature, order), mask)


def shorten(inputs: Mapping[str, Any], seq_len: int) -> dict[str, Any]:
    """A dict batch without its last token position (tensors whose dim 1 is ``seq_len``)."""
    out = {}
    for key, value in inputs.items():
        if value is not None and hasattr(value, "shape") and len(value.shape) >= 2 and value.shape[1] == seq_len:
            value = value[:, : seq_len - 1]
        out[key] = value
    return out


def first_example(inputs: Mapping[str, Any], batch: int) -> dict[str, Any]:
    """The batch's first example (tensors with ``batch`` rows cut to one)."""
    return {
        k: v[:1] if v is not None and hasattr(v, "shape") and len(v.shape) and v.shape[0] == batch else v
        for k, v in inputs.items()
    }


def measure_token_dims(run: Callable[[Any], Sequence], inputs: Any) -> list[tuple[int, ...]] | None:
    """For each output of ``run(inputs)`` (a list of features), its dimensions that follow
    the padded length (:func:`autokd.distill.token_dims`), measured on the first example
    of ``inputs`` at its padded length and one token shorter; an output whose shape
    changes some other way gets ``()`` (used as it is). None when ``inputs`` is not a dict
    batch of at least two tokens (nothing to measure: try a later batch)."""
    mask = token_mask(inputs)
    if mask is None or mask.shape[1] is None or mask.shape[1] < 2:
        return None
    seq_len = int(mask.shape[1])
    one = first_example(dict(inputs), int(mask.shape[0]))
    full = run(one)
    try:
        short = run(shorten(one, seq_len))
    except Exception as exc:  # a model that takes one length only: its features are used as they are
        log.info("cannot run the teacher on a shortened example (%s): features are used with their padding", exc)
        return [()] * len(full)
    dims = []
    for a, b in zip(full, short, strict=True):
        measured = token_dims(tuple(a.shape), tuple(b.shape), seq_len)
        dims.append(measured or ())
    return dims
