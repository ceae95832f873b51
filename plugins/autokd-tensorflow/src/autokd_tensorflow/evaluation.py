"""The built-in evaluation of a Keras model, and the ``accuracy`` / ``eval_loss``
evaluators for TensorFlow models.

:func:`evaluate` runs the model once over the evaluation data and returns

- ``eval_loss``: the mean loss against the labels (sparse cross entropy from logits;
  mean squared error for float labels and a 1-wide head);
- ``accuracy`` (and ``eval_accuracy``): the share of argmax predictions equal to the
  labels, for classification heads;
- whatever ``compute_metrics(EvalPrediction(predictions, label_ids))`` returns, under
  its own names and with the ``eval_`` prefix transformers' trainers add.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from autokd import AutoKDError

from .criteria import task_loss
from .data import as_dataset, split_batch
from .features import call_model, logits_of

import numpy as np  # noqa: E402

__all__ = ["evaluate", "predict", "accuracy_evaluator", "eval_loss_evaluator"]


def predict(model: Any, data: Any, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray | None]:
    """The model's logits over ``data`` and the labels, as numpy arrays."""
    dataset = as_dataset(data, batch_size, "eval_dataset")
    all_logits, all_labels = [], []
    for batch in dataset:
        inputs, labels = split_batch(batch)
        all_logits.append(np.asarray(logits_of(call_model(model, inputs, training=False))))
        if labels is not None:
            all_labels.append(np.asarray(labels))
    if not all_logits:
        raise AutoKDError("eval_dataset: it is empty")
    labels = np.concatenate(all_labels) if len(all_labels) == len(all_logits) else None
    return np.concatenate(all_logits), labels


def evaluate(
    model: Any,
    data: Any,
    compute_metrics: Callable | None = None,
    batch_size: int = 32,
) -> dict[str, float]:
    """``eval_loss``, ``accuracy`` and the metrics of ``compute_metrics`` over ``data``."""
    logits, labels = predict(model, data, batch_size)
    metrics: dict[str, float] = {}
    if labels is not None:
        metrics["eval_loss"] = float(task_loss(logits, labels))
        if logits.shape[-1] > 1 and labels.ndim == logits.ndim - 1 and np.issubdtype(labels.dtype, np.integer):
            accuracy = float(np.mean(np.argmax(logits, axis=-1) == labels))
            metrics["accuracy"] = metrics["eval_accuracy"] = accuracy
    if compute_metrics is not None:
        from transformers import EvalPrediction

        extra = compute_metrics(EvalPrediction(predictions=logits, label_ids=labels))
        if not isinstance(extra, Mapping):
            raise AutoKDError(f"compute_metrics must return a dict of metrics, got {type(extra).__name__}")
        for key, value in extra.items():
            value = float(value)
            metrics[key] = value
            if not key.startswith("eval_"):
                metrics[f"eval_{key}"] = value
    return metrics


def _evaluate_for(metric: str, model: Any, context: Any) -> float:
    if context.eval_data is None:
        raise AutoKDError(
            f"metric {metric!r}: no evaluation data to compute it on: give eval_dataset (TFOptimization) or "
            f"data.eval (autokd run), or return {metric!r} from your eval_func"
        )
    batch_size = int((context.options or {}).get("batch_size", 32))
    metrics = evaluate(model, context.eval_data, batch_size=batch_size)
    if metric not in metrics:
        raise AutoKDError(f"metric {metric!r}: the evaluation data has no labels it can be computed from")
    return metrics[metric]


def accuracy_evaluator(model: Any, context: Any) -> float:
    """Share of correct argmax predictions over ``context.eval_data``."""
    return _evaluate_for("accuracy", model, context)


def eval_loss_evaluator(model: Any, context: Any) -> float:
    """Mean loss against the labels over ``context.eval_data``."""
    return _evaluate_for("eval_loss", model, context)
