"""The ``ray`` autokd plugin: registers the ``ray`` executor.

Importing this module does not import Ray (``autokd plugins`` imports every plugin to list
it); the executor imports Ray when it is built.
"""

from __future__ import annotations

import autokd

from .executor import ray_executor


@autokd.hookimpl
def register_executors(register):
    register("ray", ray_executor)
