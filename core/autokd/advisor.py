"""The Advisor contract and the core's built-in advisors ``random`` and ``grid``."""

from __future__ import annotations

import random as _random
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from .space import SearchSpace

__all__ = ["Advisor", "GridAdvisor", "Objective", "RandomAdvisor", "SearchExhausted"]


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
    """

    budget_option: str | None = None

    def __init__(self, space, objectives: Sequence[Objective], seed: int | None = None, **options: Any):
        self.space = space if isinstance(space, SearchSpace) else SearchSpace(space)
        self.objectives = list(objectives)
        self.seed = seed
        self.options = dict(options)
        self.history: list[tuple[dict, tuple[float, ...] | None]] = []

    def ask(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def tell(self, arch: dict, values: Sequence[float] | None) -> None:
        self.history.append((dict(arch), None if values is None else tuple(values)))

    def _told_keys(self) -> set[str]:
        return {self.space.key(arch) for arch, _ in self.history}

    def _reject_options(self, *allowed: str) -> None:
        unknown = sorted(set(self.options) - set(allowed))
        if unknown:
            raise ValueError(
                f"{type(self).__name__}: unknown search.advisor_options {unknown}; "
                f"accepted: {sorted(allowed) or 'none'}"
            )


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
        told = self._told_keys()
        if len(told) >= self.space.size:
            raise SearchExhausted(f"all {self.space.size} points of the search space were evaluated")
        # Rejection sampling is cheap while the space is mostly unexplored; past half,
        # pick among the remaining points directly.
        if len(told) < self.space.size // 2:
            while True:
                point = self.space.sample(self._rng)
                if self.space.key(point) not in told:
                    return point
        remaining = [p for p in self.space.points() if self.space.key(p) not in told]
        return remaining[self._rng.randrange(len(remaining))]


class GridAdvisor(Advisor):
    """Exhaustive search over every point, in the space's fixed order.

    Options: ``shuffle`` (bool, default False): visit the points in an order drawn from
    the seeded RNG instead.
    """

    def __init__(self, space, objectives, seed=None, **options):
        super().__init__(space, objectives, seed, **options)
        self._reject_options("shuffle")
        self._order = list(self.space.points())
        if options.get("shuffle", False):
            _random.Random(seed).shuffle(self._order)

    def ask(self) -> dict:
        told = self._told_keys()
        for point in self._order:
            if self.space.key(point) not in told:
                return point
        raise SearchExhausted(f"all {self.space.size} points of the search space were evaluated")
