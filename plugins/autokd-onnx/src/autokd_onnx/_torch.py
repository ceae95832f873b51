"""The PyTorch half of the export: imported only for a ``torch.nn.Module``."""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import onnx
import torch

from .export import ExportResult, split_inputs
from .runtime import make_session, to_numpy_inputs

__all__ = ["export", "flatten_outputs", "max_diff"]


@contextlib.contextmanager
def _eval(model: torch.nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def flatten_outputs(output: Any) -> list[torch.Tensor]:
    """The tensors of a model's output in the order the ONNX graph lists them."""
    if isinstance(output, torch.Tensor):
        return [output]
    if hasattr(output, "to_tuple"):  # transformers ModelOutput: its set fields in order
        output = output.to_tuple()
    if isinstance(output, Mapping):
        output = list(output.values())
    if isinstance(output, tuple | list):
        return [t for item in output for t in flatten_outputs(item)]
    return []


class _Positional(torch.nn.Module):
    """The model called with positional tensors in a fixed order of names: the
    TorchScript exporter passes keyword inputs positionally, in ``forward``'s order,
    which collides with models that take other arguments in between (transformers 5's
    ``BertModel.forward`` got ``use_cache`` twice)."""

    def __init__(self, model: torch.nn.Module, positional: int, names: list[str]):
        super().__init__()
        self.model = model
        self.positional = positional
        self.names = names

    def forward(self, *tensors):
        args = tensors[: self.positional]
        kwargs = dict(zip(self.names, tensors[self.positional :], strict=True))
        return self.model(*args, **kwargs)


def _dynamic_axes(name: str, tensor: torch.Tensor) -> dict[int, str]:
    axes = {0: "batch"} if tensor.dim() >= 1 else {}
    # token ids and masks: (batch, sequence) integers; a float tensor's dim 1 is a feature
    # (channels, hidden size) and stays fixed.
    if tensor.dim() == 2 and not tensor.is_floating_point():
        axes[1] = "sequence"
    return axes


def _smaller(tensor: Any) -> Any:
    if not isinstance(tensor, torch.Tensor) or tensor.dim() == 0:
        return tensor
    tensor = tensor[:1]
    if tensor.dim() == 2 and not tensor.is_floating_point() and tensor.shape[1] > 1:
        tensor = tensor[:, : max(1, tensor.shape[1] // 2)]
    return tensor


def _diff(session: Any, model: torch.nn.Module, args: tuple, kwargs: dict) -> float:
    with _eval(model):
        expected = flatten_outputs(model(*args, **kwargs))
    got = session.run(None, to_numpy_inputs(session, args, kwargs))
    if len(got) > len(expected):
        raise AssertionError(f"the ONNX graph has {len(got)} outputs, the model {len(expected)}")
    worst = 0.0
    for want, have in zip(expected, got, strict=False):
        want = want.detach().cpu().numpy()
        if want.shape != have.shape:
            return float("inf")
        worst = max(worst, float(np.max(np.abs(want.astype(np.float64) - have.astype(np.float64)), initial=0.0)))
    return worst


def export(model: torch.nn.Module, example_inputs: Any, path: str, *, opset: int, tolerance: dict) -> ExportResult:
    args, kwargs = split_inputs(example_inputs)
    device = next(iter(model.parameters()), torch.empty(0)).device
    args = tuple(a.to(device) if isinstance(a, torch.Tensor) else a for a in args)
    kwargs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    params = list(inspect.signature(model.forward).parameters)
    arg_names = [params[i] if i < len(params) else f"input_{i}" for i in range(len(args))]
    names = arg_names + list(kwargs)
    tensors = list(args) + list(kwargs.values())
    with _eval(model):
        outputs = flatten_outputs(model(*args, **kwargs))
    output_names = [f"output_{i}" for i in range(len(outputs))]
    dynamic_axes = {n: _dynamic_axes(n, t) for n, t in zip(names, tensors, strict=True) if isinstance(t, torch.Tensor)}
    dynamic_axes.update({n: {0: "batch"} for n, t in zip(output_names, outputs, strict=True) if t.dim() >= 1})
    wrapper = _Positional(model, len(args), list(kwargs))
    with _eval(model), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings on shape-dependent Python branches
        torch.onnx.export(
            wrapper,
            tuple(tensors),
            path,
            input_names=names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    onnx.checker.check_model(path)
    session = make_session(path, threads=1)
    full = _diff(session, model, args, kwargs)
    small_args = tuple(_smaller(a) for a in args)
    small_kwargs = {k: _smaller(v) for k, v in kwargs.items()}
    small = _diff(session, model, small_args, small_kwargs)
    graph_inputs = [i.name for i in session.get_inputs()]
    matches = all(d <= tolerance["atol"] + tolerance["rtol"] * _scale(model, args, kwargs) for d in (full, small))
    return ExportResult(
        path=path,
        opset=opset,
        input_names=graph_inputs,
        output_names=[o.name for o in session.get_outputs()],
        dynamic_axes={k: {str(d): n for d, n in v.items()} for k, v in dynamic_axes.items() if k in graph_inputs},
        max_abs_diff=full,
        max_abs_diff_small=small,
        tolerance=dict(tolerance),
        matches=matches,
        exporter=f"torch.onnx.export (TorchScript, torch {torch.__version__})",
    )


def _scale(model: torch.nn.Module, args: tuple, kwargs: dict) -> float:
    with _eval(model):
        outputs = flatten_outputs(model(*args, **kwargs))
    return max((float(o.abs().max()) for o in outputs if o.numel()), default=0.0)


def max_diff(path: str, model: torch.nn.Module, example_inputs: Any) -> float:
    """Largest absolute difference between ``path`` in ONNX Runtime and ``model``."""
    args, kwargs = split_inputs(example_inputs)
    return _diff(make_session(path, threads=1), model, args, kwargs)
