"""Optimizers from ``train.optimizer``: ``{'SGD' | 'Adam' | 'AdamW' | 'Adagrad' | 'RMSprop' |
'Adafactor': {learning_rate, ...}}`` (Adafactor is transformers')."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from autokd import ConfigError

__all__ = ["SUPPORTED_OPTIMIZERS", "build_optimizer"]

SUPPORTED_OPTIMIZERS = {
    "SGD": torch.optim.SGD,
    "Adam": torch.optim.Adam,
    "AdamW": torch.optim.AdamW,
    "Adagrad": torch.optim.Adagrad,
    "RMSprop": torch.optim.RMSprop,
    "Adafactor": None,  # transformers.optimization.Adafactor, imported when used
}


def build_optimizer(
    parameters: Iterable[torch.nn.Parameter], optimizer: Mapping[str, Any], field: str = "train.optimizer"
) -> torch.optim.Optimizer:
    """The optimizer ``optimizer`` names, over ``parameters``.

    Arguments are those of the torch class, with ``learning_rate`` for ``lr``; lists
    (``betas``) become tuples.
    """
    if not isinstance(optimizer, Mapping) or len(optimizer) != 1:
        raise ConfigError(
            f"{field}: name exactly one optimizer, e.g. {{SGD: {{learning_rate: 0.001}}}}, got {optimizer!r}"
        )
    ((name, args),) = optimizer.items()
    canonical = {n.lower(): n for n in SUPPORTED_OPTIMIZERS}.get(str(name).lower())
    if canonical is None:
        raise ConfigError(f"{field}: unknown optimizer {name!r}; supported: {', '.join(SUPPORTED_OPTIMIZERS)}")
    cls = SUPPORTED_OPTIMIZERS[canonical]
    if cls is None:
        from transformers.optimization import Adafactor as cls
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise ConfigError(f"{field}.{name}: expected a mapping of arguments, got {args!r}")
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
    params = [p for p in parameters if p.requires_grad]
    if not params:
        raise ConfigError(f"{field}: there are no trainable parameters to optimise")
    try:
        return cls(params, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{field}.{name}: {exc}") from None
