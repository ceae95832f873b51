"""What evaluators receive, and the known directions of common metrics."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["EvalContext", "known_direction"]


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
_HIGHER = ("accuracy", "acc", "f1", "precision", "recall", "auc", "matthews", "pearson", "spearman", "bleu", "rouge", "exact_match", "fidelity")


def known_direction(metric: str) -> bool | None:
    """``True`` (higher is better), ``False`` (lower is better) or ``None`` (unknown).

    ``eval_loss``, ``eval_accuracy`` and the like are matched by their last word.
    """
    from .plugins import registry

    declared = registry().evaluators.direction(metric)
    if declared is not None:
        return declared
    name = metric.lower()
    for prefix in ("eval_", "test_", "val_", "validation_"):
        if name.startswith(prefix):
            name = name[len(prefix):]
    if name in _LOWER or name.endswith("_loss") or name.endswith("_latency"):
        return False
    if name in _HIGHER or any(name.endswith("_" + h) for h in _HIGHER):
        return True
    return None
