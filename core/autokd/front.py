"""The Pareto front and the best-arch rule (:func:`pareto_front`, :func:`select_best`),
and the same kept up to date one record at a time (:class:`IncrementalFront`).

Recomputing the front from every record after each trial made the loop's own cost grow
with the search (#17: 7 ms per instant trial at 100 trials, 63 ms at 3,000). A new
record is compared with the current front only (dominance is transitive, so a record
dominated by a removed member is dominated by the member that removed it), and the best
trial is compared with the new record only; both give exactly what
:func:`pareto_front` and :func:`select_best` give on
the same records.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from .advisor import Objective
from .config import Constraint

if TYPE_CHECKING:  # results re-exports the rules below: no import of it at run time
    from .results import TrialRecord

__all__ = ["IncrementalFront", "dominates", "pareto_front", "select_best"]


def dominates(a: Sequence[float], b: Sequence[float], objectives: Sequence[Objective]) -> bool:
    """True when values ``a`` are no worse than ``b`` in every objective and better in one."""
    strictly = False
    for x, y, obj in zip(a, b, objectives, strict=True):
        if obj.better(y, x):
            return False
        if obj.better(x, y):
            strictly = True
    return strictly


def pareto_front(records: Iterable[TrialRecord], objectives: Sequence[Objective]) -> list[TrialRecord]:
    """The successful trials that no other successful trial dominates, in trial order.

    Trials with identical values are all kept."""
    scored = [(r, r.values(objectives)) for r in records]
    scored = [(r, v) for r, v in scored if v is not None]
    front = [r for r, v in scored if not any(dominates(w, v, objectives) for _, w in scored)]
    return sorted(front, key=lambda r: r.trial)


def lexicographic(values: Sequence[float], objectives: Sequence[Objective]) -> tuple[float, ...]:
    """``values`` turned so that lower is better in each objective, in the objectives'
    order: the sort key of "the first metric decides, the following ones break its ties"
    (the best trial's rule, and a multi-fidelity rung's tie-break)."""
    return tuple(-v if o.higher_is_better else v for v, o in zip(values, objectives, strict=True))


def select_best(
    records: Iterable[TrialRecord], objectives: Sequence[Objective], constraints: Sequence[Constraint] = ()
) -> tuple[TrialRecord | None, bool]:
    """The best trial and whether it meets the constraints.

    Rule: among successful trials that meet every constraint, the best value of the
    first metric; ties are broken by the following metrics in order, then by the earlier
    trial. Metrics of different scales are never summed. With constraints only on
    objective metrics, the chosen trial is on the Pareto front. If no trial meets the
    constraints, the same rule picks among all successful trials and the second value is
    False.
    """
    scored = [(r, r.values(objectives)) for r in records]
    scored = [(r, v) for r, v in scored if v is not None]
    if not scored:
        return None, False

    def sort_key(item):
        record, values = item
        return lexicographic(values, objectives) + (record.trial,)

    feasible = [(r, v) for r, v in scored if all(c.holds(r.metrics) for c in constraints)]
    if feasible:
        return min(feasible, key=sort_key)[0], True
    return min(scored, key=sort_key)[0], False


class IncrementalFront:
    """The non-dominated successful records and the best record among those added."""

    def __init__(self, objectives: Sequence[Objective], constraints: Sequence[Constraint] = ()):
        self.objectives = list(objectives)
        self.constraints = list(constraints)
        # (record, values turned so that lower is better in every objective)
        self._front: list[tuple[TrialRecord, tuple[float, ...]]] = []
        self._on_front: set[int] = set()
        self._firsts: list[float] = []  # two objectives: the front's first values, sorted
        self._best_feasible: tuple[tuple, TrialRecord] | None = None
        self._best_any: tuple[tuple, TrialRecord] | None = None

    def add(self, record: TrialRecord) -> list[TrialRecord]:
        """Take ``record``; the records no longer kept (neither on the front nor best),
        ``record`` itself included when it is neither."""
        values = record.values(self.objectives)
        if values is None:
            return [record]
        old_best = self.best()[0]
        lower = tuple(-v if o.higher_is_better else v for v, o in zip(values, self.objectives, strict=True))
        left: dict[int, TrialRecord] = {}
        removed = self._add_2d(record, lower) if len(lower) == 2 else self._add_nd(record, lower)
        for r in removed:
            left[id(r)] = r
            self._on_front.discard(id(r))
        key = (*lower, record.trial)
        if self._best_any is None or key < self._best_any[0]:
            self._best_any = (key, record)
        feasible = all(c.holds(record.metrics) for c in self.constraints)
        if feasible and (self._best_feasible is None or key < self._best_feasible[0]):
            self._best_feasible = (key, record)
        best = self.best()[0]
        for r in (record, old_best):
            if r is not None and r is not best and id(r) not in self._on_front:
                left[id(r)] = r
        left.pop(id(best), None)
        return list(left.values())

    def _add_nd(self, record: TrialRecord, lower: tuple[float, ...]) -> list[TrialRecord]:
        """Compare with every member; the members ``record`` dominates, removed."""
        if any(_dominates(w, lower) for _, w in self._front):
            return []
        kept, removed = [], []
        for r, w in self._front:
            (removed if _dominates(lower, w) else kept).append((r, w))
        kept.append((record, lower))
        self._front = kept
        self._on_front.add(id(record))
        return [r for r, _ in removed]

    def _add_2d(self, record: TrialRecord, lower: tuple[float, ...]) -> list[TrialRecord]:
        """Two objectives: the front sorted by the first value has the second one
        non-increasing, so dominance is a bisection (the front of a 3,000-trial search
        holds hundreds of records)."""
        a, b = lower
        firsts = self._firsts
        k = bisect.bisect_right(firsts, a)
        if k > 0:
            w = self._front[k - 1][1]
            if w[1] <= b and w != lower:
                return []  # dominated
        lo = bisect.bisect_left(firsts, a)
        hi = lo
        while hi < len(self._front) and self._front[hi][1][1] >= b:
            hi += 1
        removed = [r for r, w in self._front[lo:hi] if w != lower]
        kept = [(r, w) for r, w in self._front[lo:hi] if w == lower]
        self._front[lo:hi] = [*kept, (record, lower)]
        self._firsts[lo:hi] = [w[0] for _, w in kept] + [a]
        self._on_front.add(id(record))
        return removed

    @property
    def front(self) -> list[TrialRecord]:
        """The front, in trial order."""
        return sorted((r for r, _ in self._front), key=lambda r: r.trial)

    def best(self) -> tuple[TrialRecord | None, bool]:
        """The best record and whether it meets the constraints (the rule of
        :func:`~autokd.results.select_best`)."""
        if self._best_feasible is not None:
            return self._best_feasible[1], True
        if self._best_any is not None:
            return self._best_any[1], False
        return None, False


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """``a`` dominates ``b`` (both lower-is-better): no worse anywhere, better somewhere."""
    return a != b and all(x <= y for x, y in zip(a, b))
