"""autokd-latency: hardware evaluators for autokd searches.

``latency`` (milliseconds per batch of a dedicated inference benchmark), ``params``,
``flops`` and ``model_size`` (MB of the saved weights), for PyTorch and TensorFlow/Keras
models. Use them by name in ``search.metrics``; the functions below measure a model
outside a search. Neither torch nor tensorflow is imported until a model of that
framework is measured.
"""

from __future__ import annotations

from ._detect import UnsupportedModelError, detect_framework
from ._options import OPTIONS
from .evaluators import (
    FlopCount,
    LatencyResult,
    ParamCount,
    WeightsSize,
    count_flops,
    count_params,
    flops,
    latency,
    measure_latency,
    measure_onnx_latency,
    model_size,
    onnx_latency,
    onnx_latency_int8,
    params,
    pin_tensorflow_threads,
    weights_size,
)

__version__ = "0.1.0"

__all__ = [
    "OPTIONS",
    "FlopCount",
    "LatencyResult",
    "ParamCount",
    "UnsupportedModelError",
    "WeightsSize",
    "__version__",
    "count_flops",
    "count_params",
    "detect_framework",
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
