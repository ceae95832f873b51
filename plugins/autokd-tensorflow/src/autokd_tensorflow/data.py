"""Training and evaluation data as batched ``tf.data.Dataset`` of ``(inputs, labels)``.

Accepted forms:

- a ``tf.data.Dataset``. A batched one (as ``model.prepare_tf_dataset`` /
  ``Dataset.to_tf_dataset`` make them) is used as it is; an unbatched one (elements
  of single examples, as Hugging Face's TF examples hand them over with the batch size
  in ``per_device_*_batch_size``) is batched here by the batch size of its use
  (``padded_batch`` when its examples differ in length). Elements are ``(inputs,
  labels)``, ``(inputs,)``, or a mapping whose ``labels`` (or ``label``) key holds the
  labels;
- a mapping of arrays (``{'input_ids': ..., 'attention_mask': ..., 'labels': ...}``),
  batched here;
- a tuple ``(inputs, labels)`` of arrays (e.g. scikit-learn's ``X, y``), batched here;
- a callable returning one of these.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autokd import ConfigError

from . import _tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

# isort: split
import tensorflow as tf

__all__ = ["array_slices", "as_dataset", "first_inputs", "is_unbatched", "split_batch"]

LABEL_KEYS = ("labels", "label")
# Inputs whose examples are 1-D (token ids): a batch of them is 2-D.
TOKEN_KEYS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")


def split_batch(batch: Any) -> tuple[Any, Any]:
    """``(inputs, labels)`` of one batch; labels are None when it has none."""
    if isinstance(batch, tuple):
        if len(batch) == 2:
            return batch[0], batch[1]
        if len(batch) == 1:
            return batch[0], None
        if len(batch) == 3:  # (inputs, labels, sample_weight) as Keras takes them
            return batch[0], batch[1]
    if isinstance(batch, Mapping):
        for key in LABEL_KEYS:
            if key in batch:
                inputs = {k: v for k, v in batch.items() if k != key}
                return inputs, batch[key]
    return batch, None


def as_dataset(data: Any, batch_size: int, field: str = "dataset") -> tf.data.Dataset:
    """A batched ``tf.data.Dataset`` of ``(inputs, labels)`` from any accepted form."""
    if callable(data) and not isinstance(data, tf.data.Dataset):
        data = data()
    if data is None:
        raise ConfigError(f"{field}: no data given")
    _check_batch_size(batch_size)
    if isinstance(data, tf.data.Dataset):
        if not is_unbatched(data):
            return data
        specs = tf.nest.flatten(data.element_spec)
        if all(getattr(spec, "shape", tf.TensorShape(None)).is_fully_defined() for spec in specs):
            return data.batch(batch_size)
        return data.padded_batch(batch_size)
    arrays = array_slices(data)
    if arrays is None:
        raise ConfigError(
            f"{field}: expected a tf.data.Dataset, a mapping of arrays or an (inputs, labels) pair, "
            f"got {type(data).__name__}"
        )
    inputs, labels = arrays
    slices = (inputs,) if labels is None else (inputs, labels)
    try:
        dataset = tf.data.Dataset.from_tensor_slices(slices)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{field}: the arrays cannot be sliced into examples: {exc}") from None
    return dataset.batch(batch_size)


def array_slices(data: Any) -> tuple[Any, Any] | None:
    """``(inputs, labels)`` of data given as arrays (a mapping of arrays, or an
    ``(inputs, labels)`` pair), whose examples are the arrays' rows; None for other
    data (a ``tf.data.Dataset``). Labels are None when the mapping has none."""
    if isinstance(data, Mapping):
        inputs, labels = split_batch(dict(data))
        if isinstance(inputs, Mapping) and len(inputs) == 1 and "inputs" in inputs:
            inputs = inputs["inputs"]
        return inputs, labels
    if isinstance(data, tuple | list) and len(data) == 2 and not isinstance(data[0], tf.data.Dataset):
        return data[0], data[1]
    return None


def _check_batch_size(batch_size: Any) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ConfigError(f"batch_size: must be a positive integer, got {batch_size!r}")


def is_unbatched(dataset: tf.data.Dataset) -> bool:
    """Whether the dataset's elements are single examples: some part of it is a scalar
    (a label), or its token ids are 1-D. (A batch has a batch dimension everywhere.)"""
    spec = dataset.element_spec
    for part in tf.nest.flatten(spec):
        rank = getattr(getattr(part, "shape", None), "rank", None)
        if rank == 0:
            return True
    inputs = spec[0] if isinstance(spec, tuple) and spec else spec
    if isinstance(inputs, Mapping):
        for key in TOKEN_KEYS:
            part = inputs.get(key)
            if part is not None and getattr(part.shape, "rank", None) == 1:
                return True
    return False


def first_inputs(dataset: tf.data.Dataset) -> Any:
    """The inputs of the first batch (the example inputs evaluators time the model on)."""
    for batch in dataset.take(1):
        return split_batch(batch)[0]
    raise ConfigError("dataset: it is empty")
