"""The optuna study behind an advisor: the user attributes that mark autokd's
bookkeeping trials, the categorical distributions of a search space, and opening a
study (in memory, or shared through ``storage``) checked to be the same search."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from autokd import ConfigError, Objective

from .storage import open_storage

if TYPE_CHECKING:  # pragma: no cover - typing only: optuna is imported lazily
    import optuna

__all__ = [
    "CLAIM_ATTR",
    "FALLBACK_ATTR",
    "OBJECTIVES_ATTR",
    "REPEAT_ATTR",
    "REPLAYED_ATTR",
    "SKIPPED_ATTR",
    "SPACE_ATTR",
    "distributions_of",
    "evaluation_trials",
    "open_study",
]

# User attributes on optuna trials, so a study shared by several processes can be read
# back: which trials are real evaluations and which are bookkeeping.
REPEAT_ATTR = "autokd_repeat_of"  # a re-proposal answered with the values of trial N; nothing trained
SKIPPED_ATTR = "autokd_skipped"  # a proposal of an arch another process is evaluating; failed, nothing trained
REPLAYED_ATTR = "autokd_replayed"  # a recorded trial told before the first ask (warm start on resume)
CLAIM_ATTR = "autokd_claim"  # [time, trial number] of a proposal in a shared study (see _lost_race)
FALLBACK_ATTR = "autokd_fallback"  # an unevaluated arch enqueued after the sampler kept repeating itself
SPACE_ATTR = "autokd_search_space"  # study attributes: what the study was created for
OBJECTIVES_ATTR = "autokd_objectives"

_OPTUNA_TYPES = (type(None), bool, int, float, str)


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


def distributions_of(space) -> tuple[dict, dict[str, list | None]]:
    """One categorical distribution per parameter of ``space``, and the labels standing
    for choices optuna cannot store (None where the choices are stored as they are)."""
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


def open_study(
    space, objectives: Sequence[Objective], directions: list[str], sampler: Any, options: dict[str, Any]
) -> optuna.Study:
    """The study of an advisor: in memory, or ``options['study_name']`` in
    ``options['storage']`` (created if missing, else checked to be the same search)."""
    import optuna

    storage_url = options.get("storage")
    study_name = options.get("study_name")
    storage = open_storage(storage_url) if storage_url is not None else None
    try:
        study = optuna.create_study(
            storage=storage,
            sampler=sampler,
            study_name=study_name,
            directions=directions,
            load_if_exists=True,
        )
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - any storage failure (I/O, database, driver) is reported with its URL
        raise ConfigError(
            f"auto_distillation.search.advisor_options.storage: optuna could not open study {study_name!r} in "
            f"{storage_url!r}: {type(exc).__name__}: {exc}"
        ) from None
    if storage is not None:
        _check_study(study, storage_url, study_name, space, objectives, directions)
    return study


def _check_study(
    study, storage_url: str, study_name: str, space, objectives: Sequence[Objective], directions: list[str]
) -> None:
    """A shared study must be the same search: same directions, same space."""
    theirs = ["maximize" if d.name == "MAXIMIZE" else "minimize" for d in study.directions]
    space = json.loads(json.dumps(space.to_dict()))
    objectives = [[o.name, o.higher_is_better] for o in objectives]
    attrs = study.user_attrs
    where = f"study {study_name!r} in {storage_url!r}"
    fix = "use another advisor_options.study_name for a different search"
    if theirs != directions:
        raise ConfigError(
            f"auto_distillation.search.advisor_options.study_name: {where} optimises {theirs}, this search {directions}; {fix}"
        )
    if SPACE_ATTR in attrs and attrs[SPACE_ATTR] != space:
        raise ConfigError(
            f"auto_distillation.search.advisor_options.study_name: {where} was created for the search space "
            f"{attrs[SPACE_ATTR]}, this search has {space}; {fix}"
        )
    if OBJECTIVES_ATTR in attrs and attrs[OBJECTIVES_ATTR] != objectives:
        raise ConfigError(
            f"auto_distillation.search.advisor_options.study_name: {where} was created for the metrics "
            f"{attrs[OBJECTIVES_ATTR]}, this search has {objectives}; {fix}"
        )
    if SPACE_ATTR not in attrs:
        study.set_user_attr(SPACE_ATTR, space)
        study.set_user_attr(OBJECTIVES_ATTR, objectives)
