"""Advisors that drive optuna samplers through ask-and-tell: ``BO`` (``GPSampler``),
``TPE`` (``TPESampler``) and ``NSGA2`` (``NSGAIISampler``).

Every search-space key is one categorical optuna parameter whose choices are the
space's own values (no rounding of indices). optuna is imported when an advisor is
built, never when the plugin is listed.

An arch that was already evaluated (by this process, or by another one sharing the
study) is never handed to the search loop again while an unevaluated one can be
proposed: the advisor answers the sampler's re-proposal itself from the known values,
marks that optuna trial (``autokd_repeat_of``) and asks again, a bounded number of times.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from autokd import Advisor, ConfigError, SearchExhausted

from .options import check_options, check_requirements, make_sampler
from .shared import SharedStudyClaims
from .study import FALLBACK_ATTR, REPEAT_ATTR, REPLAYED_ATTR, SKIPPED_ATTR, distributions_of, open_study

if TYPE_CHECKING:  # pragma: no cover - typing only: optuna is imported lazily
    import optuna

__all__ = ["OptunaAdvisor"]

log = logging.getLogger("autokd")


class OptunaAdvisor(SharedStudyClaims, Advisor):
    """An autokd advisor backed by an optuna sampler, driven through ask-and-tell.

    Subclasses set :attr:`name`, :attr:`sampler_class`, :attr:`sampler_options` (the
    accepted ``search.advisor_options`` and their checks) and :attr:`sampler_defaults`.

    Options common to all: ``storage`` and ``study_name`` (a shared study that several
    processes work on) and
    ``max_repeats`` (default 10, BO: 2): how many times one :meth:`ask` lets the sampler
    re-propose known archs before the advisor proposes the unevaluated arch nearest to
    the sampler's last proposal.

    :ivar study: the :class:`optuna.Study` (in memory unless ``storage`` is set).
    :ivar repeated_proposals: sampler proposals of known archs answered internally.
    :ivar skipped_proposals: sampler proposals of archs another process was evaluating.
    """

    name = "optuna"
    sampler_class = ""
    # Every ask leaves a RUNNING optuna trial until it is told: ask() never proposes its
    # arch again (see _pending), and TPE's constant_liar (on by default) models it.
    tracks_pending = True
    sampler_options: ClassVar[dict[str, Callable[[Any], str | None]]] = {}
    sampler_defaults: ClassVar[dict[str, Any]] = {}
    default_max_repeats = 10
    # After a fallback, let the sampler propose once only before falling back again
    # (for samplers whose re-proposals are deterministic and costly).
    one_attempt_when_stuck = False

    # Modules the sampler needs beyond optuna, and the extra that installs them.
    requires: ClassVar[tuple[str, ...]] = ()

    def __init__(self, space, objectives, seed=None, **options):
        super().__init__(space, objectives, seed, **options)
        import optuna

        self._check_requirements()
        self._check_options()
        self._max_repeats = self.options.get("max_repeats", self.default_max_repeats)
        # autokd reports every trial itself; optuna's per-trial INFO lines (one for every
        # bookkeeping trial too) would interleave with the progress bar. A level the user
        # chose is kept.
        if optuna.logging.get_verbosity() == optuna.logging.INFO:
            optuna.logging.set_verbosity(optuna.logging.WARNING)

        self._rng = random.Random(seed)
        self._distributions, self._labels = distributions_of(self.space)
        self._directions = ["maximize" if o.higher_is_better else "minimize" for o in self.objectives]
        if not self._directions:
            raise ConfigError("auto_distillation.search.metrics: empty: name at least one metric to optimise")
        self.sampler = self._make_sampler()
        self.study = self._open_study()
        self._shared = self.options.get("storage") is not None
        # key -> (values or None for a failed arch, optuna trial number or None)
        self._told: dict[str, tuple[tuple[float, ...] | None, int | None]] = {}
        self._pending: dict[str, list[optuna.trial.Trial]] = {}
        self._study_cache: dict[int, tuple[str | None, Any, tuple[float, ...] | None, bool]] = {}
        self._claimed: set[int] = set()
        self._stuck = False
        self.repeated_proposals = 0
        self.skipped_proposals = 0

    # --- construction ---------------------------------------------------------------
    def _check_requirements(self) -> None:
        check_requirements(self.name, self.sampler_class, self.requires)

    def _check_options(self) -> None:
        check_options(self.name, self.options, self.sampler_options)

    def _make_sampler(self):
        return make_sampler(self.sampler_class, self.seed, self.options, self.sampler_options, self.sampler_defaults)

    def _open_study(self):
        return open_study(self.space, self.objectives, self._directions, self.sampler, self.options)

    # --- params <-> arch --------------------------------------------------------------
    def _decode(self, params: Mapping[str, Any]) -> dict | None:
        """The arch of optuna ``params``, or None if they are not a point of this space."""
        arch = {}
        for name in self._distributions:
            if name not in params:
                return None
            value = params[name]
            labels = self._labels[name]
            if labels is None:
                arch[name] = value
            else:
                if value not in labels:
                    return None
                arch[name] = self.space[name][labels.index(value)]
        return arch

    def _params(self, arch: Mapping[str, Any]) -> dict:
        indices = self.space.encode(arch)
        return {
            name: arch[name] if self._labels[name] is None else self._labels[name][index]
            for name, index in zip(self._distributions, indices, strict=True)
        }

    # --- ask / tell ---------------------------------------------------------------------
    def ask(self) -> dict:
        proposal = None
        attempts = self._max_repeats + 1
        if self._stuck and self.one_attempt_when_stuck:
            attempts = 1
        for _ in range(attempts):
            known, running = self._known_and_running()
            self._raise_if_exhausted(known, running)
            trial = self.study.ask(self._distributions)
            proposal = self._decode(trial.params)
            key = self.space.key(proposal)
            if key in known:
                self._answer_repeat(trial, *known[key])
                continue
            if key in running or key in self._pending:
                self._skip(trial, running[key][0][0] if key in running else None)
                continue
            if self._shared and self._lost_race(trial, key):
                continue
            self._pending.setdefault(key, []).append(trial)
            self._stuck = False
            return proposal
        self._stuck = True
        return self._fallback(proposal)

    def _raise_if_exhausted(self, known: Mapping, running: Mapping) -> None:
        if len(known) >= self.space.size:
            raise SearchExhausted(f"all {self.space.size} points of the search space were evaluated")
        busy = {k for k in [*running, *self._pending] if k not in known}
        if len(known) + len(busy) >= self.space.size:
            raise SearchExhausted(
                f"the {len(busy)} points of the search space not yet evaluated are being evaluated "
                f"(study {self.study.study_name!r})"
            )

    def _answer_repeat(self, trial, values, number) -> None:
        from optuna.trial import TrialState

        self.repeated_proposals += 1
        trial.set_user_attr(REPEAT_ATTR, number if number is not None else -1)
        if values is None:
            self.study.tell(trial, state=TrialState.FAIL)
        else:
            # Told as a complete trial with the known values, so the model sees the point
            # again and moves on (a failed trial would be ignored and proposed again).
            self.study.tell(trial, list(values))

    def _skip(self, trial, running_number: int | None) -> None:
        from optuna.trial import TrialState

        self.skipped_proposals += 1
        trial.set_user_attr(SKIPPED_ATTR, running_number if running_number is not None else -1)
        # Failed trials are ignored by every sampler: the running trial already stands
        # for this arch (as a pending point in GP's and TPE's constant liar).
        self.study.tell(trial, state=TrialState.FAIL)

    def _fallback(self, proposal: dict) -> dict:
        """The sampler kept proposing known archs (GP does so for good once it believes
        its incumbent is best: optuna/optuna#2021, #5440). Propose the unevaluated arch
        nearest to its last proposal instead, through the study's queue so optuna
        records it as its own trial."""
        for attempt in range(3):
            known, running = self._known_and_running()
            self._raise_if_exhausted(known, running)
            arch = self._nearest_free(proposal, known, running)
            log.debug("%s keeps proposing evaluated archs; proposing the nearest unevaluated %s", self.name, arch)
            self.study.enqueue_trial(self._params(arch), user_attrs={FALLBACK_ATTR: True})
            trial = self.study.ask(self._distributions)
            # Another process sharing the study may have taken the queued trial first;
            # this one is then whatever the sampler proposed, checked like any proposal.
            proposed = self._decode(trial.params)
            key = self.space.key(proposed)
            if self._shared and attempt < 2 and self._lost_race(trial, key):
                continue
            break
        self._pending.setdefault(key, []).append(trial)
        return proposed

    def _nearest_free(self, center: dict, known: Mapping, running: Mapping) -> dict:
        """The unevaluated, not running arch with the fewest parameters different from
        ``center``; ties go to the smallest rank distance on numeric parameters, then to
        the seeded RNG."""

        def free(point: dict) -> bool:
            key = self.space.key(point)
            return key not in known and key not in running and key not in self._pending

        names = list(self.space)
        ranks = {}
        for name in names:
            choices = self.space[name]
            if all(isinstance(c, int | float) and not isinstance(c, bool) for c in choices):
                order = sorted(range(len(choices)), key=lambda i: choices[i])
                ranks[name] = {i: r for r, i in enumerate(order)}
        center_idx = self.space.encode(center)

        def rank_distance(indices: Sequence[int]) -> int:
            return sum(
                abs(ranks[n][i] - ranks[n][c]) for n, i, c in zip(names, indices, center_idx, strict=True) if n in ranks
            )

        budget = 100_000  # candidate points looked at before settling for a random free one
        for radius in range(1, len(names) + 1):
            found: list[tuple[int, float, tuple[int, ...]]] = []
            for changed in itertools.combinations(range(len(names)), radius):
                alternatives = [[i for i in range(len(self.space[names[k]])) if i != center_idx[k]] for k in changed]
                for combo in itertools.product(*alternatives):
                    budget -= 1
                    indices = list(center_idx)
                    for k, i in zip(changed, combo, strict=True):
                        indices[k] = i
                    if free(self.space.decode(indices)):
                        found.append((rank_distance(indices), self._rng.random(), tuple(indices)))
                    if budget <= 0:
                        break
                if budget <= 0:
                    break
            if found:
                return self.space.decode(min(found)[2])
            if budget <= 0:
                break
        for _ in range(1000):
            point = self.space.sample(self._rng)
            if free(point):
                return point
        remaining = [p for p in self.space.points() if free(p)]
        return remaining[self._rng.randrange(len(remaining))]

    def tell(self, arch: dict, values: Sequence[float] | None) -> None:
        super().tell(arch, values)
        arch = self.space.validate(arch)
        key = self.space.key(arch)
        if values is not None:
            values = tuple(float(v) for v in values)
            if len(values) != len(self.objectives):
                raise ValueError(
                    f"{self.name}.tell: got {len(values)} values for {len(self.objectives)} objectives "
                    f"{[o.name for o in self.objectives]}"
                )
        pending = self._pending.get(key)
        if pending:
            trial = pending.pop(0)
            if not pending:
                del self._pending[key]
            self._finish(trial, values)
            number: int | None = trial.number
        elif key in self._told:
            # The search loop answering a re-proposal from its results: the study has it.
            return
        else:
            number = self._add_recorded(arch, values)
        self._told.setdefault(key, (values, number))

    def _finish(self, trial, values: tuple[float, ...] | None) -> None:
        from optuna.trial import TrialState

        if values is None:
            self.study.tell(trial, state=TrialState.FAIL)
        else:
            self.study.tell(trial, list(values))

    def _add_recorded(self, arch: dict, values: tuple[float, ...] | None) -> int | None:
        """Tell optuna a trial it did not propose: a recorded trial replayed on resume, or
        an arch the search loop chose itself. A persistent study that already holds it
        (the same process before a restart) is not told twice."""
        from optuna.trial import TrialState, create_trial

        params = self._params(arch)
        if self._shared:
            number = self._find_unclaimed(self.space.key(arch), values)
            if number is not None:
                self._claimed.add(number)
                return number
        state = TrialState.COMPLETE if values is not None else TrialState.FAIL
        self.study.add_trial(
            create_trial(
                state=state,
                params=params,
                distributions=self._distributions,
                values=None if values is None else list(values),
                user_attrs={REPLAYED_ATTR: True},
            )
        )
        return None
