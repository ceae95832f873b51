"""Multi-fidelity schedules: successive halving and hyperband over training budgets.

A candidate (an architecture) is first trained with ``min_fraction`` of every stage's
``train_steps`` (rung 0); the best ``1/eta`` of a rung go on to a budget ``eta`` times
larger, until the full budget (the last rung). Hyperband runs several such brackets,
each starting at a higher rung with fewer candidates (Li et al., 2018, "Hyperband");
``max_trials`` candidates are shared among its brackets in hyperband's proportions.

"Best" is decided by :func:`rank`: feasible candidates (every constraint holds) before
infeasible ones, then, with several objectives, the non-dominated rank and the crowding
distance (Deb et al., 2002, NSGA-II), equal distances by the first metric (the best trial's
rule: ``front.select_best``); with one, its value. Failed evaluations come last
and are never promoted.

Promotion is synchronous when trials run one at a time (a rung is complete before any of
its candidates goes on: successive halving exactly), and asynchronous with a parallel
executor (ASHA, Li et al., 2020: a candidate goes on as soon as it is in the best
``1/eta`` of the evaluations its rung has so far); when a rung can receive no more
candidates, the best ``max(1, n // eta)`` of it go on in both modes and the rest are
dropped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import attrs

from .advisor import Objective
from .config import Constraint, FidelityConfig
from .front import lexicographic
from .results import TrialRecord, dominates

__all__ = ["Bracket", "FidelitySchedule", "plan_brackets", "rank", "rung_budgets"]

_EPS = 1e-9


def rung_budgets(min_fraction: float, eta: int) -> list[float]:
    """The cumulative budget of each rung: ``min_fraction * eta**k``, capped by 1."""
    budgets = []
    budget = float(min_fraction)
    while budget < 1 - _EPS:
        budgets.append(budget)
        budget *= eta
    budgets.append(1.0)
    return budgets


def plan_brackets(schedule: str, n_rungs: int, eta: int, max_trials: int) -> list[tuple[int, int]]:
    """``(first rung, number of candidates)`` of each bracket, in the order they fill.

    Successive halving: one bracket of ``max_trials`` candidates from rung 0. Hyperband:
    bracket ``s`` (``s_max`` down to 0) starts at rung ``s_max - s`` with
    ``ceil((s_max + 1) / (s + 1) * eta**s)`` candidates, scaled so that they add up to
    ``max_trials`` (the remainder goes to the most exploratory brackets first).
    """
    if schedule == "successive_halving" or n_rungs == 1:
        return [(0, max_trials)]
    s_max = n_rungs - 1
    shares = [(s_max - s, math.ceil((s_max + 1) / (s + 1) * eta**s)) for s in range(s_max, -1, -1)]
    total = sum(n for _, n in shares)
    sizes = [max_trials * n // total for _, n in shares]
    for i in range(max_trials - sum(sizes)):
        sizes[i % len(sizes)] += 1
    return [(first, size) for (first, _), size in zip(shares, sizes, strict=True) if size > 0]


def rank(
    records: Sequence[TrialRecord], objectives: Sequence[Objective], constraints: Sequence[Constraint] = ()
) -> list[TrialRecord]:
    """``records`` best first: feasible before infeasible, then by non-dominated rank and
    crowding distance, equal distances by the objectives in order (one objective: its
    value), then the earlier trial; failed last."""
    scored = [(r, r.values(objectives)) for r in records]
    failed = sorted((r for r, v in scored if v is None), key=lambda r: r.trial)
    ok = [(r, v) for r, v in scored if v is not None]
    feasible = [(r, v) for r, v in ok if all(c.holds(r.metrics) for c in constraints)]
    infeasible = [(r, v) for r, v in ok if not all(c.holds(r.metrics) for c in constraints)]
    return _rank_group(feasible, objectives) + _rank_group(infeasible, objectives) + failed


def _rank_group(scored: list[tuple[TrialRecord, tuple]], objectives: Sequence[Objective]) -> list[TrialRecord]:
    if not scored:
        return []
    if len(objectives) == 1:
        sign = -1.0 if objectives[0].higher_is_better else 1.0
        return [r for r, _ in sorted(scored, key=lambda item: (sign * item[1][0], item[0].trial))]
    out: list[TrialRecord] = []
    remaining = list(scored)
    while remaining:  # peel off non-dominated fronts
        front = [(r, v) for r, v in remaining if not any(dominates(w, v, objectives) for _, w in remaining)]
        distance = _crowding(front, len(objectives))
        # equal crowding (e.g. both ends of a front, or a front of two): the first metric
        # decides, as it does for the best trial, then the earlier trial
        front.sort(key=lambda item: (-distance[id(item[0])], lexicographic(item[1], objectives), item[0].trial))
        out.extend(r for r, _ in front)
        taken = {id(r) for r, _ in front}
        remaining = [(r, v) for r, v in remaining if id(r) not in taken]
    return out


def _crowding(front: list[tuple[TrialRecord, tuple]], n_objectives: int) -> dict[int, float]:
    distance = {id(r): 0.0 for r, _ in front}
    if len(front) <= 2:
        return {k: math.inf for k in distance}
    for m in range(n_objectives):
        ordered = sorted(front, key=lambda item: item[1][m])
        low, high = ordered[0][1][m], ordered[-1][1][m]
        distance[id(ordered[0][0])] = distance[id(ordered[-1][0])] = math.inf
        if high == low:
            continue
        for i in range(1, len(ordered) - 1):
            distance[id(ordered[i][0])] += (ordered[i + 1][1][m] - ordered[i - 1][1][m]) / (high - low)
    return distance


@attrs.define
class Bracket:
    """One successive-halving bracket: candidates starting at ``first_rung``."""

    first_rung: int
    size: int
    candidates: list[int] = attrs.field(factory=list)
    # rung -> candidate -> its record at that rung
    results: dict[int, dict[int, TrialRecord]] = attrs.field(factory=dict)
    # rung -> candidates promoted from that rung to the next
    promoted: dict[int, set[int]] = attrs.field(factory=dict)
    running: dict[int, set[int]] = attrs.field(factory=dict)
    ranked: dict[int, tuple[int, list[TrialRecord]]] = attrs.field(factory=dict)


@attrs.frozen
class Promotion:
    candidate: int
    rung: int  # the rung it goes to
    done: float  # the budget it has
    budget: float  # the increment to train


class FidelitySchedule:
    """Which candidate trains next, with which budget; which are dropped.

    :param asynchronous: promote as results arrive (a parallel executor).
    """

    def __init__(
        self,
        fidelity: FidelityConfig,
        max_trials: int,
        objectives: Sequence[Objective],
        constraints: Sequence[Constraint] = (),
        asynchronous: bool = False,
    ):
        self.eta = fidelity.eta
        self.budgets = rung_budgets(fidelity.min_fraction, fidelity.eta)
        self.objectives = list(objectives)
        self.constraints = list(constraints)
        self.asynchronous = asynchronous
        self.brackets = [
            Bracket(first, size)
            for first, size in plan_brackets(fidelity.schedule, len(self.budgets), fidelity.eta, max_trials)
        ]
        self._bracket_of: dict[int, Bracket] = {}
        self.dropped: set[int] = set()
        self._failed: list[int] = []
        self._dirty: list[Bracket] = []  # brackets whose rungs may have completed

    @property
    def last_rung(self) -> int:
        return len(self.budgets) - 1

    # --- candidates ---------------------------------------------------------------------
    def bracket_for(self, candidate: int) -> Bracket | None:
        """The bracket of candidate number ``candidate`` (brackets fill in order)."""
        start = 0
        for bracket in self.brackets:
            if candidate < start + bracket.size:
                return bracket
            start += bracket.size
        return None

    def start(self, candidate: int) -> tuple[int, float]:
        """Register a new candidate; its ``(rung, budget)``."""
        bracket = self.bracket_for(candidate)
        if bracket is None:
            raise ValueError(f"candidate {candidate} is beyond the schedule's {self.capacity} candidates")
        bracket.candidates.append(candidate)
        self._bracket_of[candidate] = bracket
        rung = bracket.first_rung
        bracket.running.setdefault(rung, set()).add(candidate)
        return rung, self.budgets[rung]

    @property
    def capacity(self) -> int:
        return sum(b.size for b in self.brackets)

    def stop_new_candidates(self) -> None:
        """No more candidates will come (the space is exhausted): brackets end with the
        candidates they have, so their rungs can complete."""
        for bracket in self.brackets:
            bracket.size = len(bracket.candidates)
            self._touch(bracket)

    # --- results ------------------------------------------------------------------------
    def record(self, record: TrialRecord) -> None:
        """Take a finished evaluation at its rung (a replayed one too)."""
        candidate, rung = record.candidate_number, record.rung
        bracket = self._bracket_of.get(candidate)
        if bracket is None:  # a replayed record of a candidate not started in this process
            bracket = self.bracket_for(candidate)
            if bracket is None:
                raise ValueError(f"record of trial {record.trial}: candidate {candidate} is beyond the schedule")
            bracket.candidates.append(candidate)
            self._bracket_of[candidate] = bracket
        bracket.running.get(rung, set()).discard(candidate)
        bracket.results.setdefault(rung, {})[candidate] = record
        if rung > bracket.first_rung:
            bracket.promoted.setdefault(rung - 1, set()).add(candidate)
        if not record.ok:
            self._failed.append(candidate)
        self._touch(bracket)

    def _touch(self, bracket: Bracket) -> None:
        if not any(b is bracket for b in self._dirty):
            self._dirty.append(bracket)

    def mark_running(self, candidate: int, rung: int) -> None:
        bracket = self._bracket_of[candidate]
        bracket.running.setdefault(rung, set()).add(candidate)
        bracket.promoted.setdefault(rung - 1, set()).add(candidate)
        self._touch(bracket)

    # --- decisions ----------------------------------------------------------------------
    def next_promotion(self) -> Promotion | None:
        """A candidate to train further, highest rung first, or None."""
        for bracket in self.brackets:
            for rung in range(self.last_rung - 1, bracket.first_rung - 1, -1):
                for candidate in self._promotable(bracket, rung):
                    return Promotion(
                        candidate, rung + 1, self.budgets[rung], self.budgets[rung + 1] - self.budgets[rung]
                    )
        return None

    def _promotable(self, bracket: Bracket, rung: int) -> list[int]:
        results = bracket.results.get(rung, {})
        if not results:
            return []
        closed = self._closed(bracket, rung)
        if closed:
            quota = max(1, len(results) // self.eta)
        elif self.asynchronous:
            quota = len(results) // self.eta
        else:
            return []
        promoted = bracket.promoted.get(rung, set())
        best = [r.candidate_number for r in self._ranked(bracket, rung)[:quota]]
        return [c for c in best if c not in promoted and results[c].ok]

    def _ranked(self, bracket: Bracket, rung: int) -> list[TrialRecord]:
        results = bracket.results.get(rung, {})
        cached = bracket.ranked.get(rung)
        if cached is None or cached[0] != len(results):  # results only grow
            cached = (len(results), rank(list(results.values()), self.objectives, self.constraints))
            bracket.ranked[rung] = cached
        return cached[1]

    def _closed(self, bracket: Bracket, rung: int) -> bool:
        """No more candidates can reach ``rung`` of ``bracket`` and all there finished."""
        if bracket.running.get(rung):
            return False
        if rung == bracket.first_rung:
            return len(bracket.candidates) >= bracket.size and len(bracket.results.get(rung, {})) >= bracket.size
        if not self._closed(bracket, rung - 1):
            return False
        # every candidate promoted into this rung has its result here
        promoted = bracket.promoted.get(rung - 1, set())
        return promoted <= set(bracket.results.get(rung, {})) and not self._promotable(bracket, rung - 1)

    def collect_dropped(self) -> list[int]:
        """Candidates newly out of the search: failed ones, and those of a complete rung
        that did not go on (their models may be released). Each is returned once."""
        dropped = [c for c in self._failed if c not in self.dropped]
        self.dropped.update(dropped)
        self._failed.clear()
        for bracket in self._dirty:
            for rung in range(bracket.first_rung, self.last_rung):
                if not self._closed(bracket, rung) or self._promotable(bracket, rung):
                    break
                promoted = bracket.promoted.get(rung, set())
                for candidate in bracket.results.get(rung, {}):
                    if candidate not in promoted and candidate not in self.dropped:
                        self.dropped.add(candidate)
                        dropped.append(candidate)
        self._dirty.clear()
        return sorted(dropped)

    def finished(self) -> bool:
        """Every bracket is full and nothing is left to promote or running."""
        for bracket in self.brackets:
            if len(bracket.candidates) < bracket.size or any(bracket.running.values()):
                return False
        return self.next_promotion() is None

    def full(self) -> bool:
        """No bracket takes a new candidate."""
        return all(len(b.candidates) >= b.size for b in self.brackets)
