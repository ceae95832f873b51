"""The core's own plugin: the ``random`` and ``grid`` advisors and the ``local`` and
``processes`` executors, registered through the same hooks as every third-party plugin."""

from __future__ import annotations

from .advisor import GridAdvisor, RandomAdvisor
from .executor import local_executor
from .hookspecs import hookimpl
from .processes import processes_executor


@hookimpl
def register_advisors(register):
    register("random", RandomAdvisor, aliases=("random_search",))
    register("grid", GridAdvisor, aliases=("grid_search",))


@hookimpl
def register_executors(register):
    register("local", local_executor)
    register("processes", processes_executor)
