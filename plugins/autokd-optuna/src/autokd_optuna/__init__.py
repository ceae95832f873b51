"""autokd-optuna: optuna's Gaussian-process BO, TPE and NSGA-II as autokd advisors.

Advisors ``BO`` (aliases ``bayesian``, ``bo``), ``TPE`` and ``NSGA2`` drive optuna
through ask-and-tell. With ``advisor_options.storage`` (e.g.
``journal:///shared/study.log``) and ``advisor_options.study_name``, several ``autokd run`` processes, on one machine or many, work on
one search.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .advisor import OptunaAdvisor
from .samplers import BOAdvisor, NSGA2Advisor, TPEAdvisor
from .storage import open_storage
from .study import REPEAT_ATTR, REPLAYED_ATTR, SKIPPED_ATTR, evaluation_trials

__all__ = [
    "REPEAT_ATTR",
    "REPLAYED_ATTR",
    "SKIPPED_ATTR",
    "BOAdvisor",
    "NSGA2Advisor",
    "OptunaAdvisor",
    "TPEAdvisor",
    "__version__",
    "evaluation_trials",
    "open_storage",
]
