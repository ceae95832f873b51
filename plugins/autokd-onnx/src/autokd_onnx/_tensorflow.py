"""The TensorFlow half of the export: ``tf2onnx.convert.from_keras`` with free batch and
sequence dimensions; imported only for a Keras model, and only when tf2onnx is installed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from autokd import AutoKDError

from .export import ExportResult, split_inputs
from .runtime import make_session, to_numpy_inputs

__all__ = ["export", "max_diff"]


def _tf2onnx():
    try:
        import tf2onnx
    except ImportError:
        raise AutoKDError(
            "output.onnx: exporting a Keras student needs tf2onnx, which is not installed: "
            "pip install 'autokd-onnx[tensorflow]' (or set output.onnx: false)"
        ) from None
    return tf2onnx


def _signature(tf, name: str, tensor: Any):
    shape = list(tensor.shape)
    if shape:
        shape[0] = None
    if len(shape) == 2 and not tensor.dtype.is_floating:
        shape[1] = None
    return tf.TensorSpec(shape, tensor.dtype, name=name)


def _flatten(output: Any) -> list:
    if hasattr(output, "to_tuple"):
        output = output.to_tuple()
    if isinstance(output, Mapping):
        output = list(output.values())
    if isinstance(output, tuple | list):
        return [t for item in output for t in _flatten(item)]
    return [output]


def _diff(session: Any, model: Any, args: tuple, kwargs: dict) -> float:
    expected = _flatten(model(*args, **kwargs) if not kwargs else model(kwargs))
    got = session.run(None, to_numpy_inputs(session, args, kwargs))
    worst = 0.0
    for want, have in zip(expected, got, strict=False):
        want = np.asarray(want)
        if want.shape != have.shape:
            return float("inf")
        worst = max(worst, float(np.max(np.abs(want.astype(np.float64) - have.astype(np.float64)), initial=0.0)))
    return worst


def export(model: Any, example_inputs: Any, path: str, *, opset: int, tolerance: dict) -> ExportResult:
    import tensorflow as tf

    tf2onnx = _tf2onnx()
    args, kwargs = split_inputs(example_inputs)
    args = tuple(tf.convert_to_tensor(a) for a in args)
    kwargs = {k: tf.convert_to_tensor(v) for k, v in kwargs.items()}
    if kwargs:
        signature = [{k: _signature(tf, k, v) for k, v in kwargs.items()}]
    else:
        signature = [_signature(tf, f"input_{i}", a) for i, a in enumerate(args)]
    tf2onnx.convert.from_keras(model, input_signature=signature, opset=opset, output_path=path)
    import onnx

    onnx.checker.check_model(path)
    session = make_session(path, threads=1)
    full = _diff(session, model, args, kwargs)
    return ExportResult(
        path=path,
        opset=opset,
        input_names=[i.name for i in session.get_inputs()],
        output_names=[o.name for o in session.get_outputs()],
        dynamic_axes={},
        max_abs_diff=full,
        max_abs_diff_small=None,
        tolerance=dict(tolerance),
        matches=full <= tolerance["atol"],
        exporter=f"tf2onnx {tf2onnx.__version__}",
    )


def max_diff(path: str, model: Any, example_inputs: Any) -> float:
    import tensorflow as tf

    args, kwargs = split_inputs(example_inputs)
    args = tuple(tf.convert_to_tensor(a) for a in args)
    kwargs = {k: tf.convert_to_tensor(v) for k, v in kwargs.items()}
    return _diff(make_session(path, threads=1), model, args, kwargs)
