"""Resuming a search: refuse to tell an advisor the trials of an output directory when
the config's search space or objectives changed since they were recorded (the records
would fall outside the space or go unscored)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .advisor import Objective
from .errors import StoreError
from .results import ResultStore, TrialRecord
from .space import _hashable

__all__ = ["check_resume", "refuse_recorded_trials", "resumable_records"]


def resumable_records(
    store: ResultStore, space: Mapping[str, Sequence[Any]], objectives: Sequence[Objective]
) -> list[TrialRecord]:
    """The trials recorded in ``store`` (a cut-off last line repaired), once
    :func:`check_resume` found them recorded with this search space and objectives."""
    records = store.load(repair=True)
    check_resume(records, store.read_summary(), space, objectives, store.output_dir)
    return records


def refuse_recorded_trials(store: ResultStore) -> None:
    """A search without ``resume`` never writes over recorded trials (:class:`StoreError`)."""
    if store.holds_results():
        what = store.trials_path if store.exists() else store.summary_path
        raise StoreError(
            f"{what} already holds trials: resume them with resume=True "
            f"(autokd run --resume) or choose another output directory (--output-dir)"
        )


def check_resume(
    records: Sequence[TrialRecord],
    summary: Mapping[str, Any] | None,
    space: Mapping[str, Sequence[Any]],
    objectives: Sequence[Objective],
    where: str,
) -> None:
    """Refuse to resume the trials in ``where`` with a config whose search space or
    objectives differ from the ones they were recorded with (:class:`StoreError`, saying
    what changed). Widening a parameter's choices may resume; narrowing, adding or
    removing a parameter, or changing an objective or its direction may not: the
    recorded trials would fall outside the space or go unscored."""
    changes: list[str] = []
    current = {name: [_hashable(v) for v in values] for name, values in space.items()}
    recorded_space = _recorded_space(summary)
    if recorded_space is not None:
        for name in recorded_space:
            if name not in current:
                changes.append(f"search_space.{name}: removed (the recorded trials have it)")
        for name in current:
            if name not in recorded_space:
                changes.append(f"search_space.{name}: added (the recorded trials have no value for it)")
            else:
                gone = [v for v in recorded_space[name] if _hashable(v) not in current[name]]
                if gone:
                    changes.append(f"search_space.{name}: choices {gone} removed")
    recorded_objectives = _recorded_objectives(summary)
    wanted = [(o.name, bool(o.higher_is_better)) for o in objectives]
    if recorded_objectives is not None and recorded_objectives != wanted:
        changes.append(f"metrics / higher_is_better: recorded {_show(recorded_objectives)}, configured {_show(wanted)}")
    # The records themselves, for stores without a summary (or a summary that lies).
    reported = set()
    for r in records:
        keys = list(r.arch)
        for name in keys:
            if name not in current and ("param", name) not in reported:
                reported.add(("param", name))
                changes.append(f"search_space.{name}: not in the config, but trial {r.trial} has it")
        for name in current:
            if name not in r.arch and ("missing", name) not in reported:
                reported.add(("missing", name))
                changes.append(f"search_space.{name}: trial {r.trial} has no value for it")
            elif name in r.arch and _hashable(r.arch[name]) not in current[name] and ("value", name) not in reported:
                reported.add(("value", name))
                changes.append(f"search_space.{name}: trial {r.trial} used {r.arch[name]!r}, not a configured choice")
    ok = [r for r in records if r.ok]
    for o in objectives:
        if ok and recorded_objectives is None and all(o.name not in r.metrics for r in ok):
            changes.append(f"metrics: {o.name!r} is in no recorded trial (renamed?)")
    if changes:
        listed = "\n".join(f"  - {c}" for c in dict.fromkeys(changes))
        raise StoreError(
            f"cannot resume the trials in {where}: the config changed since they were recorded:\n{listed}\n"
            f"Resume only with the same search space (adding choices is fine) and the same metrics and "
            f"directions; for a different search, use a new output directory (--output-dir)."
        )


def _recorded_space(summary: Mapping[str, Any] | None) -> dict[str, list] | None:
    if not isinstance(summary, Mapping):
        return None
    space = summary.get("search_space")
    if space is None:
        try:
            space = summary["config"]["auto_distillation"]["search"]["search_space"]
        except (KeyError, TypeError):
            return None
    if not isinstance(space, Mapping) or not all(isinstance(v, list) for v in space.values()):
        return None
    return {str(k): list(v) for k, v in space.items()}


def _recorded_objectives(summary: Mapping[str, Any] | None) -> list[tuple[str, bool]] | None:
    if not isinstance(summary, Mapping) or not isinstance(summary.get("objectives"), list):
        return None
    try:
        return [(str(o["name"]), bool(o["higher_is_better"])) for o in summary["objectives"]]
    except (KeyError, TypeError):
        return None


def _show(objectives: Sequence[tuple[str, bool]]) -> str:
    return "[" + ", ".join(f"{n} ({'higher' if h else 'lower'} is better)" for n, h in objectives) + "]"
