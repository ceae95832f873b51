"""Merging the output directories of several drivers of one search into one front.

Several ``autokd run`` processes sharing an optuna study (``advisor_options.storage``) each write
their own ``trials.jsonl``, numbered from 0. :func:`merge_output_dirs` reads them all,
numbers the trials again (directory by directory, in the order given, each in its own
trial order), and writes one output directory whose ``trials.jsonl`` and
``summary.json`` hold the Pareto front and the best trial over every driver, so
``autokd report`` (table, picture, page) works on it as on one run. Each merged record
keeps where it came from in ``extras['merged_from'] = {dir, trial}``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import attrs

from .advisor import Objective
from .config import Constraint
from .errors import AutoKDError
from .results import ResultStore, TrialRecord, pareto_front, select_best

__all__ = ["MergedRun", "merge_output_dirs"]


@attrs.frozen
class MergedRun:
    """What :func:`merge_output_dirs` wrote: the merged directory and, for each source
    directory, the merged trial numbers of its records (first, last)."""

    output_dir: str
    sources: list[tuple[str, int, int]]

    def legend(self) -> str:
        return "\n".join(
            f"trials {first}-{last}: {source} (its trials in order)" for source, first, last in self.sources
        )


def _objectives(summary: dict) -> list[Objective]:
    return [Objective(o["name"], bool(o["higher_is_better"])) for o in summary.get("objectives", [])]


def merge_output_dirs(output_dirs: Sequence[str], merged_dir: str) -> MergedRun:
    """Merge the trials of ``output_dirs`` into ``merged_dir`` (``trials.jsonl`` and
    ``summary.json``, replaced if present).

    Every directory must hold trials, and their summaries the same objectives (they are
    drivers of one search); constraints are taken from the first summary.
    """
    if len(output_dirs) < 1:
        raise AutoKDError("nothing to merge: give one or more output directories")
    merged_store = ResultStore(merged_dir)
    records: list[TrialRecord] = []
    sources: list[tuple[str, int, int]] = []
    reference: tuple[str, dict] | None = None
    for directory in output_dirs:
        if os.path.abspath(directory) == os.path.abspath(merged_dir):
            raise AutoKDError(f"{merged_dir}: the merged directory cannot also be one of the directories merged")
        store = ResultStore(directory)
        found = store.load()
        if not found:
            raise AutoKDError(f"{store.trials_path}: no trials recorded")
        summary = store.read_summary()
        if summary is None:
            raise AutoKDError(f"{store.summary_path}: missing: the objectives of this run are unknown")
        if reference is None:
            reference = (directory, summary)
        elif _objectives(summary) != _objectives(reference[1]):
            raise AutoKDError(
                f"{store.summary_path}: objectives {[o.name for o in _objectives(summary)]} differ from "
                f"{reference[0]}'s {[o.name for o in _objectives(reference[1])]}: only drivers of one search can be "
                f"merged into one front"
            )
        first = len(records)
        for record in sorted(found, key=lambda r: r.trial):
            origin = {"dir": os.path.abspath(directory), "trial": record.trial}
            records.append(attrs.evolve(record, trial=len(records), extras={**record.extras, "merged_from": origin}))
        sources.append((directory, first, len(records) - 1))

    _, summary = reference
    objectives = _objectives(summary)
    constraints = [Constraint.parse(c) for c in summary.get("constraints", [])]
    front = pareto_front(records, objectives)
    best, feasible = select_best(records, objectives, constraints)
    if merged_store.exists():
        os.remove(merged_store.trials_path)
    for record in records:
        merged_store.append(record)
    merged_store.write_summary(
        {
            "objectives": summary.get("objectives", []),
            "constraints": summary.get("constraints", []),
            "search_algorithm": summary.get("search_algorithm"),
            "seed": summary.get("seed"),
            "trials": len(records),
            "failed": sum(1 for r in records if not r.ok),
            "pareto_front": [r.to_json() for r in front],
            "best_trial": None if best is None else best.trial,
            "best_model_arch": None if best is None else best.arch,
            "best_metrics": None if best is None else best.metrics,
            "best_meets_constraints": feasible,
            "merged_from": [os.path.abspath(d) for d in output_dirs],
            "config": summary.get("config"),
        }
    )
    return MergedRun(os.fspath(merged_dir), sources)
