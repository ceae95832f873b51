"""The PyTorch half: imported only for a model that is a ``torch.nn.Module``."""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import torch
from torch.utils.flop_counter import FlopCounterMode, flop_registry, sdpa_flop_count

from autokd import AutoKDError

from ._inputs import CallInputs, map_leaves
from ._timing import measure_adaptive

__all__ = ["OPS", "count_flops", "count_params", "forward_of", "measure", "weights_bytes"]


class _TorchOps:
    def is_tensor(self, value: Any) -> bool:
        return isinstance(value, torch.Tensor)

    def convert(self, value: Any) -> Any:
        return torch.from_numpy(value)

    def shape(self, tensor: torch.Tensor) -> tuple[int, ...]:
        return tuple(tensor.shape)

    def resize(self, tensor: torch.Tensor, dim: int, size: int) -> torch.Tensor:
        have = tensor.shape[dim]
        if size > have:
            reps = [1] * tensor.dim()
            reps[dim] = math.ceil(size / have)
            tensor = tensor.repeat(*reps)
        return tensor.narrow(dim, 0, size).contiguous()

    def int_tensor(self, rows: list[list[int]]) -> torch.Tensor:
        return torch.tensor(rows, dtype=torch.long)

    def ones_like(self, tensor: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(tensor)


OPS = _TorchOps()


def forward_of(model: torch.nn.Module) -> Callable:
    return model.forward


@contextlib.contextmanager
def _inference(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no autograd, and the model's mode restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


@contextlib.contextmanager
def _threads(threads: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _device(model: torch.nn.Module) -> torch.device:
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _on_model_device(model: torch.nn.Module, inputs: CallInputs) -> CallInputs:
    """The batch moved to the model's device (example batches and built inputs are made
    on the CPU)."""
    device = _device(model)

    def move(value: Any) -> Any:
        return value.to(device) if isinstance(value, torch.Tensor) and value.device != device else value

    return attrs.evolve(inputs, args=map_leaves(inputs.args, move), kwargs=map_leaves(inputs.kwargs, move))


def _call(model: torch.nn.Module, inputs: CallInputs) -> Callable[[], Any]:
    inputs = _on_model_device(model, inputs)
    args, kwargs = inputs.args, inputs.kwargs
    device = _device(model)
    if device.type == "cuda":
        # CUDA calls return before the GPU is done: wait for it, or the time is the launch's.
        def call() -> Any:
            out = model(*args, **kwargs)
            torch.cuda.synchronize(device)
            return out

        return call
    return lambda: model(*args, **kwargs)


def measure(
    model: torch.nn.Module,
    inputs: CallInputs,
    *,
    warmup: int,
    repeats: int,
    threads: int,
    max_seconds: float,
    min_seconds: float,
    tolerance: float,
):
    """(wall and CPU seconds per call of each sample, calls per sample, threads used,
    the estimate's statistics)."""
    with _threads(threads), _inference(model):
        wall, cpu, calls, stats = measure_adaptive(
            _call(model, inputs),
            warmup=warmup,
            repeats=repeats,
            max_seconds=max_seconds,
            min_seconds=min_seconds,
            tolerance=tolerance,
        )
    return wall, cpu, calls, threads, stats


# torch <= 2.13's FlopCounterMode has no formula for the fused CPU attention kernel that
# F.scaled_dot_product_attention dispatches to on CPU, so attention counted 0 FLOPs
# (pytorch/pytorch#195460). Count it like the other fused SDPA kernels; a torch that
# registers it itself is left alone.
def _cpu_flash_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _custom_formulas() -> dict:
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is None or op in flop_registry:
        return {}
    return {op: _cpu_flash_sdpa_flop}


# What FlopCounterMode counts is already restricted to matrix products, convolutions and
# attention; `ops: matmul` keeps the same set.
def count_flops(model: torch.nn.Module, inputs: CallInputs, *, ops: str) -> tuple[int, dict[str, int]]:
    """(total forward FLOPs for ``inputs``, FLOPs per aten operator)."""
    counter = FlopCounterMode(display=False, custom_mapping=_custom_formulas())
    with _inference(model), counter:
        _call(model, inputs)()
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return int(counter.get_total_flops()), by_op


def _check_materialized(model: torch.nn.Module) -> None:
    lazy = [name for name, p in model.named_parameters() if isinstance(p, torch.nn.parameter.UninitializedParameter)]
    if lazy:
        raise AutoKDError(
            f"{type(model).__name__} has uninitialized (lazy) parameters {lazy[:3]}: call the model once on "
            f"a batch before it is evaluated, so their sizes are known"
        )


def count_params(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters; a parameter shared by several modules counts once."""
    _check_materialized(model)
    trainable = total = 0
    for p in model.parameters():  # parameters() yields a tied parameter once
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total


def weights_bytes(model: torch.nn.Module) -> tuple[int, int]:
    """(bytes, tensors) of the state dict as a weights file stores it: parameters and
    persistent buffers, tied tensors once."""
    _check_materialized(model)
    seen: set[tuple[int, int, int]] = set()
    size = tensors = 0
    for tensor in model.state_dict().values():
        if not isinstance(tensor, torch.Tensor):  # extra state
            continue
        nbytes = tensor.numel() * tensor.element_size()
        key = (tensor.data_ptr(), nbytes, id(tensor.dtype))
        if nbytes and key in seen:
            continue
        seen.add(key)
        size += nbytes
        tensors += 1
    return size, tensors
