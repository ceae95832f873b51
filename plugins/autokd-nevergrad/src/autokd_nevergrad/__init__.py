"""autokd-nevergrad: autokd search advisors backed by nevergrad optimizers.

``search_algorithm: nevergrad`` (option ``optimizer``, default ``NGOpt``) or one of the
names ``NGOpt``, ``DE``, ``TwoPointsDE``, ``CMA``, ``OnePlusOne``,
``PortfolioDiscreteOnePlusOne``. See :class:`NevergradAdvisor` for the options.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .advisor import DEFAULT_MAX_REPEATS, DEFAULT_OPTIMIZER, NAMED_OPTIMIZERS, NevergradAdvisor, fixed_optimizer

__all__ = [
    "DEFAULT_MAX_REPEATS",
    "DEFAULT_OPTIMIZER",
    "NAMED_OPTIMIZERS",
    "NevergradAdvisor",
    "__version__",
    "fixed_optimizer",
]
