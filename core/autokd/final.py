"""The final distillation (``auto_distillation.final_distillation``): which architectures
are distilled to the end after the search, and with which budget.

The chosen candidates are the best trial (``candidates: 1``) or the best ``k`` of the
full-budget Pareto front, ordered by the best-trial rule (constraints first, then the
first metric, ...). Each continues its full-budget model where the runner holds it
(``done = 1``, ``budget`` the rest); a runner that does not hold it rebuilds the model and
trains the whole final budget from scratch. ``train_steps`` below a stage's configured
steps cannot continue a model that already trained more: the model is rebuilt then.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .advisor import Objective
from .config import Constraint, FinalDistillationConfig, Stage
from .results import TrialRecord

if TYPE_CHECKING:
    from .front import IncrementalFront

__all__ = ["choose_final", "final_budget", "final_candidates"]


def final_budget(final: FinalDistillationConfig, stages: Sequence[Stage]) -> tuple[float, float | list[float]]:
    """``(done, budget)`` of a final task: what the full-budget model has, and the
    increment (one fraction for every stage, or one per stage) that takes it to the
    final budget."""
    if final.multiplier is not None:
        return 1.0, float(final.multiplier) - 1.0
    fractions = [steps / stage.train_steps for steps, stage in zip(final.train_steps, stages, strict=True)]
    if all(f >= 1 for f in fractions):
        return 1.0, [f - 1.0 for f in fractions]
    return 0.0, fractions


def choose_final(
    front: Sequence[TrialRecord],
    best: TrialRecord | None,
    objectives: Sequence[Objective],
    constraints: Sequence[Constraint],
    candidates: int,
) -> list[TrialRecord]:
    """The full-budget records whose architectures are distilled to the end, best first."""
    if best is None:
        return []

    def order(record: TrialRecord) -> tuple:
        values = record.values(objectives) or ()
        feasible = all(c.holds(record.metrics) for c in constraints)
        return (
            (not feasible,)
            + tuple(-v if o.higher_is_better else v for v, o in zip(values, objectives, strict=True))
            + (record.trial,)
        )

    chosen = [best]
    for record in sorted(front, key=order):
        if len(chosen) >= candidates:
            break
        if record.candidate_number != best.candidate_number:
            chosen.append(record)
    return chosen


def final_candidates(
    final: FinalDistillationConfig,
    search_front: IncrementalFront,
    final_records: Sequence[TrialRecord],
    objectives: Sequence[Objective],
) -> list[TrialRecord]:
    """The records of the search whose architectures are distilled to the end, best first,
    less those a resumed run already distilled (``final_records``)."""
    best, _ = search_front.best()
    chosen = choose_final(search_front.front, best, objectives, search_front.constraints, final.candidates)
    distilled = {r.candidate_number for r in final_records}
    return [r for r in chosen if r.candidate_number not in distilled]
