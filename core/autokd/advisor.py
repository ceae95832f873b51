"""The Advisor contract and the core's built-in advisors ``random`` and ``grid``."""

from __future__ import annotations

import random as _random
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from .space import SearchSpace

__all__ = [
    "Advisor",
    "GridAdvisor",
    "Objective",
    "RandomAdvisor",
    "SearchExhausted",
    "propose",
    "with_budget",
    "with_workers",
]


@attrs.frozen
class Objective:
    """One objective of the search: a metric name and its direction."""

    name: str
    higher_is_better: bool

    def better(self, a: float, b: float) -> bool:
        """True when value ``a`` is strictly better than ``b``."""
        return a > b if self.higher_is_better else a < b


class SearchExhausted(Exception):
    """Raised by :meth:`Advisor.ask` when no point is left to propose."""


class Advisor:
    """Base class of search algorithms.

    Subclasses implement :meth:`ask` (one point of the space) and :meth:`tell` (raw
    metric values in objective order, ``None`` for a failed trial), and should call
    ``super().tell(arch, values)`` so :attr:`history` holds every told trial.
    Advisors draw randomness only from their own RNG seeded with ``seed``.

    :cvar budget_option: the name of an option through which the advisor wants the
        search's ``max_trials`` (e.g. nevergrad's ``budget``); the search loop passes it
        unless ``search.advisor_options`` sets that option itself. None: not passed.
    :cvar workers_option: the name of an option through which the advisor wants the
        number of trials running at once (``search.executor.max_concurrent``, when above
        1), e.g. nevergrad's ``num_workers``.
    :cvar tracks_pending: True when :meth:`ask` itself never proposes a point it proposed
        before and that was not told yet (optuna's running trials, nevergrad's asked
        candidates): the loop may ask again while trials run and trusts the proposal.

    Parallel searches and pending points: while trials run, the loop asks with
    :meth:`ask_pending`, giving the points being evaluated. The default calls
    :meth:`ask`; an advisor that neither overrides it nor tracks its pending proposals
    may propose a running point: the loop then asks again (a bounded number of times)
    and finally proposes a point that is neither evaluated nor running itself.

    Multi-fidelity searches: :meth:`tell_budget` is told every completed evaluation with
    its budget; the default tells :meth:`tell` the first evaluation of each architecture
    (every candidate's lowest-budget result, comparable across candidates) and keeps the
    others in :attr:`budget_history`. Advisors that model budgets override it.
    """

    budget_option: str | None = None
    workers_option: str | None = None
    tracks_pending: bool = False

    def __init__(self, space, objectives: Sequence[Objective], seed: int | None = None, **options: Any):
        self.space = space if isinstance(space, SearchSpace) else SearchSpace(space)
        self.objectives = list(objectives)
        self.seed = seed
        self.options = dict(options)
        self.history: list[tuple[dict, tuple[float, ...] | None]] = []
        self.budget_history: list[tuple[dict, tuple[float, ...] | None, Any, int | None]] = []
        self._told_key_set: set[str] = set()
        self._told_count = 0

    def ask(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def ask_pending(self, pending: Sequence[dict]) -> dict:
        """One point to evaluate while the ``pending`` points are being evaluated.

        The default ignores ``pending`` and calls :meth:`ask` (see the class notes)."""
        return self.ask()

    def tell(self, arch: dict, values: Sequence[float] | None) -> None:
        self.history.append((dict(arch), None if values is None else tuple(values)))

    def tell_budget(self, arch: dict, values: Sequence[float] | None, *, budget: Any, rung: int | None) -> None:
        """A completed evaluation of a multi-fidelity search: ``budget`` is the fraction
        of the configured steps trained (cumulative), ``rung`` its rung. The default
        tells :meth:`tell` the first evaluation of each architecture only."""
        entry = (dict(arch), None if values is None else tuple(values), budget, rung)
        self.budget_history.append(entry)
        if self.space.key(arch) not in self._told_keys():
            self.tell(arch, values)

    def _told_keys(self) -> set[str]:
        # Kept up to date from the history instead of rebuilt, so asking stays cheap in
        # searches of thousands of trials.
        history = self.history
        if self._told_count > len(history):  # the history was replaced
            self._told_key_set, self._told_count = set(), 0
        for arch, _ in history[self._told_count :]:
            self._told_key_set.add(self.space.key(arch))
        self._told_count = len(history)
        return self._told_key_set

    def _reject_options(self, *allowed: str) -> None:
        unknown = sorted(set(self.options) - set(allowed))
        if unknown:
            raise ValueError(
                f"{type(self).__name__}: unknown search.advisor_options {unknown}; "
                f"accepted: {sorted(allowed) or 'none'}"
            )


def propose(advisor: Any, pending: Sequence[dict] = ()) -> dict:
    """The advisor's next point while ``pending`` points are being evaluated:
    ``ask_pending(pending)`` when the advisor's own class (or a subclass) implements it,
    else ``ask()`` (a subclass that overrides only ``ask``, as advisors written before
    ``ask_pending`` do, is asked through its ``ask``; the loop then skips running points)."""
    if not pending or "ask" in vars(advisor):
        return advisor.ask()
    cls = type(advisor)
    ask_owner = next((c for c in cls.__mro__ if "ask" in c.__dict__), None)
    pending_owner = next((c for c in cls.__mro__ if "ask_pending" in c.__dict__), None)
    if pending_owner is None or pending_owner is Advisor or ask_owner is None:
        return advisor.ask()
    if issubclass(pending_owner, ask_owner):
        return advisor.ask_pending(list(pending))
    return advisor.ask()


def with_workers(factory: Any, options: Mapping[str, Any], max_concurrent: int) -> dict[str, Any]:
    """``options`` plus ``max_concurrent`` under the factory's ``workers_option`` when it
    has one, trials run in parallel, and ``options`` does not set it."""
    workers_option = getattr(factory, "workers_option", None)
    if workers_option and workers_option not in options and max_concurrent > 1:
        return {**options, workers_option: max_concurrent}
    return dict(options)


def with_budget(factory: Any, options: Mapping[str, Any], max_trials: int | None) -> dict[str, Any]:
    """``options`` for an advisor ``factory``, plus ``max_trials`` under the factory's
    ``budget_option`` when it has one and ``options`` does not set it (as the search loop
    builds advisors; benchmarks that drive advisors directly use it too)."""
    budget_option = getattr(factory, "budget_option", None)
    if budget_option and budget_option not in options and max_trials:
        return {**options, budget_option: max_trials}
    return dict(options)


class RandomAdvisor(Advisor):
    """Uniform random search; never proposes a told point while untold ones remain.

    Options: none.
    """

    def __init__(self, space, objectives, seed=None, **options):
        super().__init__(space, objectives, seed, **options)
        self._reject_options()
        self._rng = _random.Random(seed)

    def ask(self) -> dict:
        return self.ask_pending(())

    def ask_pending(self, pending: Sequence[dict]) -> dict:
        told = self._told_keys()
        taken = told | {self.space.key(p) for p in pending} if pending else told
        if len(told) >= self.space.size:
            raise SearchExhausted(f"all {self.space.size} points of the search space were evaluated")
        if len(taken) >= self.space.size:
            raise SearchExhausted("every point of the search space is evaluated or being evaluated")
        # Rejection sampling is cheap while the space is mostly unexplored; past half,
        # pick among the remaining points directly.
        if len(taken) < self.space.size // 2:
            while True:
                point = self.space.sample(self._rng)
                if self.space.key(point) not in taken:
                    return point
        remaining = [p for p in self.space.points() if self.space.key(p) not in taken]
        return remaining[self._rng.randrange(len(remaining))]


class GridAdvisor(Advisor):
    """Exhaustive search over every point, in the space's fixed order.

    Options: ``shuffle`` (bool, default False): visit the points in an order drawn from
    the seeded RNG instead (for spaces of at most ``MAX_SHUFFLED`` points: the order is
    a list of them). The plain order is walked lazily, so a space of any size works.
    """

    MAX_SHUFFLED = 10**6

    def __init__(self, space, objectives, seed=None, **options):
        super().__init__(space, objectives, seed, **options)
        self._reject_options("shuffle")
        self._order: list[int] | None = None
        self._cursor = 0
        if options.get("shuffle", False):
            if self.space.size > self.MAX_SHUFFLED:
                raise ValueError(
                    f"grid: shuffle over a space of {self.space.size:,} points would list them all "
                    f"(at most {self.MAX_SHUFFLED:,}); drop shuffle, or use search_algorithm: random"
                )
            self._order = list(range(self.space.size))
            _random.Random(seed).shuffle(self._order)

    def ask(self) -> dict:
        return self.ask_pending(())

    def ask_pending(self, pending: Sequence[dict]) -> dict:
        told = self._told_keys()
        running = {self.space.key(p) for p in pending}
        total = self.space.size
        cursor = self._cursor
        while cursor < total:
            index = self._order[cursor] if self._order is not None else cursor
            point = self.space.point_at(index)
            key = self.space.key(point)
            if key not in told:
                if key not in running:
                    return point
            elif cursor == self._cursor:
                self._cursor += 1  # told points stay told: never look at them again
            cursor += 1
        if len(told) >= total:
            raise SearchExhausted(f"all {total} points of the search space were evaluated")
        raise SearchExhausted("every point of the search space is evaluated or being evaluated")
