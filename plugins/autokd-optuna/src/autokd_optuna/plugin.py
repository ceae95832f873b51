"""The ``optuna`` autokd plugin: registers the ``BO``, ``TPE`` and ``NSGA2`` advisors.

Importing this module does not import optuna, torch or scipy (``autokd plugins`` imports
every plugin to list it); the advisors import optuna when they are built.
"""

from __future__ import annotations

import autokd

from .samplers import BOAdvisor, NSGA2Advisor, TPEAdvisor


@autokd.hookimpl
def register_advisors(register):
    register("BO", BOAdvisor, aliases=("bayesian", "bayesian_optimization", "gp"))
    register("TPE", TPEAdvisor, aliases=("tpe_search",))
    register("NSGA2", NSGA2Advisor, aliases=("nsga-ii", "nsgaii", "nsga_ii"))
