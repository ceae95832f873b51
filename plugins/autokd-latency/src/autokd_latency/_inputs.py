"""The batch a model is measured on: the example batch of the context, resized to the
asked ``batch_size`` / ``seq_len``, or one built from the model's config.

Framework-specific tensor work goes through a small ``TensorOps`` object that each
framework module provides, so the rules live here once.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import attrs

from autokd import ConfigError

__all__ = ["CallInputs", "TensorOps", "resolve_inputs", "map_leaves", "DEFAULT_SEQ_LEN", "INPUT_SEED"]

DEFAULT_SEQ_LEN = 128
# Token ids of built inputs come from this seed: every trial is measured on the same batch.
INPUT_SEED = 0


class TensorOps(Protocol):
    def is_tensor(self, value: Any) -> bool: ...
    def convert(self, value: Any) -> Any: ...  # numpy array -> framework tensor
    def shape(self, tensor: Any) -> tuple[int, ...]: ...
    def resize(self, tensor: Any, dim: int, size: int) -> Any: ...  # slice or repeat along dim
    def int_tensor(self, rows: list[list[int]]) -> Any: ...
    def ones_like(self, tensor: Any) -> Any: ...


@attrs.frozen
class CallInputs:
    """How the model is called: ``model(*args, **kwargs)``."""

    args: tuple
    kwargs: dict
    batch_size: int | None
    built_from_config: bool = False

    def leaves(self) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        _walk_leaves(self.args, "", out)
        _walk_leaves(self.kwargs, "", out)
        return out

    def shapes(self, ops: TensorOps) -> dict[str, list[int]]:
        """The shape of every tensor, by argument position or name (for the record)."""
        return {name: list(ops.shape(value)) for name, value in self.leaves() if ops.is_tensor(value)}


def _walk_leaves(value: Any, prefix: str, out: list) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _walk_leaves(item, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _walk_leaves(item, f"{prefix}[{i}]" if prefix else str(i), out)
    else:
        out.append((prefix, value))


def map_leaves(value: Any, fn: Callable[[Any], Any]) -> Any:
    if isinstance(value, Mapping):
        return {key: map_leaves(item, fn) for key, item in value.items()}
    if isinstance(value, tuple):
        return tuple(map_leaves(item, fn) for item in value)
    if isinstance(value, list):
        return [map_leaves(item, fn) for item in value]
    return fn(value)


def _is_numpy(value: Any) -> bool:
    return type(value).__module__ == "numpy" and hasattr(value, "shape") and hasattr(value, "dtype")


def accepts_keyword(function: Callable, name: str) -> bool:
    """Whether ``function`` takes ``name`` as a keyword argument (or ``**kwargs``)."""
    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return True
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def resolve_inputs(
    model: Any,
    example_inputs: Any,
    *,
    batch_size: int | None,
    seq_len: int | None,
    ops: TensorOps,
    forward: Callable,
    evaluator: str,
) -> CallInputs:
    """The batch to call ``model`` with (see the module docstring).

    :param forward: the model's call function, to see which keyword arguments it takes.
    :param evaluator: the evaluator's name, for error messages (``evaluation.<name>``).
    """
    if example_inputs is None:
        return _built_inputs(
            model, batch_size=batch_size, seq_len=seq_len, ops=ops, forward=forward, evaluator=evaluator
        )

    if isinstance(example_inputs, Mapping):
        args, kwargs = (), dict(example_inputs)
    elif isinstance(example_inputs, tuple):
        args, kwargs = example_inputs, {}
    else:
        args, kwargs = (example_inputs,), {}
    structure = map_leaves((args, kwargs), lambda v: ops.convert(v) if _is_numpy(v) else v)
    tensors = [v for _, v in _leaves(structure) if ops.is_tensor(v)]
    path = f"evaluation.{evaluator}"

    example_batch = None
    batched = [t for t in tensors if len(ops.shape(t)) >= 1]
    if batched:
        example_batch = ops.shape(batched[0])[0]
    if batch_size is not None and batch_size != example_batch:
        if example_batch is None:
            raise ConfigError(
                f"{path}.batch_size: the example inputs hold no tensor with a batch dimension to resize; "
                f"leave batch_size out or give AutoDistillation.example_inputs as tensors"
            )
        structure = map_leaves(
            structure,
            lambda v: (
                ops.resize(v, 0, batch_size)
                if ops.is_tensor(v) and len(ops.shape(v)) >= 1 and ops.shape(v)[0] == example_batch
                else v
            ),
        )
    if seq_len is not None:
        sequences = [t for t in tensors if len(ops.shape(t)) >= 2]
        if not sequences:
            raise ConfigError(
                f"{path}.seq_len: the example inputs hold no tensor with a sequence dimension (dimension 1) "
                f"to resize; leave seq_len out"
            )
        example_len = ops.shape(sequences[0])[1]
        if seq_len != example_len:
            structure = map_leaves(
                structure,
                lambda v: (
                    ops.resize(v, 1, seq_len)
                    if ops.is_tensor(v) and len(ops.shape(v)) >= 2 and ops.shape(v)[1] == example_len
                    else v
                ),
            )
    args, kwargs = structure
    return CallInputs(tuple(args), dict(kwargs), batch_size if batch_size is not None else example_batch)


def _leaves(structure: Any) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    _walk_leaves(structure, "", out)
    return out


def _built_inputs(
    model: Any, *, batch_size: int | None, seq_len: int | None, ops: TensorOps, forward: Callable, evaluator: str
) -> CallInputs:
    path = f"evaluation.{evaluator}"
    config = getattr(model, "config", None)
    vocab_size = getattr(config, "vocab_size", None)
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
        raise ConfigError(
            f"{path}: no inputs to measure {type(model).__name__} on: set AutoDistillation.example_inputs "
            f"(a batch the model can be called with), or use a model whose `config` has a vocab_size so "
            f"token ids can be built from {evaluator}'s batch_size and seq_len"
        )
    max_positions = getattr(config, "max_position_embeddings", None)
    if not isinstance(max_positions, int) or isinstance(max_positions, bool):
        max_positions = None
    if seq_len is None:
        seq_len = DEFAULT_SEQ_LEN if max_positions is None else min(DEFAULT_SEQ_LEN, max_positions)
    elif max_positions is not None and seq_len > max_positions:
        raise ConfigError(
            f"{path}.seq_len: {seq_len} is longer than the model's max_position_embeddings ({max_positions}); "
            f"use at most {max_positions}"
        )
    batch_size = 1 if batch_size is None else batch_size
    rng = random.Random(INPUT_SEED)
    input_ids = ops.int_tensor([[rng.randrange(vocab_size) for _ in range(seq_len)] for _ in range(batch_size)])
    kwargs: dict[str, Any] = {}
    args: tuple = ()
    if accepts_keyword(forward, "input_ids"):
        kwargs["input_ids"] = input_ids
    else:
        args = (input_ids,)
    if accepts_keyword(forward, "attention_mask"):
        kwargs["attention_mask"] = ops.ones_like(input_ids)
    return CallInputs(args, kwargs, batch_size, built_from_config=True)
