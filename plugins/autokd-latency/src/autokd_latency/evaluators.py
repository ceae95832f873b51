"""The four hardware evaluators and the measurements behind them.

Each evaluator is ``evaluator(model, context) -> float`` (the autokd contract): it
validates ``context.options``, detects the model's framework from its type, imports only
that framework, measures, and leaves the details in ``context.extras[<name>]`` (the
search stores them in the trial's record). The measurements are public functions too,
for use outside a search.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from autokd import AutoKDError, EvalContext

from ._detect import detect_framework
from ._inputs import CallInputs, resolve_inputs
from ._options import validate_options
from ._timing import LatencyResult, summarize

__all__ = [
    "FlopCount",
    "LatencyResult",
    "ParamCount",
    "WeightsSize",
    "count_flops",
    "count_params",
    "flops",
    "latency",
    "measure_latency",
    "measure_onnx_latency",
    "model_size",
    "onnx_latency",
    "onnx_latency_int8",
    "params",
    "pin_tensorflow_threads",
    "weights_size",
]

_BACKENDS = {"pytorch": "autokd_latency._torch", "tensorflow": "autokd_latency._tensorflow"}
BYTES_PER_MB = 1_000_000


def _backend(framework: str):
    return importlib.import_module(_BACKENDS[framework])


def _inputs(model: Any, backend, example_inputs: Any, options: Mapping, evaluator: str) -> CallInputs:
    return resolve_inputs(
        model,
        example_inputs,
        batch_size=options.get("batch_size"),
        seq_len=options.get("seq_len"),
        ops=backend.OPS,
        forward=backend.forward_of(model),
        evaluator=evaluator,
    )


def _run(evaluator: str, model: Any, inputs: CallInputs | None, ops, work: Callable[[], Any]) -> Any:
    """Run ``work``; a failure of the model's own code is reported with what it was
    called on, not as a bare traceback from deep inside the framework."""
    try:
        return work()
    except AutoKDError:
        raise
    except Exception as exc:
        called = ""
        if inputs is not None:
            called = f" on inputs {inputs.shapes(ops)}"
        raise AutoKDError(
            f"{evaluator}: calling {type(model).__name__}{called} failed: {type(exc).__name__}: {exc}. "
            f"Check AutoDistillation.example_inputs (or evaluation.{evaluator}.batch_size / seq_len)"
        ) from exc


# --- latency ----------------------------------------------------------------------------


def measure_latency(model: Any, example_inputs: Any = None, **options: Any) -> LatencyResult:
    """Milliseconds per batch of a dedicated inference benchmark.

    Warm-up calls, then rounds of ``repeats`` timed samples at a fixed thread count until
    the estimate settles; the result's ``latency_ms`` is the latency (a low quantile: see
    :mod:`autokd_latency._timing`), the rest is its spread. PyTorch runs the model in eval
    mode under ``torch.inference_mode``; TensorFlow runs it traced by ``tf.function``.

    :param example_inputs: a batch (tensor, tuple of positional arguments or mapping of
        keyword arguments); None builds token ids from the model's ``config``.
    :param options: ``batch_size``, ``seq_len``, ``warmup``, ``repeats``, ``threads``,
        ``tolerance``, ``min_seconds``, ``max_seconds``.
    """
    explicit_threads = "threads" in options
    opts = validate_options("latency", options)
    framework = detect_framework(model, "latency")
    backend = _backend(framework)
    inputs = _inputs(model, backend, example_inputs, opts, "latency")
    measure_kwargs = {
        "warmup": opts["warmup"],
        "repeats": opts["repeats"],
        "threads": opts["threads"],
        "max_seconds": opts["max_seconds"],
        "min_seconds": opts["min_seconds"],
        "tolerance": opts["tolerance"],
    }
    if framework == "tensorflow":
        measure_kwargs["explicit_threads"] = explicit_threads
    wall, cpu, calls, threads, stats = _run(
        "latency", model, inputs, backend.OPS, lambda: backend.measure(model, inputs, **measure_kwargs)
    )
    return summarize(
        wall,
        cpu,
        **stats,
        warmup=opts["warmup"],
        calls_per_repeat=calls,
        threads=threads,
        batch_size=inputs.batch_size,
        input_shapes=inputs.shapes(backend.OPS),
        framework=framework,
    )


def latency(model: Any, context: EvalContext) -> float:
    """Evaluator ``latency``: milliseconds per batch (lower is better), a low quantile of
    the samples; the spread goes to ``context.extras['latency']``."""
    result = measure_latency(model, context.example_inputs, **dict(context.options or {}))
    context.extras["latency"] = result.to_dict()
    return result.latency_ms


# --- ONNX Runtime latency -----------------------------------------------------------------


def measure_onnx_latency(
    model: Any, example_inputs: Any = None, *, int8: bool = False, **options: Any
) -> LatencyResult:
    """:func:`measure_latency` of the model's ONNX export in an ONNX Runtime session
    (``int8``: its dynamic int8 quantisation); needs ``autokd-latency[onnx]``."""
    name = "onnx_latency_int8" if int8 else "onnx_latency"
    return _measure_onnx(model, example_inputs, name, options)[0]


def _measure_onnx(model: Any, example_inputs: Any, name: str, options: Any) -> tuple[LatencyResult, dict]:
    from ._onnx import measure_onnx_latency as measure

    opts = validate_options(name, options)
    backend = _backend(detect_framework(model, name))
    inputs = _inputs(model, backend, example_inputs, opts, name)
    shapes = inputs.shapes(backend.OPS)
    return _run(
        name,
        model,
        inputs,
        backend.OPS,
        lambda: measure(model, inputs, opts, int8=name.endswith("int8"), evaluator=name, shapes=shapes),
    )


def onnx_latency(model: Any, context: EvalContext) -> float:
    """Evaluator ``onnx_latency``: ``latency`` in ONNX Runtime (fp32 export); the spread
    and the export's agreement with the model go to ``context.extras['onnx_latency']``."""
    result, facts = _measure_onnx(model, context.example_inputs, "onnx_latency", dict(context.options or {}))
    context.extras["onnx_latency"] = {**result.to_dict(), "export": facts}
    return result.latency_ms


def onnx_latency_int8(model: Any, context: EvalContext) -> float:
    """Evaluator ``onnx_latency_int8``: ``latency`` in ONNX Runtime of the dynamic-int8
    quantised export."""
    result, facts = _measure_onnx(model, context.example_inputs, "onnx_latency_int8", dict(context.options or {}))
    context.extras["onnx_latency_int8"] = {**result.to_dict(), "export": facts}
    return result.latency_ms


# --- parameters -------------------------------------------------------------------------


@attrs.frozen
class ParamCount:
    """Parameters of a model: ``trainable`` and ``total``."""

    trainable: int
    total: int
    framework: str

    def to_dict(self) -> dict:
        return attrs.asdict(self)


def _builder_inputs(model: Any, backend, example_inputs: Any, evaluator: str) -> Callable[[], CallInputs]:
    """Inputs for building a Keras model that has not been called yet."""

    def make() -> CallInputs:
        try:
            return _inputs(model, backend, example_inputs, {}, evaluator)
        except AutoKDError:
            raise AutoKDError(
                f"{evaluator}: {type(model).__name__} has no weights yet (a Keras model creates them on its first "
                f"call) and no inputs to build it with: call model.build(input_shape) or the model itself once "
                f"in model_builder, or set AutoDistillation.example_inputs"
            ) from None

    return make


def count_params(model: Any, example_inputs: Any = None) -> ParamCount:
    """Trainable and total parameters (a tied parameter counts once). ``example_inputs``
    is used only to build a Keras model that has no weights yet."""
    framework = detect_framework(model, "params")
    backend = _backend(framework)
    if framework == "pytorch":
        trainable, total = backend.count_params(model)
    else:
        make = _builder_inputs(model, backend, example_inputs, "params")
        trainable, total = _run("params", model, None, backend.OPS, lambda: backend.count_params(model, make))
    return ParamCount(trainable, total, framework)


def params(model: Any, context: EvalContext) -> float:
    """Evaluator ``params``: the total parameter count (``trainable_only: true``: the
    trainable count); both go to ``context.extras['params']``."""
    opts = validate_options("params", context.options)
    count = count_params(model, context.example_inputs)
    context.extras["params"] = count.to_dict()
    return float(count.trainable if opts["trainable_only"] else count.total)


# --- FLOPs ------------------------------------------------------------------------------


@attrs.frozen
class FlopCount:
    """Forward FLOPs of one batch (a multiply-add is 2 FLOPs).

    :ivar by_op: FLOPs per operator (aten op) or op type (TensorFlow).
    :ivar uncounted_ops: TensorFlow op types in the graph that do arithmetic but that
        the profiler has no formula for (their FLOPs are missing from ``total``).
    """

    total: int
    by_op: dict
    counter: str
    ops: str
    batch_size: int | None
    input_shapes: dict
    framework: str
    uncounted_ops: list = attrs.field(factory=list)

    def to_dict(self) -> dict:
        return attrs.asdict(self)


def count_flops(model: Any, example_inputs: Any = None, **options: Any) -> FlopCount:
    """Forward FLOPs for the batch's shape: PyTorch by
    ``torch.utils.flop_counter.FlopCounterMode``, TensorFlow by the TF profiler on the
    model's concrete function.

    :param options: ``batch_size``, ``seq_len``, ``ops`` (``'all'`` or ``'matmul'``).
    """
    opts = validate_options("flops", options)
    framework = detect_framework(model, "flops")
    backend = _backend(framework)
    inputs = _inputs(model, backend, example_inputs, opts, "flops")
    uncounted: list[str] = []
    if framework == "pytorch":
        total, by_op = _run(
            "flops", model, inputs, backend.OPS, lambda: backend.count_flops(model, inputs, ops=opts["ops"])
        )
        counter = "torch.utils.flop_counter.FlopCounterMode"
    else:
        total, by_op, uncounted = _run(
            "flops", model, inputs, backend.OPS, lambda: backend.count_flops(model, inputs, ops=opts["ops"])
        )
        counter = "tf.compat.v1.profiler (float_operation)"
    return FlopCount(
        total, by_op, counter, opts["ops"], inputs.batch_size, inputs.shapes(backend.OPS), framework, uncounted
    )


def flops(model: Any, context: EvalContext) -> float:
    """Evaluator ``flops``: forward FLOPs of one batch; the count per operator goes to
    ``context.extras['flops']``."""
    count = count_flops(model, context.example_inputs, **dict(context.options or {}))
    context.extras["flops"] = count.to_dict()
    return float(count.total)


# --- size -------------------------------------------------------------------------------


@attrs.frozen
class WeightsSize:
    """Bytes of the model's saved weights (parameters and persistent buffers in their
    own dtypes; a tied tensor once), without the file format's own overhead."""

    bytes: int
    tensors: int
    framework: str

    @property
    def megabytes(self) -> float:
        return self.bytes / BYTES_PER_MB

    def to_dict(self) -> dict:
        return {**attrs.asdict(self), "mb": self.megabytes}


def weights_size(model: Any, example_inputs: Any = None) -> WeightsSize:
    """The size of the model's weights as a weights file stores them."""
    framework = detect_framework(model, "model_size")
    backend = _backend(framework)
    if framework == "pytorch":
        size, tensors = backend.weights_bytes(model)
    else:
        make = _builder_inputs(model, backend, example_inputs, "model_size")
        size, tensors = _run("model_size", model, None, backend.OPS, lambda: backend.weights_bytes(model, make))
    return WeightsSize(size, tensors, framework)


def model_size(model: Any, context: EvalContext) -> float:
    """Evaluator ``model_size``: megabytes (10^6 bytes) of the saved weights; exact bytes
    go to ``context.extras['model_size']``."""
    validate_options("model_size", context.options)
    size = weights_size(model, context.example_inputs)
    context.extras["model_size"] = size.to_dict()
    return size.megabytes


# --- TensorFlow threads -----------------------------------------------------------------


def pin_tensorflow_threads(threads: int = 1, inter_op_threads: int = 1) -> None:
    """Fix TensorFlow's intra-op (and inter-op) thread pools for the whole process, so
    the ``latency`` evaluator's ``threads`` holds for TensorFlow models. TensorFlow only
    allows this before its runtime starts: call it at the start of the program."""
    from . import _tensorflow

    _tensorflow.pin_threads(threads, inter_op_threads)
