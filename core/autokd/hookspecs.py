"""Hook specifications: the contract that autokd plugins implement.

Every hook is a *registry* hook: it receives a ``register`` callback and calls it once
per thing the plugin provides. The core wraps ``register`` per plugin, so it knows who
registered what, can reject a name registered twice (naming both plugins), and can
grow keyword arguments of ``register`` without breaking existing plugins.

Hooks are always called with keyword arguments; an implementation may accept fewer
arguments than its spec, so the specs can grow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps this module cheap to import
    from collections.abc import Callable

PROJECT_NAME = "autokd"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# --- search ---------------------------------------------------------------------------


@hookspec
def register_advisors(register: Callable[..., None]) -> None:
    """Register search algorithms (advisors).

    Called once, the first time the registry is used.

    :param register: ``register(name, factory, aliases=())``. ``factory`` is called as
        ``factory(space, objectives, seed=None, **options)`` and returns an
        :class:`autokd.Advisor`. ``aliases`` are further names for the same factory
        (``search_algorithm`` is matched case-insensitively against names and aliases).
    """


# --- models and training --------------------------------------------------------------


@hookspec
def register_model_builders(register: Callable[..., None]) -> None:
    """Register model builders.

    :param register: ``register(name, builder, framework=None)``. ``builder`` is called
        as ``builder(arch_params: dict, **options)`` and returns a model;
        ``framework=None`` serves every framework.
    """


@hookspec
def register_criteria(register: Callable[..., None]) -> None:
    """Register distillation criteria (loss classes used by name in
    ``train.criterion``).

    :param register: ``register(name, criterion_cls, framework)``.
    """


@hookspec
def register_losses(register: Callable[..., None]) -> None:
    """Register feature distances used by name in ``loss_types``.

    :param register: ``register(name, loss_fn, framework)``;
        ``loss_fn(student_feature, teacher_feature) -> scalar`` in the framework's
        tensors.
    """


@hookspec
def register_trainers(register: Callable[..., None]) -> None:
    """Register a training backend for a framework.

    :param register: ``register(framework, backend)``. ``backend`` is an
        :class:`autokd.Backend`: it supplies the built-in model builder, train function
        and eval function of a search run from a config.
    """


# --- evaluation -----------------------------------------------------------------------


@hookspec
def register_evaluators(register: Callable[..., None]) -> None:
    """Register metric evaluators used by name in ``search.metrics``.

    :param register: ``register(name, evaluator, framework=None,
        higher_is_better=None)``. ``evaluator(model, context) -> float`` where
        ``context`` is an :class:`autokd.EvalContext`. ``higher_is_better`` declares the
        metric's direction so configs may leave ``search.higher_is_better`` out.
    """


# --- running trials ---------------------------------------------------------------------


@hookspec
def register_executors(register: Callable[..., None]) -> None:
    """Register executors: what runs a search's trials (``search.executor.name``).

    :param register: ``register(name, executor_factory)``. ``executor_factory`` is
        called as ``executor_factory(runner, *, max_concurrent, **options)`` (``options``:
        the other keys of ``search.executor``) and returns an :class:`autokd.Executor`
        that runs :class:`autokd.TrialTask` objects with ``runner`` (an
        :class:`autokd.TrialRunner`) and returns their records as they finish. The core
        registers ``local`` (serial, in process).
    """
