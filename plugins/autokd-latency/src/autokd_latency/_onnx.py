"""``onnx_latency`` and ``onnx_latency_int8``: the ``latency`` benchmark run on an ONNX
Runtime session of the model's ONNX export (``autokd-onnx``; int8: its dynamic
quantisation), so a search can rank students by the runtime they are deployed with.

Same options and timing rules as ``latency``: the same batch (``batch_size``,
``seq_len``), warm-up, samples of at least ``MIN_SAMPLE_S``, ``threads`` as the session's
intra-op threads (one inter-op thread), the same robust estimate and spread.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from autokd import ConfigError

from ._detect import detect_framework
from ._timing import LatencyResult, measure_adaptive

__all__ = ["measure_onnx_latency"]


def _autokd_onnx(evaluator: str):
    try:
        import autokd_onnx
    except ImportError:
        raise ConfigError(
            f"evaluation.{evaluator}: needs the autokd-onnx plugin (onnx, onnxruntime): "
            f"pip install 'autokd-latency[onnx]'"
        ) from None
    return autokd_onnx


def measure_onnx_latency(
    model: Any, inputs, opts: dict, *, int8: bool, evaluator: str, shapes: dict
) -> tuple[LatencyResult, dict]:
    """(the latency of the model's ONNX copy in ONNX Runtime, facts of the export)."""
    autokd_onnx = _autokd_onnx(evaluator)
    framework = detect_framework(model, evaluator)
    example = dict(inputs.kwargs) if inputs.kwargs else tuple(inputs.args)
    with tempfile.TemporaryDirectory(prefix="autokd-onnx-latency-") as directory:
        export = autokd_onnx.export_model(model, example, os.path.join(directory, "model.onnx"))
        path = export.path
        if int8:
            path = autokd_onnx.quantize_int8(path, os.path.join(directory, "model.int8.onnx"))
        session = autokd_onnx.make_session(path, threads=opts["threads"])
        from autokd_onnx.runtime import to_numpy_inputs

        feed = to_numpy_inputs(session, inputs.args, inputs.kwargs)

        def call() -> Any:
            return session.run(None, feed)

        wall, cpu, calls, stats = measure_adaptive(
            call,
            warmup=opts["warmup"],
            repeats=opts["repeats"],
            max_seconds=opts["max_seconds"],
            min_seconds=opts["min_seconds"],
            tolerance=opts["tolerance"],
        )
    result = LatencyResult.from_samples(
        wall,
        cpu,
        stats,
        warmup=opts["warmup"],
        calls_per_repeat=calls,
        threads=opts["threads"],
        batch_size=inputs.batch_size,
        input_shapes=shapes,
        framework=f"onnxruntime ({framework} export{', dynamic int8' if int8 else ''})",
    )
    facts = {"max_abs_diff": export.max_abs_diff, "exporter": export.exporter, "opset": export.opset}
    return result, facts
