"""The optimizer of a distillation stage: a fresh tf-keras optimizer from the config's spec
(the names checked against the core's one table, ``autokd.distill.check_optimizer``),
shaped by the engine settings (learning-rate schedule, global-norm clipping, mixed-precision
loss scaling)."""

from __future__ import annotations

from typing import Any

from autokd import ConfigError
from autokd.distill import check_optimizer

from . import _tf

# isort: split
import numpy as np

from .engine import EngineSettings, scheduled_learning_rate

__all__ = ["make_optimizer"]


def make_optimizer(
    spec: Any = None,
    learning_rate: float | None = None,
    field: str = "train.optimizer",
    *,
    settings: EngineSettings | None = None,
    total_steps: int | None = None,
):
    """A fresh tf-keras optimizer.

    :param spec: ``{name: {arguments}}`` as in the config (``{'SGD': {'learning_rate':
        0.001}}``), a tf-keras optimizer (a fresh copy of it is made: an optimizer is
        bound to the variables it first trains), or a callable returning one.
    :param learning_rate: overrides the spec's learning rate.
    :param settings: engine settings: ``max_grad_norm`` becomes the optimizer's
        ``global_clipnorm``, ``lr_scheduler`` a schedule over ``total_steps`` steps, and
        ``mixed_float16`` wraps it in a ``LossScaleOptimizer``.
    """
    optimizer = _base_optimizer(spec, learning_rate, field)
    if settings is None:
        return optimizer
    config = optimizer.get_config()
    if settings.schedule is not None:
        base = config.get("learning_rate")
        if isinstance(base, np.generic):
            base = base.item()
        if not isinstance(base, int | float):
            raise ConfigError(
                f"train.lr_scheduler: the optimizer already has a learning-rate schedule ({base!r}); give it a "
                f"constant learning rate, or drop train.lr_scheduler"
            )
        config["learning_rate"] = scheduled_learning_rate(settings, float(base), int(total_steps or 0))
    if settings.max_grad_norm is not None:
        config.update(global_clipnorm=settings.max_grad_norm, clipnorm=None, clipvalue=None)
    optimizer = type(optimizer).from_config(config)
    if settings.policy == "mixed_float16":
        optimizer = _tf.keras().mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer


def _base_optimizer(spec: Any, learning_rate: float | None, field: str):
    keras = _tf.keras()
    if spec is None:
        spec = {"Adam": {}}
    if isinstance(spec, keras.optimizers.Optimizer) or hasattr(spec, "get_config") and hasattr(spec, "apply_gradients"):
        config = spec.get_config()
        if learning_rate is not None:
            config["learning_rate"] = learning_rate
        return type(spec).from_config(config)
    if callable(spec):
        return spec()
    match, args = check_optimizer(spec, "tensorflow", field)  # the core's one table of names
    name = next(iter(spec))
    if "lr" in args:
        args["learning_rate"] = args.pop("lr")
    if learning_rate is not None:
        args["learning_rate"] = learning_rate
    try:
        return getattr(keras.optimizers, match)(**args)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{field}.{name}: {exc}") from None
