"""autokd plugin ``latency``: registers the evaluators ``latency``, ``params``, ``flops``
and ``model_size`` for every framework (the framework is detected from the model).

Importing this module imports neither torch nor tensorflow.
"""

from __future__ import annotations

import autokd

from . import evaluators


@autokd.hookimpl
def register_evaluators(register):
    # All four are costs: lower is better, so configs may leave higher_is_better out.
    register("latency", evaluators.latency, framework=None, higher_is_better=False)
    register("params", evaluators.params, framework=None, higher_is_better=False)
    register("flops", evaluators.flops, framework=None, higher_is_better=False)
    register("model_size", evaluators.model_size, framework=None, higher_is_better=False)
    # ONNX Runtime latencies (autokd-latency[onnx]): the export is PyTorch's or tf2onnx's.
    register("onnx_latency", evaluators.onnx_latency, framework=None, higher_is_better=False)
    register("onnx_latency_int8", evaluators.onnx_latency_int8, framework=None, higher_is_better=False)
