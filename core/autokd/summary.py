"""``summary.json``: what a search writes beside ``trials.jsonl`` and rewrites as it goes:
the objectives, the space, the Pareto front, the best trial and the config. A resumed run
compares its config with the recorded space and objectives (:mod:`autokd.resume`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .advisor import Objective
from .config import Constraint
from .results import TrialRecord
from .schedule import FidelitySchedule
from .space import SearchSpace

__all__ = ["search_summary"]


def search_summary(
    config_dict: dict,
    algorithm: str,
    objectives: Sequence[Objective],
    constraints: Sequence[Constraint],
    space: SearchSpace,
    seed: int | None,
    records: Sequence[TrialRecord],
    front: Sequence[TrialRecord],
    best: TrialRecord | None,
    feasible: bool,
    *,
    failed: int,
    fidelity: tuple[int, FidelitySchedule | None] | None,
    final_result: Sequence[TrialRecord] | None,
) -> dict[str, Any]:
    """The summary of a search whose evaluations so far are ``records``; with
    ``fidelity`` (candidates started, the schedule) and ``final_result`` (the final
    distillation's records) when the search has them."""
    summary = {
        "objectives": [{"name": o.name, "higher_is_better": o.higher_is_better} for o in objectives],
        "constraints": [str(c) for c in constraints],
        "search_algorithm": algorithm,
        "search_space": space.to_dict(),
        "seed": seed,
        "trials": len(records),
        "failed": failed,
        "pareto_front": [r.to_json() for r in front],
        "best_trial": None if best is None else best.trial,
        "best_model_arch": None if best is None else best.arch,
        "best_metrics": None if best is None else best.metrics,
        "best_meets_constraints": feasible,
        "config": config_dict,
    }
    if fidelity is not None:
        candidates, schedule = fidelity
        summary["candidates"] = candidates
        summary["rung_budgets"] = list(schedule.budgets) if schedule else None
    if final_result is not None:
        summary["best_phase"] = None if best is None else best.phase
        summary["final"] = [r.to_json() for r in final_result]
    return summary
