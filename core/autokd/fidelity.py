"""Training budgets: how a fraction of the configured steps becomes a number of steps.

Multi-fidelity search (``auto_distillation.search.fidelity``) trains a candidate in
increments: at each rung the train function is told ``budget``, the fraction of every
stage's configured ``train_steps`` to train *now*; a candidate's increments add up to 1
at the full budget. Every backend turns fractions into steps with :func:`stage_steps`,
so a candidate's steps add up to exactly the configured ``train_steps`` whatever the
rungs, and no step is repeated or lost to rounding; and sizes a stage's learning-rate
schedule with :func:`schedule_steps`, so a stage continued past its configured steps (a
final distillation) follows one schedule over all its steps in every backend.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["schedule_steps", "stage_fractions", "stage_steps"]


def stage_steps(train_steps: int, done: float, budget: float) -> int:
    """Steps of a stage to train for an increment of ``budget`` after ``done``.

    :param train_steps: the stage's configured (full-budget) steps.
    :param done: the fraction of the full budget already trained (0 for a new candidate).
    :param budget: the fraction to train now. It may take ``done + budget`` past 1: a
        final distillation (``final_distillation.multiplier``) trains longer than the
        search's full budget.
    :returns: ``round((done + budget) * train_steps) - round(done * train_steps)``, so the
        increments of one candidate add up to ``train_steps`` exactly.
    """
    if train_steps < 0:
        raise ValueError(f"train_steps must be >= 0, got {train_steps}")
    if done < 0 or budget < 0:
        raise ValueError(f"done and budget must be >= 0, got done={done}, budget={budget}")
    # Rounding the cumulative fractions (not each increment) makes the increments add up
    # exactly; the epsilon lets float sums such as 1/9 + 2/9 + 6/9 land on the same step
    # as 1.0 does.
    return _steps_at(done + budget, train_steps) - _steps_at(done, train_steps)


def _steps_at(fraction: float, train_steps: int) -> int:
    return round(fraction * train_steps + 1e-9)


def schedule_steps(train_steps: int, done: float, budget: float) -> int:
    """The steps a stage's learning-rate schedule spans when it has trained ``done`` of
    its configured ``train_steps`` and trains ``budget`` more (fractions, as for
    :func:`stage_steps`): the configured steps, so that a candidate trained in rungs
    follows the curve of one trained at once; or, when a final distillation takes the
    stage past them, every step it will have trained. The schedule goes on from the
    steps already trained: a warm-up or decay is neither started again nor cut short
    (a decaying rate would otherwise be 0 for every step past the configured ones).
    """
    return max(train_steps, _steps_at(done + budget, train_steps))


def stage_fractions(budget: float | Sequence[float], n_stages: int) -> list[float]:
    """The budget of each stage: one fraction for every stage, or one per stage.

    A train function receives ``budget`` either as one fraction applied to every stage
    (the search's rungs) or as a sequence with one fraction per stage, flash stages then
    regular stages (a final distillation given explicit ``train_steps`` per stage).
    """
    if isinstance(budget, int | float) and not isinstance(budget, bool):
        return [float(budget)] * n_stages
    fractions = [float(b) for b in budget]
    if len(fractions) != n_stages:
        raise ValueError(f"budget has {len(fractions)} fractions for {n_stages} stages")
    return fractions
