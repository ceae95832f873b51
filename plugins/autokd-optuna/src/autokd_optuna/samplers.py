"""The three optuna advisors: ``BO`` (Gaussian-process BO), ``TPE`` and ``NSGA2``, each
an :class:`~autokd_optuna.advisor.OptunaAdvisor` with its sampler, options and defaults."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from .advisor import OptunaAdvisor
from .options import boolean, int_at_least, probability, probability_or_none

__all__ = ["BOAdvisor", "NSGA2Advisor", "TPEAdvisor"]


class BOAdvisor(OptunaAdvisor):
    """Gaussian-process Bayesian optimisation: :class:`optuna.samplers.GPSampler`.

    logEI for one objective, logEHVI over the Pareto front for several; categorical
    parameters get the GP's categorical kernel. Options: ``n_startup_trials`` (random
    trials before the GP is fitted, default 10), ``deterministic_objective`` (default
    false: trained students are noisy).
    """

    name = "BO"
    sampler_class = "GPSampler"
    requires = ("torch", "scipy")
    # Every re-ask refits the GP (~1 s here), and a GP that believes its incumbent is
    # best proposes it again and again: fall back to the nearest unevaluated arch soon.
    default_max_repeats = 2
    # Once stuck it insists: one refit per trial, not three.
    one_attempt_when_stuck = True
    sampler_options: ClassVar[dict[str, Callable[[Any], str | None]]] = {
        "n_startup_trials": int_at_least(0),
        "deterministic_objective": boolean,
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
        "n_startup_trials": int_at_least(0),
        "n_ei_candidates": int_at_least(1),
        "multivariate": boolean,
        "group": boolean,
        "constant_liar": boolean,
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
        "population_size": int_at_least(2),
        "mutation_prob": probability_or_none,
        "crossover_prob": probability,
        "swapping_prob": probability,
    }
    sampler_defaults: ClassVar[dict[str, Any]] = {"population_size": 10}
