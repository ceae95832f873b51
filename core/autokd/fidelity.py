"""Training budgets: how a fraction of the configured steps becomes a number of steps.

Multi-fidelity search (``auto_distillation.search.fidelity``) trains a candidate in
increments: at each rung the train function is told ``budget``, the fraction of every
stage's configured ``train_steps`` to train *now*; a candidate's increments add up to 1
at the full budget. Every backend turns fractions into steps with :func:`stage_steps`,
so a candidate's steps add up to exactly the configured ``train_steps`` whatever the
rungs, and no step is repeated or lost to rounding.
"""

from __future__ import annotations

__all__ = ["stage_steps"]


def stage_steps(train_steps: int, done: float, budget: float) -> int:
    """Steps of a stage to train for an increment of ``budget`` after ``done``.

    :param train_steps: the stage's configured (full-budget) steps.
    :param done: the fraction of the full budget already trained (0 for a new candidate).
    :param budget: the fraction to train now; ``done + budget`` is at most 1 (a little
        over is treated as 1, so float sums such as 1/9 + 2/9 + 6/9 reach the end).
    :returns: ``round((done + budget) * train_steps) - round(done * train_steps)``, so the
        increments of one candidate add up to ``train_steps`` exactly.
    """
    if train_steps < 0:
        raise ValueError(f"train_steps must be >= 0, got {train_steps}")
    if done < 0 or budget < 0:
        raise ValueError(f"done and budget must be >= 0, got done={done}, budget={budget}")
    stop = done + budget
    if stop > 1 + 1e-9:
        raise ValueError(f"done + budget = {stop} exceeds the full budget (1)")
    stop = min(stop, 1.0)
    return round(stop * train_steps) - round(done * train_steps)
