"""The options of the optuna advisors (``search.advisor_options``): which keys each
advisor accepts, the check of each value, the modules a sampler needs beyond optuna,
and the sampler built from them. Every problem is a :class:`ConfigError` naming the key."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from typing import Any

from autokd import ConfigError

__all__ = [
    "OPTIONS_FIELD",
    "boolean",
    "check_options",
    "check_requirements",
    "int_at_least",
    "make_sampler",
    "probability",
    "probability_or_none",
]

OPTIONS_FIELD = "auto_distillation.search.advisor_options"
# Options every optuna advisor takes, beside its sampler's.
COMMON_OPTIONS = ("storage", "study_name", "max_repeats")

# --- option checks ----------------------------------------------------------------------
# Each returns None when the value is acceptable, else what it must be.


def int_at_least(low: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            return f"an integer >= {low}"
        return None

    return check


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "true or false"


def probability(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        return "a number between 0 and 1"
    return None


def probability_or_none(value: Any) -> str | None:
    return None if value is None else probability(value)


def check_requirements(name: str, sampler_class: str, requires: tuple[str, ...]) -> None:
    """The modules ``requires`` are installed, else a ConfigError naming the extra."""
    missing = [m for m in requires if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"auto_distillation.search.search_algorithm: {name} needs {', '.join(missing)} "
            f"(optuna.samplers.{sampler_class}), which is not installed: "
            "pip install 'autokd-optuna[bo]' (install torch==2.13.0 or your CUDA build of torch first)"
        )


def check_options(
    name: str, options: Mapping[str, Any], sampler_options: Mapping[str, Callable[[Any], str | None]]
) -> None:
    """Every key of ``options`` is accepted by advisor ``name`` and has a valid value."""
    accepted = {*COMMON_OPTIONS, *sampler_options}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(f"{OPTIONS_FIELD}: {name} does not accept {unknown}; accepted: {sorted(accepted)}")
    checks = dict(sampler_options, max_repeats=int_at_least(0))
    problems = []
    for key, check in checks.items():
        if key in options:
            expected = check(options[key])
            if expected is not None:
                problems.append(f"{OPTIONS_FIELD}.{key}: must be {expected}, got {options[key]!r}")
    if problems:
        raise ConfigError(problems)
    if options.get("storage") is not None and not options.get("study_name"):
        raise ConfigError(
            "auto_distillation.search.advisor_options.study_name: missing: advisor_options.storage is set "
            f"({options['storage']!r}), so name the study, with the same name in every "
            "process that works on this search"
        )


def make_sampler(
    sampler_class: str,
    seed: int | None,
    options: Mapping[str, Any],
    sampler_options: Mapping[str, Any],
    sampler_defaults: Mapping[str, Any],
):
    """``optuna.samplers.<sampler_class>`` with the defaults, then the sampler's options."""
    import optuna

    cls = getattr(optuna.samplers, sampler_class)
    kwargs = dict(sampler_defaults)
    kwargs.update({k: v for k, v in options.items() if k in sampler_options})
    try:
        return cls(seed=seed, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"{OPTIONS_FIELD}: optuna.samplers.{sampler_class} rejected "
            f"{ {k: v for k, v in kwargs.items() if k in options} }: {exc}"
        ) from None
