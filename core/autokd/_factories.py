"""The search's advisor and executor, made from the names and options of the config's
``search`` section through the registry; a factory that rejects its options gives a
:class:`ConfigError` naming the field."""

from __future__ import annotations

from typing import Any

from .advisor import Advisor, Objective, with_budget, with_workers
from .config import ExecutorConfig, SearchConfig
from .errors import ConfigError, UnknownNameError
from .executor import Executor
from .plugins import registry
from .space import SearchSpace

__all__ = ["make_advisor", "make_executor"]


def make_advisor(
    search: SearchConfig, space: SearchSpace, objectives: list[Objective], seed: int | None, max_trials: int
) -> Advisor:
    """The advisor ``search.search_algorithm`` names, with ``search.advisor_options``."""
    factory = registry().advisors.get(search.search_algorithm)
    options = dict(search.advisor_options)
    # An advisor that plans by its number of evaluations gets max_trials, one that
    # plans for parallel evaluations the number of trials running at once.
    options = with_budget(factory, options, max_trials)
    options = with_workers(factory, options, search.executor.max_concurrent)
    try:
        return factory(space, objectives, seed=seed, **options)
    except ConfigError:
        raise  # the advisor already named the field (e.g. advisor_options.storage) and the fix
    except TypeError as exc:
        raise ConfigError(
            f"auto_distillation.search.advisor_options: {search.search_algorithm} rejected the options "
            f"{sorted(options)}: {exc}"
        ) from None
    except ValueError as exc:
        raise ConfigError(f"auto_distillation.search.advisor_options: {exc}") from None


def make_executor(cfg: ExecutorConfig, runner: Any, source: str | None) -> Executor:
    """The executor ``search.executor.name`` names, running ``runner``'s trials."""
    try:
        factory = registry().executors.get(cfg.name)
    except UnknownNameError as exc:
        raise ConfigError(f"auto_distillation.search.executor.name: {exc}", source) from None
    try:
        return factory(runner, max_concurrent=cfg.max_concurrent, **cfg.options)
    except ConfigError:
        raise  # the executor already named the field (e.g. search.executor.devices_per_trial) and the fix
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"auto_distillation.search.executor: {cfg.name}: {exc}", source) from None
