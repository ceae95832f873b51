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
    _register_erfc(tf2onnx)
    return tf2onnx


def _register_erfc(tf2onnx) -> None:
    """A handler for TensorFlow's ``Erfc``, as ``1 - Erf(x)``: TensorFlow >= 2.16 computes
    exact GELU (transformers' BERT ``hidden_act: gelu``) with ``Erfc``, which tf2onnx
    1.17 does not convert ("Unsupported ops: Counter({'Erfc': 2})" for a 2-layer BERT)."""
    from tf2onnx import constants, utils
    from tf2onnx.handler import tf_op

    if any("Erfc" in handlers for handlers in tf_op.get_opsets().get(constants.ONNX_DOMAIN, [])):
        return  # a tf2onnx that converts it itself (or our handler, registered already)

    @tf_op("Erfc")
    class _Erfc:
        @classmethod
        def version_9(cls, ctx, node, **kwargs):
            dtype = ctx.get_dtype(node.input[0])
            one = ctx.make_const(utils.make_name("erfc_one"), np.array(1, utils.map_onnx_to_numpy_type(dtype)))
            node.type = "Erf"
            erf = node.output[0]
            minus = ctx.insert_new_node_on_output("Sub", erf, name=utils.make_name(node.name + "_1_minus"))
            ctx.replace_inputs(minus, [one.output[0], erf])
            ctx.set_dtype(minus.output[0], dtype)
            ctx.copy_shape(erf, minus.output[0])


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
