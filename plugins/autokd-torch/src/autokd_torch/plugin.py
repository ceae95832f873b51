"""The ``torch`` entry point of the ``autokd`` group: what autokd-torch registers.

Nothing here imports torch or transformers: ``autokd plugins`` imports every plugin to
list it. Each registration is a :class:`LazyObject` that imports its target on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

import autokd

FRAMEWORK = "pytorch"


class LazyObject:
    """A stand-in for ``module:attribute`` that imports it when first called or inspected."""

    def __init__(self, target: str):
        self._target = target
        self._resolved: Any = None

    def resolve(self) -> Any:
        if self._resolved is None:
            module, _, attr = self._target.partition(":")
            self._resolved = getattr(importlib.import_module(module), attr)
        return self._resolved

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_target", "_resolved"):
            raise AttributeError(name)
        return getattr(self.resolve(), name)

    def __repr__(self) -> str:
        return f"<lazy {self._target}>"


def _lazy(attr: str, module: str) -> LazyObject:
    return LazyObject(f"autokd_torch.{module}:{attr}")


@autokd.hookimpl
def register_losses(register):
    for name, fn in (("KL", "kl_divergence"), ("CE", "soft_cross_entropy"), ("MSE", "mse"), ("L1", "l1")):
        register(name, _lazy(fn, "losses"), FRAMEWORK)


@autokd.hookimpl
def register_criteria(register):
    for name in ("KnowledgeDistillationLoss", "IntermediateLayersKnowledgeDistillationLoss"):
        register(name, _lazy(name, "criteria"), FRAMEWORK)


@autokd.hookimpl
def register_model_builders(register):
    register("transformers", _lazy("transformers_builder", "builder"), FRAMEWORK)


@autokd.hookimpl
def register_evaluators(register):
    register("eval_loss", _lazy("eval_loss_evaluator", "evaluate"), FRAMEWORK, higher_is_better=False)
    register("accuracy", _lazy("accuracy_evaluator", "evaluate"), FRAMEWORK, higher_is_better=True)


@autokd.hookimpl
def register_trainers(register):
    register(FRAMEWORK, _lazy("BACKEND", "backend"))
