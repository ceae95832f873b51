"""What evaluators receive, and the known directions of common metrics."""

from __future__ import annotations

import math
import numbers
from typing import Any

import attrs

__all__ = ["EvalContext", "known_direction", "metric_value"]


def metric_value(value: Any) -> float | None:
    """The one rule for what counts as a metric value: a finite real number (int, float,
    ``Decimal``, ``Fraction``, numpy scalars) as a float; anything else, including
    booleans and numeric strings, is None. Ranking, constraints and the check that fails
    a trial with a non-numeric objective all use it (issue #13: a ``Decimal`` recorded
    ``ok`` was never ranked)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Number):
        item = getattr(value, "item", None)  # torch / tensorflow 0-d tensors
        if not callable(item) or isinstance(value, str | bytes):
            return None
        try:
            value = item()
        except (TypeError, ValueError, RuntimeError):
            return None
        if isinstance(value, bool) or not isinstance(value, numbers.Number):
            return None
    try:
        number = float(value)  # type: ignore[arg-type]  # a numbers.Number (complex raises TypeError)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


@attrs.frozen
class EvalContext:
    """Context passed to an evaluator: ``evaluator(model, context) -> float``.

    :ivar example_inputs: a batch the model can be called with: a tensor, a tuple of
        positional arguments, or a mapping of keyword arguments (or None).
    :ivar eval_data: the evaluation data, or None.
    :ivar options: this metric's options from the config (``evaluation.<metric>``).
    :ivar extras: where an evaluator may leave side information (e.g. the spread of a
        latency measurement) that the search records in the trial's ``extras``.
    """

    example_inputs: Any = None
    eval_data: Any = None
    options: dict = attrs.field(factory=dict)
    framework: str | None = None
    extras: dict = attrs.field(factory=dict)


# Directions of metrics that need no ``higher_is_better``. Registered evaluators may
# declare theirs; anything else must be given in the config.
_LOWER = ("loss", "latency", "params", "flops", "model_size", "error", "perplexity", "mse", "mae")
_HIGHER = (
    "accuracy",
    "acc",
    "f1",
    "precision",
    "recall",
    "auc",
    "matthews",
    "pearson",
    "spearman",
    "bleu",
    "rouge",
    "exact_match",
    "fidelity",
)


def known_direction(metric: str, evaluators: Any = None) -> bool | None:
    """``True`` (higher is better), ``False`` (lower is better) or ``None`` (unknown).

    A direction an evaluator declares comes first (``evaluators``: the registry's, loaded
    when not given); ``eval_loss``, ``eval_accuracy`` and the like are matched by their
    last word.
    """
    if evaluators is None:
        from .plugins import registry

        evaluators = registry().evaluators
    declared = evaluators.direction(metric)
    if declared is not None:
        return declared
    name = metric.lower()
    for prefix in ("eval_", "test_", "val_", "validation_"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    if name in _LOWER or name.endswith("_loss") or name.endswith("_latency"):
        return False
    if name in _HIGHER or any(name.endswith("_" + h) for h in _HIGHER):
        return True
    return None
