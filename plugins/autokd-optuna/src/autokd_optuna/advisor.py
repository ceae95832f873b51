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
import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from autokd import Advisor, ConfigError, SearchExhausted

from .storage import open_storage

if TYPE_CHECKING:  # pragma: no cover - typing only: optuna is imported lazily
    import optuna

__all__ = [
    "REPEAT_ATTR",
    "REPLAYED_ATTR",
    "SKIPPED_ATTR",
    "BOAdvisor",
    "NSGA2Advisor",
    "OptunaAdvisor",
    "TPEAdvisor",
    "evaluation_trials",
]

log = logging.getLogger("autokd")

# User attributes on optuna trials, so a study shared by several processes can be read
# back: which trials are real evaluations and which are bookkeeping.
REPEAT_ATTR = "autokd_repeat_of"  # a re-proposal answered with the values of trial N; nothing trained
SKIPPED_ATTR = "autokd_skipped"  # a proposal of an arch another process is evaluating; failed, nothing trained
REPLAYED_ATTR = "autokd_replayed"  # a recorded trial told before the first ask (warm start on resume)
CLAIM_ATTR = "autokd_claim"  # [time, trial number] of a proposal in a shared study (see _lost_race)
FALLBACK_ATTR = "autokd_fallback"  # an unevaluated arch enqueued after the sampler kept repeating itself
SPACE_ATTR = "autokd_search_space"  # study attributes: what the study was created for
OBJECTIVES_ATTR = "autokd_objectives"

_OPTIONS_FIELD = "auto_distillation.search.advisor_options"
_OPTUNA_TYPES = (type(None), bool, int, float, str)


# --- option checks ----------------------------------------------------------------------
# Each returns None when the value is acceptable, else what it must be.


def _int_at_least(low: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            return f"an integer >= {low}"
        return None

    return check


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "true or false"


def _probability(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        return "a number between 0 and 1"
    return None


def _probability_or_none(value: Any) -> str | None:
    return None if value is None else _probability(value)


def evaluation_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials of ``study`` that stand for an evaluation by an autokd process (complete
    or failed), without the bookkeeping trials (repeats answered from known values,
    proposals skipped because another process was evaluating that arch) and without
    unfinished ones."""
    from optuna.trial import TrialState

    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))
        if REPEAT_ATTR not in t.user_attrs and SKIPPED_ATTR not in t.user_attrs
    ]


class OptunaAdvisor(Advisor):
    """An autokd advisor backed by an optuna sampler, driven through ask-and-tell.

    Subclasses set :attr:`name`, :attr:`sampler_class`, :attr:`sampler_options` (the
    accepted ``search.advisor_options`` and their checks) and :attr:`sampler_defaults`.

    Options common to all: ``storage`` and ``study_name`` (from ``search.storage`` and
    ``search.study_name``: a shared study that several processes work on) and
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

    def __init__(self, space, objectives, seed=None, **options):
        super().__init__(space, objectives, seed, **options)
        import optuna

        self._check_options()
        self._max_repeats = self.options.get("max_repeats", self.default_max_repeats)
        # autokd reports every trial itself; optuna's per-trial INFO lines (one for every
        # bookkeeping trial too) would interleave with the progress bar. A level the user
        # chose is kept.
        if optuna.logging.get_verbosity() == optuna.logging.INFO:
            optuna.logging.set_verbosity(optuna.logging.WARNING)

        self._rng = random.Random(seed)
        self._distributions, self._labels = self._distributions_of(self.space)
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
    def _check_options(self) -> None:
        accepted = {"storage", "study_name", "max_repeats", *self.sampler_options}
        unknown = sorted(set(self.options) - accepted)
        if unknown:
            raise ConfigError(
                f"{_OPTIONS_FIELD}: {self.name} does not accept {unknown}; accepted: "
                f"{sorted(accepted - {'storage', 'study_name'})} (and search.storage / search.study_name)"
            )
        checks = dict(self.sampler_options, max_repeats=_int_at_least(0))
        problems = []
        for key, check in checks.items():
            if key in self.options:
                expected = check(self.options[key])
                if expected is not None:
                    problems.append(f"{_OPTIONS_FIELD}.{key}: must be {expected}, got {self.options[key]!r}")
        if problems:
            raise ConfigError(problems)
        if self.options.get("storage") is not None and not self.options.get("study_name"):
            raise ConfigError(
                "auto_distillation.search.study_name: missing: search.storage is set "
                f"({self.options['storage']!r}), so name the study, with the same name in every "
                "process that works on this search"
            )

    @staticmethod
    def _distributions_of(space) -> tuple[dict, dict[str, list | None]]:
        from optuna.distributions import CategoricalDistribution

        distributions, labels = {}, {}
        for name in space:
            choices = space[name]
            if all(isinstance(c, _OPTUNA_TYPES) for c in choices):
                distributions[name] = CategoricalDistribution(choices)
                labels[name] = None
            else:
                # optuna stores only None/bool/int/float/str choices: name the others by
                # their JSON, still one categorical choice each.
                names = [json.dumps(c, sort_keys=True) for c in choices]
                distributions[name] = CategoricalDistribution(names)
                labels[name] = names
        return distributions, labels

    def _sampler_kwargs(self) -> dict[str, Any]:
        kwargs = dict(self.sampler_defaults)
        kwargs.update({k: v for k, v in self.options.items() if k in self.sampler_options})
        return kwargs

    def _make_sampler(self):
        import optuna

        cls = getattr(optuna.samplers, self.sampler_class)
        kwargs = self._sampler_kwargs()
        try:
            return cls(seed=self.seed, **kwargs)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"{_OPTIONS_FIELD}: optuna.samplers.{self.sampler_class} rejected "
                f"{ {k: v for k, v in kwargs.items() if k in self.options} }: {exc}"
            ) from None

    def _open_study(self):
        import optuna

        storage_url = self.options.get("storage")
        study_name = self.options.get("study_name")
        storage = open_storage(storage_url) if storage_url is not None else None
        try:
            study = optuna.create_study(
                storage=storage,
                sampler=self.sampler,
                study_name=study_name,
                directions=self._directions,
                load_if_exists=True,
            )
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - any storage failure (I/O, database, driver) is reported with its URL
            raise ConfigError(
                f"auto_distillation.search.storage: optuna could not open study {study_name!r} in "
                f"{storage_url!r}: {type(exc).__name__}: {exc}"
            ) from None
        if storage is not None:
            self._check_study(study, storage_url, study_name)
        return study

    def _check_study(self, study, storage_url: str, study_name: str) -> None:
        """A shared study must be the same search: same directions, same space."""
        theirs = ["maximize" if d.name == "MAXIMIZE" else "minimize" for d in study.directions]
        space = json.loads(json.dumps(self.space.to_dict()))
        objectives = [[o.name, o.higher_is_better] for o in self.objectives]
        attrs = study.user_attrs
        where = f"study {study_name!r} in {storage_url!r}"
        fix = "use another search.study_name for a different search"
        if theirs != self._directions:
            raise ConfigError(
                f"auto_distillation.search.study_name: {where} optimises {theirs}, this search "
                f"{self._directions}; {fix}"
            )
        if SPACE_ATTR in attrs and attrs[SPACE_ATTR] != space:
            raise ConfigError(
                f"auto_distillation.search.study_name: {where} was created for the search space "
                f"{attrs[SPACE_ATTR]}, this search has {space}; {fix}"
            )
        if OBJECTIVES_ATTR in attrs and attrs[OBJECTIVES_ATTR] != objectives:
            raise ConfigError(
                f"auto_distillation.search.study_name: {where} was created for the metrics "
                f"{attrs[OBJECTIVES_ATTR]}, this search has {objectives}; {fix}"
            )
        if SPACE_ATTR not in attrs:
            study.set_user_attr(SPACE_ATTR, space)
            study.set_user_attr(OBJECTIVES_ATTR, objectives)

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

    # --- what is known ----------------------------------------------------------------
    def _known_and_running(self, exclude: int | None = None) -> tuple[dict[str, tuple], dict[str, list]]:
        """Archs with a result (key -> (values, trial number)) and archs being evaluated
        by another process (key -> [(trial number, claim)]), leaving out trial ``exclude``."""
        known = dict(self._told)
        running: dict[str, list] = {}
        if not self._shared:
            return known, running
        from optuna.trial import TrialState

        mine = {t.number for trials in self._pending.values() for t in trials} | {exclude}
        for trial in self.study.get_trials(deepcopy=False):
            cached = self._study_cache.get(trial.number)
            if cached is None:
                arch = self._decode(trial.params)
                key = None if arch is None else self.space.key(arch)
                bookkeeping = REPEAT_ATTR in trial.user_attrs or SKIPPED_ATTR in trial.user_attrs
                values = tuple(trial.values) if trial.values is not None else None
                cached = (key, trial.state, values, bookkeeping)
                if trial.state.is_finished():  # finished trials never change again
                    self._study_cache[trial.number] = cached
            key, state, values, bookkeeping = cached
            if key is None or bookkeeping:
                continue
            if state == TrialState.COMPLETE:
                known.setdefault(key, (values, trial.number))
            elif state == TrialState.FAIL:
                known.setdefault(key, (None, trial.number))
            elif state == TrialState.RUNNING and trial.number not in mine:
                running.setdefault(key, []).append((trial.number, trial.user_attrs.get(CLAIM_ATTR)))
        return known, running

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

    def _lost_race(self, trial, key: str) -> bool:
        """Another process may propose the same arch at the same moment (same seed or
        same data: the same proposal; a GP trial shows no params while the GP is being
        fitted). Each proposal is claimed with a time stamp once its params are in the
        study, then the study is read again: of two running trials of one arch, the
        earlier claim (then the lower number) keeps it and the other one asks again.
        Both processes compare the same stored claims, so they agree on who keeps it."""
        claim = [time.time(), trial.number]
        trial.set_user_attr(CLAIM_ATTR, claim)
        known, running = self._known_and_running(exclude=trial.number)
        if key in known:
            self._answer_repeat(trial, *known[key])
            return True
        for number, theirs in running.get(key, ()):
            if theirs is not None and list(theirs) < claim:
                self._skip(trial, number)
                return True
        return False

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

    def _find_unclaimed(self, key: str, values: tuple[float, ...] | None) -> int | None:
        from optuna.trial import TrialState

        self._known_and_running()  # refresh the cache of finished trials
        for number, (k, state, v, bookkeeping) in sorted(self._study_cache.items()):
            if k != key or bookkeeping or number in self._claimed:
                continue
            if values is None and state == TrialState.FAIL:
                return number
            if values is not None and state == TrialState.COMPLETE and v == values:
                return number
        return None


class BOAdvisor(OptunaAdvisor):
    """Gaussian-process Bayesian optimisation: :class:`optuna.samplers.GPSampler`.

    logEI for one objective, logEHVI over the Pareto front for several; categorical
    parameters get the GP's categorical kernel. Options: ``n_startup_trials`` (random
    trials before the GP is fitted, default 10), ``deterministic_objective`` (default
    false: trained students are noisy).
    """

    name = "BO"
    sampler_class = "GPSampler"
    # Every re-ask refits the GP (~1 s here), and a GP that believes its incumbent is
    # best proposes it again and again: fall back to the nearest unevaluated arch soon.
    default_max_repeats = 2
    # Once stuck it insists: one refit per trial, not three.
    one_attempt_when_stuck = True
    sampler_options: ClassVar[dict[str, Callable[[Any], str | None]]] = {
        "n_startup_trials": _int_at_least(0),
        "deterministic_objective": _boolean,
    }


class TPEAdvisor(OptunaAdvisor):
    """Tree-structured Parzen estimator: :class:`optuna.samplers.TPESampler`.

    Options: ``n_startup_trials`` (default 10), ``n_ei_candidates`` (default 24),
    ``multivariate``, ``group``, ``constant_liar`` (default true: a trial running in
    another process counts as a bad one until it finishes).
    """

    name = "TPE"
    sampler_class = "TPESampler"
    sampler_options: ClassVar[dict[str, Callable[[Any], str | None]]] = {
        "n_startup_trials": _int_at_least(0),
        "n_ei_candidates": _int_at_least(1),
        "multivariate": _boolean,
        "group": _boolean,
        "constant_liar": _boolean,
    }
    # optuna's default since 5.0; set for 4.x too, as shared studies rely on it.
    sampler_defaults: ClassVar[dict[str, Any]] = {"constant_liar": True}


class NSGA2Advisor(OptunaAdvisor):
    """NSGA-II genetic algorithm: :class:`optuna.samplers.NSGAIISampler`.

    Options: ``population_size`` (default 10 here, not optuna's 50: with optuna's
    default every one of the tens of trials a distillation search affords would come
    from the random first generation), ``mutation_prob`` (default 1/number of
    parameters), ``crossover_prob`` (default 0.9), ``swapping_prob`` (default 0.5).
    """

    name = "NSGA2"
    sampler_class = "NSGAIISampler"
    sampler_options: ClassVar[dict[str, Callable[[Any], str | None]]] = {
        "population_size": _int_at_least(2),
        "mutation_prob": _probability_or_none,
        "crossover_prob": _probability,
        "swapping_prob": _probability,
    }
    sampler_defaults: ClassVar[dict[str, Any]] = {"population_size": 10}
