"""autokd-ray: the ``ray`` executor runs a search's trials as Ray actors, on this
machine or on a Ray cluster (``search.executor: {name: ray, address: auto}``)."""

from __future__ import annotations

__version__ = "0.1.0"

from .executor import RayExecutor, ray_executor

__all__ = ["RayExecutor", "__version__", "ray_executor"]
