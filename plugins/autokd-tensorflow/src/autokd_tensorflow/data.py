"""Training and evaluation data as batched ``tf.data.Dataset`` of ``(inputs, labels)``.

Accepted forms:

- a ``tf.data.Dataset``, used as it is: it must already be batched (as
  ``model.prepare_tf_dataset`` / ``Dataset.to_tf_dataset`` make them). Elements are
  ``(inputs, labels)``, ``(inputs,)``, or a mapping whose ``labels`` (or ``label``) key
  holds the labels;
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

import tensorflow as tf  # noqa: E402

__all__ = ["as_dataset", "split_batch", "first_inputs"]

LABEL_KEYS = ("labels", "label")


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
    if isinstance(data, tf.data.Dataset):
        return data
    if isinstance(data, Mapping):
        inputs, labels = split_batch(dict(data))
        if isinstance(inputs, Mapping) and len(inputs) == 1 and "inputs" in inputs:
            inputs = inputs["inputs"]
        slices = (inputs,) if labels is None else (inputs, labels)
    elif isinstance(data, tuple | list) and len(data) == 2:
        slices = (data[0], data[1])
    else:
        raise ConfigError(
            f"{field}: expected a batched tf.data.Dataset, a mapping of arrays or an (inputs, labels) pair, "
            f"got {type(data).__name__}"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ConfigError(f"batch_size: must be a positive integer, got {batch_size!r}")
    try:
        dataset = tf.data.Dataset.from_tensor_slices(slices)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{field}: the arrays cannot be sliced into examples: {exc}") from None
    return dataset.batch(batch_size)


def first_inputs(dataset: tf.data.Dataset) -> Any:
    """The inputs of the first batch (the example inputs evaluators time the model on)."""
    for batch in dataset.take(1):
        return split_batch(batch)[0]
    raise ConfigError("dataset: it is empty")
