"""Optimizers from ``train.optimizer``: ``{name: {learning_rate, ...}}``, the names of the
core's table :data:`autokd.distill.OPTIMIZERS` that PyTorch builds (Adafactor is
transformers')."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping  # noqa: F401
from typing import Any

import torch

from autokd import ConfigError
from autokd.distill import OPTIMIZERS, check_optimizer

__all__ = ["SUPPORTED_OPTIMIZERS", "build_optimizer"]

SUPPORTED_OPTIMIZERS = {
    "SGD": torch.optim.SGD,
    "Adam": torch.optim.Adam,
    "AdamW": torch.optim.AdamW,
    "RMSprop": torch.optim.RMSprop,
    "Adagrad": torch.optim.Adagrad,
    "Adadelta": torch.optim.Adadelta,
    "Adamax": torch.optim.Adamax,
    "Nadam": torch.optim.NAdam,
    "Adafactor": None,  # transformers.optimization.Adafactor, imported when used
}
# the core's table and this one must name the same optimizers for PyTorch
assert set(SUPPORTED_OPTIMIZERS) == {n for n, frameworks in OPTIMIZERS.items() if "pytorch" in frameworks}


def build_optimizer(
    parameters: Iterable[torch.nn.Parameter], optimizer: Mapping[str, Any], field: str = "train.optimizer"
) -> torch.optim.Optimizer:
    """The optimizer ``optimizer`` names, over ``parameters``.

    Arguments are those of the torch class, with ``learning_rate`` for ``lr``; lists
    (``betas``) become tuples.
    """
    canonical, args = check_optimizer(optimizer, "pytorch", field)
    name = next(iter(optimizer))
    cls = SUPPORTED_OPTIMIZERS[canonical]
    if cls is None:
        from transformers.optimization import Adafactor as cls
    accepted = [p for p in inspect.signature(cls).parameters if p not in ("params", "lr", "self")]
    kwargs: dict[str, Any] = {}
    for key, value in args.items():
        if key in ("learning_rate", "lr"):
            kwargs["lr"] = value
        elif key in accepted:
            kwargs[key] = tuple(value) if isinstance(value, list) else value
        else:
            raise ConfigError(
                f"{field}.{name}.{key}: unknown argument of {canonical}; it takes learning_rate, {', '.join(accepted)}"
            )
    if canonical == "Adafactor" and "lr" in kwargs:
        # as transformers' Trainer does for optim="adafactor": a given learning rate
        # replaces Adafactor's relative step sizes
        kwargs.setdefault("relative_step", False)
        kwargs.setdefault("scale_parameter", False)
    params = [p for p in parameters if p.requires_grad]
    if not params:
        raise ConfigError(f"{field}: there are no trainable parameters to optimise")
    try:
        return cls(params, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{field}.{name}: {exc}") from None
