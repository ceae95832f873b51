"""The TensorFlow half: imported only for a TensorFlow/Keras model.

Latency and FLOPs both use the model traced once by ``tf.function`` into a concrete
function for the batch's shapes: timing calls that graph, and the TF profiler counts
the FLOPs of its ops.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import tensorflow as tf
from tensorflow.python.framework import ops as tf_ops

from autokd import AutoKDError, ConfigError

from ._inputs import CallInputs
from ._timing import measure_adaptive

__all__ = [
    "OPS",
    "count_flops",
    "count_params",
    "forward_of",
    "measure",
    "pin_threads",
    "runtime_threads",
    "weights_bytes",
]


class _TFOps:
    def is_tensor(self, value: Any) -> bool:
        return tf.is_tensor(value) or isinstance(value, tf.Variable)

    def convert(self, value: Any) -> Any:
        return tf.convert_to_tensor(value)

    def shape(self, tensor: Any) -> tuple[int, ...]:
        return tuple(tensor.shape.as_list())

    def resize(self, tensor: Any, dim: int, size: int) -> Any:
        have = tensor.shape[dim]
        if size > have:
            reps = [1] * tensor.shape.rank
            reps[dim] = math.ceil(size / have)
            tensor = tf.tile(tensor, reps)
        begin = [0] * tensor.shape.rank
        extent = [-1] * tensor.shape.rank
        extent[dim] = size
        return tf.slice(tensor, begin, extent)

    def int_tensor(self, rows: list[list[int]]) -> Any:
        return tf.constant(rows, dtype=tf.int32)

    def ones_like(self, tensor: Any) -> Any:
        return tf.ones_like(tensor)


OPS = _TFOps()


def _is_keras(model: Any) -> bool:
    return any((cls.__module__ or "").split(".")[0] in ("keras", "tf_keras") for cls in type(model).__mro__)


def forward_of(model: Any) -> Callable:
    return getattr(model, "call", None) or model.__call__


def _traced(model: Any, inputs: CallInputs):
    """The model traced for the batch's shapes, in inference mode (Keras ``training=False``)."""
    extra = {"training": False} if _is_keras(model) else {}
    function = tf.function(lambda *args, **kwargs: model(*args, **{**kwargs, **extra}))
    return function.get_concrete_function(*inputs.args, **inputs.kwargs)


# --- threads ----------------------------------------------------------------------------


def runtime_threads() -> int | None:
    """The intra-op threads TensorFlow runs with (None: its default, every core)."""
    return tf.config.threading.get_intra_op_parallelism_threads() or None


def pin_threads(threads: int, inter_op_threads: int = 1) -> None:
    """Fix TensorFlow's thread pools; works only before the TF runtime starts."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
    except RuntimeError as exc:
        if runtime_threads() != threads:
            raise AutoKDError(
                f"TensorFlow's thread pools are already running ({exc}): call "
                f"autokd_latency.pin_tensorflow_threads({threads}) at the start of the program, before "
                f"any model or tensor is created"
            ) from None


_warned_threads = False


def _threads_for(threads: int, explicit: bool) -> int | None:
    """The thread count the measurement runs with.

    TensorFlow fixes its thread pools when its runtime starts (always before a model
    exists), so they cannot be set per measurement as torch's can; they stay the same
    for the whole process, which is what makes trials comparable.
    """
    global _warned_threads
    actual = runtime_threads()
    if actual == threads:
        return actual
    shown = "its default (every core)" if actual is None else f"{actual} intra-op threads"
    if explicit:
        raise ConfigError(
            f"evaluation.latency.threads: TensorFlow cannot switch to {threads} threads: its thread pools were "
            f"fixed when its runtime started and it runs with {shown}. Call "
            f"autokd_latency.pin_tensorflow_threads({threads}) at the start of the program (before any model "
            f"is built), or leave threads out to measure with the runtime's threads"
        )
    if not _warned_threads:
        _warned_threads = True
        warnings.warn(
            f"autokd-latency: TensorFlow runs with {shown}, not the default 1 thread of the latency evaluator; "
            f"measuring with the runtime's threads (call autokd_latency.pin_tensorflow_threads(1) at the start "
            f"of the program to pin them)",
            RuntimeWarning,
            stacklevel=2,
        )
    return actual


# --- latency ----------------------------------------------------------------------------


def measure(
    model: Any,
    inputs: CallInputs,
    *,
    warmup: int,
    repeats: int,
    threads: int,
    explicit_threads: bool,
    max_seconds: float,
    min_seconds: float,
    tolerance: float,
):
    """(wall and CPU seconds per call of each sample, calls per sample, threads used,
    the estimate's statistics)."""
    used = _threads_for(threads, explicit_threads)
    concrete = _traced(model, inputs)
    args, kwargs = inputs.args, inputs.kwargs
    wall, cpu, calls, stats = measure_adaptive(
        lambda: concrete(*args, **kwargs),
        warmup=warmup,
        repeats=repeats,
        max_seconds=max_seconds,
        min_seconds=min_seconds,
        tolerance=tolerance,
    )
    return wall, cpu, calls, used, stats


# --- FLOPs ------------------------------------------------------------------------------

# Matrix products and convolutions: what torch's FlopCounterMode counts (``ops: matmul``).
MATMUL_OPS = frozenset(
    {
        "MatMul",
        "BatchMatMul",
        "BatchMatMulV2",
        "BatchMatMulV3",
        "Einsum",
        "Conv2D",
        "Conv3D",
        "DepthwiseConv2dNative",
        "Conv2DBackpropInput",
    }
)
_CALL_OPS = frozenset({"PartitionedCall", "StatefulPartitionedCall"})


def _einsum_flops(graph, node):
    """FLOPs of ``tf.einsum`` (Keras 3's EinsumDense and MultiHeadAttention use it; the
    TF profiler has no formula for it): each product of the operands' index space is a
    multiply, and an add when indices are summed out, as the profiler counts MatMul."""
    op = graph.get_operation_by_name(node.name)
    shapes = [t.shape for t in op.inputs]
    for shape in shapes:
        shape.assert_is_fully_defined()
    equation = node.attr["equation"].s.decode().replace(" ", "")
    lhs, _, rhs = equation.partition("->")
    sizes: dict[str, int] = {}
    in_labels: set[str] = set()
    for spec, shape in zip(lhs.split(","), shapes, strict=True):
        dims = shape.as_list()
        labels = _expand_ellipsis(spec, len(dims))
        for label, size in zip(labels, dims, strict=True):
            sizes[label] = max(sizes.get(label, 1), size)
            in_labels.add(label)
    out_rank = op.outputs[0].shape.rank if rhs else 0
    out_labels = set(_expand_ellipsis(rhs, out_rank)) if rhs else set()
    products = math.prod(sizes.values())
    summed = bool(in_labels - out_labels)
    operands = len(shapes)
    if operands == 1:
        flops = products if summed else 0
    else:
        flops = products * (2 if summed else 1) * (operands - 1)
    return tf_ops.OpStats("flops", flops)


def _expand_ellipsis(spec: str, rank: int) -> list[str]:
    if "..." not in spec:
        return list(spec)
    head, _, tail = spec.partition("...")
    broadcast = rank - len(head) - len(tail)
    # Broadcast dimensions are aligned from the right, as einsum aligns them.
    return list(head) + [f"…{i}" for i in range(broadcast, 0, -1)] + list(tail)


def _depthwise_conv_flops(graph, node):
    """FLOPs of a depthwise convolution: a multiply-add per filter tap and output value."""
    op = graph.get_operation_by_name(node.name)
    filter_shape = op.inputs[1].shape
    out_shape = op.outputs[0].shape
    filter_shape.assert_is_fully_defined()
    out_shape.assert_is_fully_defined()
    return tf_ops.OpStats("flops", 2 * out_shape.num_elements() * filter_shape[0] * filter_shape[1])


def _register_missing_formulas() -> None:
    for op_type, formula in (("Einsum", _einsum_flops), ("DepthwiseConv2dNative", _depthwise_conv_flops)):
        try:
            tf_ops.RegisterStatistics(op_type, "flops")(formula)
        except KeyError:  # TensorFlow (or someone) already counts it
            pass


_register_missing_formulas()


@contextlib.contextmanager
def _quiet_tf_logs() -> Iterator[None]:
    # The v1 profiler logs a deprecation warning about its own internals on first use.
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _profile_tree(graph):
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    with _quiet_tf_logs():
        return tf.compat.v1.profiler.profile(
            graph=graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op", options=options
        )


def _by_op_type(root) -> dict[str, int]:
    # cmd='op' nests the op types as a chain (each type's node holds the next one).
    out: dict[str, int] = {}
    stack = list(root.children)
    while stack:
        node = stack.pop()
        if node.float_ops:
            out[node.name] = out.get(node.name, 0) + int(node.float_ops)
        stack.extend(node.children)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def count_flops(model: Any, inputs: CallInputs, *, ops: str) -> tuple[int, dict[str, int], list[str]]:
    """(forward FLOPs for ``inputs``, FLOPs per op type, op types that do work but that
    the profiler has no formula for)."""
    concrete = _traced(model, inputs)
    graph = concrete.graph
    if any(op.type in _CALL_OPS for op in graph.get_operations()):
        # The profiler does not look inside nested function calls; inline them (this
        # also freezes the variables into constants, which does not change FLOPs).
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        graph = convert_variables_to_constants_v2(concrete).graph
    by_op = _by_op_type(_profile_tree(graph))
    if ops == "matmul":
        by_op = {name: n for name, n in by_op.items() if name in MATMUL_OPS}
    uncounted = sorted(
        {
            op.type
            for op in graph.get_operations()
            if op.type in MATMUL_OPS | {"Conv1D", "Conv3DBackpropInputV2", "FusedBatchNormV3"}
            and op.type not in by_op
            and _has_no_formula(graph, op)
        }
    )
    return sum(by_op.values()), by_op, uncounted


def _has_no_formula(graph, op) -> bool:
    try:
        return tf_ops.get_stats_for_node_def(graph, op.node_def, "flops").value is None
    except Exception:  # a formula that cannot count this node (unknown shapes)
        return True


# --- parameters and size ----------------------------------------------------------------


def _ensure_built(model: Any, make_inputs: Callable[[], CallInputs]) -> None:
    """A Keras model that has not been called has no weights yet: call it once."""
    if not _is_keras(model) or getattr(model, "built", True):
        return
    inputs = make_inputs()
    model(*inputs.args, **{**inputs.kwargs, "training": False})


def _variables(model: Any, trainable: bool = False) -> list:
    if _is_keras(model):
        found = model.trainable_weights if trainable else model.weights
    else:
        found = model.trainable_variables if trainable else model.variables
    unique: dict[int, Any] = {}
    for variable in found:
        unique.setdefault(id(variable), variable)
    return list(unique.values())


def _numel(variable: Any) -> int:
    return math.prod(int(d) for d in tuple(variable.shape))


def count_params(model: Any, make_inputs: Callable[[], CallInputs]) -> tuple[int, int]:
    """(trainable, total) weights. Like Keras' ``count_params``, total includes
    non-trainable weights (e.g. BatchNormalization's moving statistics)."""
    _ensure_built(model, make_inputs)
    trainable = sum(_numel(v) for v in _variables(model, trainable=True))
    total = sum(_numel(v) for v in _variables(model))
    return trainable, total


def weights_bytes(model: Any, make_inputs: Callable[[], CallInputs]) -> tuple[int, int]:
    """(bytes, variables) of every weight of the model."""
    _ensure_built(model, make_inputs)
    variables = _variables(model)
    size = sum(_numel(v) * tf.as_dtype(v.dtype).size for v in variables)
    return size, len(variables)
