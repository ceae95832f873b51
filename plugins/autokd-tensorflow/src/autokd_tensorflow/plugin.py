"""The ``tensorflow`` entry point of autokd: what this distribution registers.

Importing this module must stay cheap (``autokd plugins`` imports every plugin), so
nothing here imports TensorFlow: each registration is a thin callable that imports its
module on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import autokd

FRAMEWORK = "tensorflow"


def _lazy(module: str, attr: str) -> Callable:
    """A callable standing for ``autokd_tensorflow.<module>.<attr>``, imported when first
    called."""
    path = f"autokd_tensorflow.{module}"

    def call(*args, **kwargs):
        return getattr(importlib.import_module(path), attr)(*args, **kwargs)

    call.__name__ = call.__qualname__ = attr
    call.__module__ = path
    call.__doc__ = f"``{path}.{attr}``, imported on first use."
    call._autokd_load = lambda: getattr(importlib.import_module(path), attr)  # the real object, for hot paths
    return call


@autokd.hookimpl
def register_losses(register):
    for name, fn in (("MSE", "mse"), ("L1", "l1"), ("KL", "kl"), ("CE", "ce")):
        register(name, _lazy("losses", fn), FRAMEWORK)


@autokd.hookimpl
def register_criteria(register):
    for name in ("KnowledgeDistillationLoss", "IntermediateLayersKnowledgeDistillationLoss"):
        register(name, _lazy("criteria", name), FRAMEWORK)


@autokd.hookimpl
def register_model_builders(register):
    register("transformers", _lazy("builders", "build_transformers_model"), framework=FRAMEWORK)


@autokd.hookimpl
def register_trainers(register):
    from .backend import TensorFlowBackend  # TensorFlow-free module

    register(FRAMEWORK, TensorFlowBackend())


@autokd.hookimpl
def register_evaluators(register):
    register("accuracy", _lazy("evaluation", "accuracy_evaluator"), framework=FRAMEWORK, higher_is_better=True)
    register("eval_loss", _lazy("evaluation", "eval_loss_evaluator"), framework=FRAMEWORK, higher_is_better=False)
