"""``NevergradAdvisor``: an autokd advisor driving a nevergrad optimizer by ask and tell.

The search space becomes a ``ng.p.Dict`` with one ``ng.p.Choice`` over the choice
indices of each parameter, so every parameter stays categorical (a softmax over its
choices, no rounding of an ordered index). nevergrad minimises: the values of metrics
whose ``higher_is_better`` is true are negated before they are told.

nevergrad and numpy are imported when an advisor is built, never when this module is
imported: ``autokd plugins`` imports every plugin and must stay fast (nevergrad alone
takes about two seconds to import).
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import math
import random
import warnings
from collections.abc import Iterator, Mapping, Sequence
from numbers import Real
from typing import Any

import autokd
from autokd import Advisor, Objective, SearchExhausted

__all__ = ["DEFAULT_MAX_REPEATS", "DEFAULT_OPTIMIZER", "NAMED_OPTIMIZERS", "NevergradAdvisor", "fixed_optimizer"]

log = logging.getLogger("autokd.nevergrad")

DEFAULT_OPTIMIZER = "NGOpt"
# The optimizers registered as advisor names of their own (issue #4); any other name of
# nevergrad's registry is reachable through ``search_algorithm: nevergrad``.
NAMED_OPTIMIZERS = ("NGOpt", "DE", "TwoPointsDE", "CMA", "OnePlusOne", "PortfolioDiscreteOnePlusOne")
# nevergrad optimizers converge on small discrete spaces and then keep proposing their
# incumbent. Answering a repeat costs one nevergrad ask+tell (10-30 ms); on the benchmark
# landscape NGOpt needed the same median trials to reach 99% of the best value with 10,
# 30 or 100 repeats allowed, so the bound is kept small.
DEFAULT_MAX_REPEATS = 20

_OPTIONS = ("optimizer", "budget", "num_workers", "max_concurrent", "failure_values", "max_repeats", "deterministic")
_REGISTRY_HINT = 'python -c "import nevergrad as ng; print(sorted(ng.optimizers.registry))"'


class NevergradAdvisor(Advisor):
    """Search with a nevergrad optimizer over a categorical parametrization of the space.

    Options (``search.advisor_options``):

    - ``optimizer`` (str, default ``"NGOpt"``): a name of ``nevergrad.optimizers.registry``
      (matched case-insensitively when the match is unique).
    - ``budget`` (int, default the search's ``max_trials``): the number of evaluations the
      optimizer is told it has. ``NGOpt`` uses it to choose and schedule its algorithms.
    - ``num_workers`` (int, default 1, or the search's ``executor.max_concurrent``):
      evaluations the optimizer expects in parallel. The search loop passes
      ``max_concurrent`` when trials run in parallel; it becomes ``num_workers`` unless
      that is set, or 1 for optimizers that run one evaluation at a time.

    Parallel searches: the loop asks while trials are running; every asked arch stays
    out of later proposals until it is told (a batch of asks, as nevergrad's
    ``num_workers`` expects), so no arch runs twice.
    - ``failure_values`` (number or list of numbers, default None): the metric values a
      failed trial is told as, one per metric in ``search.metrics`` order (raw values,
      e.g. ``[0.0, 1000.0]`` for accuracy and latency in ms). By default a failed trial is
      told, per objective, the worst loss seen so far plus the spread of the losses seen
      (``worst + (worst - best)``; ``worst + max(|worst|, 1)`` while all are equal), so it
      ranks below every successful trial without stretching the scale the optimizer sees.
      Failures told before any trial succeeded wait and are told once one has.
    - ``max_repeats`` (int, default 20): how many times in one ``ask`` the optimizer may
      re-propose an arch that was already told before the advisor proposes an untold
      arch drawn from its own seeded RNG instead.
    - ``deterministic`` (bool, default True): each ``ng.p.Choice`` takes its most likely
      choice (``True``) or samples one from its softmax weights (``False``, nevergrad's
      default). Deterministic choices needed fewer trials on the benchmark landscape for
      every named optimizer (NGOpt: median 18 against 23 trials to 99% of the best).

    Every proposal is an arch not told before: a re-proposed one is answered internally
    with its known values (the optimizer learns from it, no trial is used) and the
    optimizer is asked again. A told arch that was never asked (a resumed search, or an
    arch proposed by someone else) is told as ``parametrization.spawn_child(...)``.

    Reproducibility: the parametrization's ``random_state`` and the numpy global RNG that
    some nevergrad code draws from are both seeded from ``seed``; the global one is swapped
    in only while the optimizer runs and the caller's global state is restored after, so
    the advisor neither reads nor disturbs the process's global RNG.
    """

    budget_option = "budget"  # the search loop passes max_trials as the budget
    workers_option = "max_concurrent"  # ... and trials running at once, when above 1
    tracks_pending = True  # an asked arch is not proposed again until told

    def __init__(self, space, objectives: Sequence[Objective], seed: int | None = None, **options: Any):
        super().__init__(space, objectives, seed, **options)
        self._reject_storage()
        self._reject_options(*_OPTIONS)
        if not self.objectives:
            raise ValueError("nevergrad advisor: no objectives: search.metrics must name at least one metric")
        self.optimizer_name = _optimizer_name(self.options.get("optimizer", DEFAULT_OPTIMIZER))
        self.budget = _positive_int_or_none(self.options.get("budget"), "budget")
        self.num_workers = _positive_int_or_none(self.options.get("num_workers", 1), "num_workers") or 1
        self.max_repeats = _positive_int_or_none(self.options.get("max_repeats", DEFAULT_MAX_REPEATS), "max_repeats")
        if self.max_repeats is None:
            self.max_repeats = DEFAULT_MAX_REPEATS
        self.deterministic = self.options.get("deterministic", True)
        if not isinstance(self.deterministic, bool):
            raise ValueError(
                f"nevergrad advisor: search.advisor_options.deterministic must be true or false, "
                f"got {self.deterministic!r}"
            )
        failure_values = self.options.get("failure_values")
        self._failure_losses = (
            None
            if failure_values is None
            else self._losses(
                _number_list(failure_values, len(self.objectives)), field="search.advisor_options.failure_values"
            )
        )

        import numpy as np

        ng = _import_nevergrad()
        self._np = np
        self._ng = ng
        self._names = list(self.space)
        # Two independent streams from one seed: the parametrization's random_state (what
        # nevergrad documents as the optimizer's RNG) and a private stand-in for numpy's
        # global RNG, which parts of nevergrad call directly.
        entropy = None if seed is None else int(seed) % 2**64
        param_seq, global_seq = np.random.SeedSequence(entropy).spawn(2)
        self._global_rng_state = np.random.RandomState(np.random.MT19937(global_seq)).get_state()
        self._fallback_rng = random.Random(None if seed is None else f"autokd-nevergrad:{seed}")

        self.parametrization = ng.p.Dict(
            **{
                name: ng.p.Choice(list(range(len(self.space[name]))), deterministic=self.deterministic)
                for name in self._names
            }
        )
        self.parametrization.random_state = np.random.RandomState(np.random.MT19937(param_seq))
        factory = ng.optimizers.registry[self.optimizer_name]
        concurrent = _positive_int_or_none(self.options.get("max_concurrent"), "max_concurrent")
        if "num_workers" not in self.options and concurrent is not None:
            self.num_workers = 1 if getattr(factory, "no_parallelization", False) else concurrent
        if self.num_workers > 1 and getattr(factory, "no_parallelization", False):
            raise ValueError(
                f"nevergrad optimizer {self.optimizer_name!r} runs one evaluation at a time: set "
                f"search.advisor_options.num_workers to 1 (got {self.num_workers}) or choose another optimizer"
            )
        try:
            with self._own_global_rng():
                self.optimizer = factory(self.parametrization, budget=self.budget, num_workers=self.num_workers)
        except Exception as exc:
            raise ValueError(
                f"nevergrad optimizer {self.optimizer_name!r} (search.advisor_options.optimizer) cannot be "
                f"built with budget={self.budget}, num_workers={self.num_workers} over "
                f"{len(self._names)} categorical parameters: {type(exc).__name__}: {exc}"
            ) from None

        self._told: dict[str, tuple[float, ...] | None] = {}  # key -> losses (None: failed)
        self._asked: dict[str, Any] = {}  # key -> the asked candidate, until it is told
        self._deferred_failures: list[Any] = []  # failed before any success: no scale yet
        self._worst: list[float] | None = None
        self._best: list[float] | None = None
        self.repeats_answered = 0  # re-proposals answered from told values, for diagnostics
        self.fallback_proposals = 0  # proposals the advisor drew itself after max_repeats

    # --- options ------------------------------------------------------------------------
    def _reject_storage(self) -> None:
        shared = sorted(k for k in ("storage", "study_name") if self.options.get(k) is not None)
        if shared:
            raise ValueError(
                f"nevergrad advisors keep their state in one process and cannot share a search "
                f"through advisor_options.{' / advisor_options.'.join(shared)}: remove it, or use an autokd-optuna advisor "
                f"(BO, TPE, NSGA2) to run one search from several processes"
            )

    # --- the Advisor contract -----------------------------------------------------------
    def ask(self) -> dict:
        if len(self._told) >= self.space.size:
            raise SearchExhausted(f"all {self.space.size} points of the search space were told")
        for _ in range(self.max_repeats):
            try:
                with self._own_global_rng():
                    candidate = self.optimizer.ask()
            except Exception as exc:
                raise self._optimizer_failed("propose an arch", exc) from exc
            arch = self._arch(candidate.value)
            key = self.space.key(arch)
            if key in self._told:
                # Answer the repeat ourselves: the optimizer gets the value it asked for and
                # no trial is spent on an arch already evaluated.
                self.repeats_answered += 1
                self._tell_optimizer(candidate, self._told[key])
                continue
            if key in self._asked:
                continue  # in flight (asked, not told yet): propose something else
            self._asked[key] = candidate
            return arch
        arch = self._untold_at_random()
        self.fallback_proposals += 1
        log.info(
            "nevergrad %s re-proposed told archs %d times in a row; proposing an untold arch at random",
            self.optimizer_name,
            self.max_repeats,
        )
        return arch

    def tell(self, arch: dict, values: Sequence[float] | None) -> None:
        point = self.space.validate(arch)
        losses = None if values is None else self._losses(values, field="tell(arch, values): values")
        super().tell(point, values)
        key = self.space.key(point)
        seen_before = key in self._told
        self._told[key] = losses
        candidate = self._asked.pop(key, None)  # the optimizer's own proposal, if it was one
        if candidate is None:
            if seen_before:
                return  # the optimizer already knows this arch; telling it twice adds nothing
            indices = dict(zip(self._names, self.space.encode(point), strict=True))
            candidate = self.parametrization.spawn_child(new_value=indices)
        self._tell_optimizer(candidate, losses)

    # --- results ------------------------------------------------------------------------
    def pareto_front(self) -> list[tuple[dict, tuple[float, ...]]]:
        """nevergrad's Pareto front as ``(arch, raw metric values)`` pairs (for one
        objective: the recommended arch).

        nevergrad only keeps points under the reference bounds it set from its first
        tells, so this is a subset of the front over every trial; the search result's
        front is ``AutoDistillation.pareto_front``.
        """
        with self._own_global_rng():
            front = self.optimizer.pareto_front() if self._told else []
        out, seen = [], set()
        for candidate in front:
            arch = self._arch(candidate.value)
            key = self.space.key(arch)
            losses = self._told.get(key)
            if losses is None or key in seen:
                continue
            seen.add(key)
            out.append((arch, self._raw(losses)))
        return out

    # --- internals ----------------------------------------------------------------------
    def _untold_at_random(self) -> dict:
        taken = self._told.keys() | self._asked.keys()
        if len(taken) < self.space.size // 2:  # mostly unexplored: rejection sampling is cheap
            while True:
                point = self.space.sample(self._fallback_rng)
                if self.space.key(point) not in taken:
                    return point
        remaining = [p for p in self.space.points() if self.space.key(p) not in taken]
        if not remaining:
            raise SearchExhausted("every point of the search space was told or is being evaluated")
        return remaining[self._fallback_rng.randrange(len(remaining))]

    @contextlib.contextmanager
    def _own_global_rng(self) -> Iterator[None]:
        np = self._np
        saved = np.random.get_state()
        np.random.set_state(self._global_rng_state)
        try:
            yield
        finally:
            self._global_rng_state = np.random.get_state()
            np.random.set_state(saved)

    def _arch(self, indices: Mapping[str, int]) -> dict:
        return self.space.decode([int(indices[name]) for name in self._names])

    def _losses(self, values: Sequence[float], field: str) -> tuple[float, ...]:
        if isinstance(values, Real):
            values = [values]
        values = list(values)
        names = [o.name for o in self.objectives]
        if len(values) != len(self.objectives):
            raise ValueError(f"nevergrad advisor: {field} has {len(values)} values, expected one per metric {names}")
        bad = [
            f"{n}={v!r}"
            for n, v in zip(names, values, strict=True)
            if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v)
        ]
        if bad:
            raise ValueError(
                f"nevergrad advisor: {field} must be finite numbers, got {', '.join(bad)} "
                f"(a failed trial is told as None)"
            )
        return tuple(
            -float(v) if o.higher_is_better else float(v) for o, v in zip(self.objectives, values, strict=True)
        )

    def _raw(self, losses: Sequence[float]) -> tuple[float, ...]:
        return tuple(-v if o.higher_is_better else v for o, v in zip(self.objectives, losses, strict=True))

    def _failure_penalty(self) -> tuple[float, ...] | None:
        if self._failure_losses is not None:
            return self._failure_losses
        if self._worst is None:
            return None
        return tuple(w + (w - b if w > b else max(abs(w), 1.0)) for w, b in zip(self._worst, self._best, strict=True))

    def _tell_optimizer(self, candidate: Any, losses: tuple[float, ...] | None) -> None:
        if losses is None:
            losses = self._failure_penalty()
            if losses is None:
                self._deferred_failures.append(candidate)
                return
        else:
            self._worst = list(losses) if self._worst is None else [max(a, b) for a, b in zip(self._worst, losses)]
            self._best = list(losses) if self._best is None else [min(a, b) for a, b in zip(self._best, losses)]
        self._send(candidate, losses)
        if self._deferred_failures and self._worst is not None:
            deferred, self._deferred_failures = self._deferred_failures, []
            penalty = self._failure_penalty()
            for failed in deferred:
                self._send(failed, penalty)

    def _send(self, candidate: Any, losses: tuple[float, ...]) -> None:
        loss = losses[0] if len(losses) == 1 else list(losses)
        try:
            with self._own_global_rng(), warnings.catch_warnings():
                if len(losses) > 1:
                    # While nevergrad sets its hypervolume reference from the first tells, it
                    # scores a point worse than all earlier ones in every objective as inf
                    # and then warns about its own inf; nothing the user can act on.
                    warnings.simplefilter("ignore", self._ng.errors.LossTooLargeWarning)
                    warnings.simplefilter("ignore", self._ng.errors.BadLossWarning)
                self.optimizer.tell(candidate, loss)
        except self._ng.errors.TellNotAskedNotSupportedError:
            # Some optimizers (EDA, EMNA, recast scipy methods) only learn from their own
            # proposals; the arch is still in the told set, so it is never proposed again.
            log.debug("nevergrad %s cannot learn from an arch it did not ask for", self.optimizer_name)
        except Exception as exc:
            raise self._optimizer_failed("learn a told arch", exc) from exc

    def _optimizer_failed(self, what: str, exc: Exception) -> autokd.AutoKDError:
        hint = (
            "some nevergrad optimizers need a budget: set search.advisor_options.budget (e.g. to max_trials), "
            "or choose another search.advisor_options.optimizer"
            if self.budget is None
            else "choose another search.advisor_options.optimizer"
        )
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return autokd.AutoKDError(f"nevergrad optimizer {self.optimizer_name!r} failed to {what} ({detail}): {hint}")


# --- option parsing -----------------------------------------------------------------------


def _import_nevergrad():
    """``import nevergrad``, leaving numpy's global RNG as it was: importing nevergrad
    draws from it (measured with nevergrad 1.0.12)."""
    import numpy as np

    saved = np.random.get_state()
    try:
        import nevergrad
    finally:
        np.random.set_state(saved)
    return nevergrad


def _optimizer_name(name: Any) -> str:
    registry = _import_nevergrad().optimizers.registry
    if not isinstance(name, str) or not name:
        raise ValueError(
            f"nevergrad advisor: search.advisor_options.optimizer must be the name of a nevergrad "
            f"optimizer such as {DEFAULT_OPTIMIZER!r}, got {name!r}"
        )
    if name in registry:
        return name
    folded = [n for n in registry if n.lower() == name.lower()]
    if len(folded) == 1:
        return folded[0]
    close = difflib.get_close_matches(name, list(registry), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(
        f"unknown nevergrad optimizer {name!r} in search.advisor_options.optimizer.{hint} autokd registers "
        f"{', '.join(NAMED_OPTIMIZERS)} as search_algorithm names; any of nevergrad's {len(registry)} "
        f"optimizers works through search_algorithm: nevergrad, list them with {_REGISTRY_HINT}"
    )


def _positive_int_or_none(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"nevergrad advisor: search.advisor_options.{field} must be a positive integer, got {value!r}")
    return value


def _number_list(value: Any, count: int) -> list:
    if isinstance(value, Real) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValueError(
            f"nevergrad advisor: search.advisor_options.failure_values must be a number or a list of "
            f"{count} numbers (one per metric), got {value!r}"
        )
    return list(value)


def fixed_optimizer(name: str):
    """The advisor factory registered as ``name``: a :class:`NevergradAdvisor` whose
    ``optimizer`` option is ``name``."""

    def factory(space, objectives, seed=None, **options):
        chosen = options.pop("optimizer", name)
        if chosen != name:
            raise ValueError(
                f"search_algorithm {name!r} is the nevergrad optimizer {name}; it does not take "
                f"search.advisor_options.optimizer={chosen!r}. Use search_algorithm: nevergrad with "
                f"advisor_options.optimizer: {chosen} instead"
            )
        return NevergradAdvisor(space, objectives, seed, optimizer=name, **options)

    factory.budget_option = NevergradAdvisor.budget_option
    factory.workers_option = NevergradAdvisor.workers_option
    factory.__name__ = factory.__qualname__ = f"{name}Advisor"
    factory.__doc__ = f"nevergrad's {name} optimizer as an autokd advisor (see NevergradAdvisor for options)."
    return factory
