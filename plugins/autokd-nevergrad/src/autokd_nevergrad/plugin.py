"""The ``nevergrad`` autokd plugin: registers the nevergrad advisors.

Importing this module imports neither nevergrad nor numpy; they load when an advisor is
built.
"""

from __future__ import annotations

import autokd

from .advisor import NAMED_OPTIMIZERS, NevergradAdvisor, fixed_optimizer


@autokd.hookimpl
def register_advisors(register):
    register("nevergrad", NevergradAdvisor, aliases=("ng",))
    for name in NAMED_OPTIMIZERS:
        register(name, fixed_optimizer(name))
