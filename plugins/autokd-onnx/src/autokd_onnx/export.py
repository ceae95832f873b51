"""The export itself: a student to ONNX, checked, and optionally quantised to int8.

PyTorch students go through ``torch.onnx.export`` with the TorchScript exporter
(``dynamo=False``) and ``dynamic_axes``: torch >= 2.9 defaults to the dynamo exporter,
which needs ``onnxscript`` and ``torch.export``-traceable models, and fails on more of the
models autokd builds (data-dependent shapes in attention masks); the TorchScript
exporter's ``dynamic_axes`` keep batch and sequence free. Every export is checked by
``onnx.checker`` and by running ONNX Runtime on the example batch and on a smaller one
(one row, half the tokens: the dynamic axes really are dynamic) against the framework.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import attrs

from autokd import AutoKDError, ConfigError

__all__ = ["OPSET", "TOLERANCE", "ExportResult", "check_available", "export_model", "export_student", "quantize_int8"]

log = logging.getLogger("autokd.onnx")

OPSET = 17
# fp32 ONNX Runtime against the framework: kernels differ (fused attention, GELU), so
# outputs agree to ~1e-6 typically; 1e-4 absolute plus 1e-3 relative leaves room for
# deeper students without hiding a wrong export (a wrong input order gives O(1) errors).
TOLERANCE = {"atol": 1e-4, "rtol": 1e-3}
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"


@attrs.frozen
class ExportResult:
    """One export: its file, the graph's inputs and outputs and how close ONNX Runtime
    came to the framework (``max_abs_diff`` on the example batch, ``max_abs_diff_small``
    on a batch of one row and half the sequence)."""

    path: str
    opset: int
    input_names: list
    output_names: list
    dynamic_axes: dict
    max_abs_diff: float
    max_abs_diff_small: float | None
    tolerance: dict
    matches: bool
    exporter: str

    def to_dict(self) -> dict:
        return attrs.asdict(self)


def check_available(framework: str, quantize: str = "none") -> None:
    """Raise :class:`autokd.ConfigError` before any training when the export cannot run."""
    import importlib.util

    missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if framework == "tensorflow" and importlib.util.find_spec("tf2onnx") is None:
        missing.append("tf2onnx")
    if missing:
        raise ConfigError(
            f"output.onnx: exporting {framework} students needs {', '.join(missing)}: "
            f"pip install 'autokd-onnx[tensorflow]'"
            if framework == "tensorflow"
            else f"output.onnx: exporting {framework} students needs {', '.join(missing)}: pip install autokd-onnx"
        )


def _framework(model: Any) -> str:
    mro = {f"{c.__module__}.{c.__qualname__}".split(".")[0] for c in type(model).__mro__}
    if "torch" in mro:
        return "pytorch"
    if mro & {"keras", "tf_keras", "tensorflow"}:
        return "tensorflow"
    raise AutoKDError(f"output.onnx: cannot export a {type(model).__name__}: neither a torch nor a Keras model")


def export_model(model: Any, example_inputs: Any, path: str, *, opset: int = OPSET) -> ExportResult:
    """Export ``model`` (called on ``example_inputs``) to ``path`` and check it."""
    if example_inputs is None:
        raise AutoKDError(
            "output.onnx: the export traces the student on an example batch and none is known: "
            "set AutoDistillation.example_inputs (the backends set it from data.train)"
        )
    if _framework(model) == "pytorch":
        from . import _torch

        return _torch.export(model, example_inputs, path, opset=opset, tolerance=TOLERANCE)
    from . import _tensorflow

    return _tensorflow.export(model, example_inputs, path, opset=opset, tolerance=TOLERANCE)


def quantize_int8(path: str, out_path: str) -> str:
    """``onnxruntime.quantization.quantize_dynamic``: 7-bit int8 weights, activations
    quantised on the fly (no calibration data); see :mod:`autokd_onnx.quantize`."""
    from .quantize import quantize_dynamic_int8

    return quantize_dynamic_int8(path, out_path)


def _quantize(result: ExportResult, model: Any, directory: str, context) -> dict:
    """``output.quantize``: ``model.int8.onnx`` and how it was made."""
    from .quantize import calibration_feeds, quantize_static_int8

    int8_path = os.path.join(directory, INT8_FILE)
    int8: dict[str, Any] = {"path": INT8_FILE, "quantize": context.output.quantize}
    if context.output.quantize == "static_int8":
        from .runtime import make_session

        names = [i.name for i in make_session(result.path).get_inputs()]
        torch_data = context.eval_data if result.exporter.startswith("torch") else None
        feeds, source = calibration_feeds(names, context.example_inputs, torch_data)
        quantize_static_int8(result.path, int8_path, feeds)
        int8["method"] = (
            "onnxruntime.quantization.quantize_static (MatMuls, QDQ, QInt8 weights per channel, QInt8 "
            "activations calibrated by min-max)"
        )
        int8["calibration"] = source
    else:
        quantize_int8(result.path, int8_path)
        int8["method"] = "onnxruntime.quantization.quantize_dynamic (QInt8 weights, reduce_range: 7 bits)"
    return int8


def export_student(model: Any, directory: str, *, record=None, context) -> dict:
    """``output.onnx``: ``model.onnx`` (and ``model.int8.onnx``) in ``directory``; the
    facts for ``metrics.json``. Called by the core after the backend saved the student."""
    import onnx

    result = export_model(model, context.example_inputs, os.path.join(directory, ONNX_FILE))
    info = {**result.to_dict(), "path": ONNX_FILE}
    if not result.matches:
        log.warning(
            "output.onnx: ONNX Runtime differs from the model by %.3g (tolerance %s) in %s",
            result.max_abs_diff,
            TOLERANCE,
            directory,
        )
    if context.output.quantize in ("dynamic_int8", "static_int8"):
        int8 = _quantize(result, model, directory, context)
        int8_path = os.path.join(directory, INT8_FILE)
        onnx.checker.check_model(int8_path)
        int8["max_abs_diff"] = _max_diff_of(int8_path, model, context.example_inputs)
        if context.evaluate is not None and result.exporter.startswith("torch"):
            from .runtime import OrtModel

            try:
                int8["metrics"] = context.evaluate(OrtModel(int8_path, source=model))
            except Exception as exc:  # recorded: the card says why the metric is missing
                log.warning("output.quantize: measuring the int8 copy failed: %s: %s", type(exc).__name__, exc)
                int8["metrics"] = None
                int8["metrics_error"] = f"{type(exc).__name__}: {exc}"
        info["int8"] = int8
    return info


def _max_diff_of(path: str, model: Any, example_inputs: Any) -> float:
    if _framework(model) == "pytorch":
        from . import _torch

        return _torch.max_diff(path, model, example_inputs)
    from . import _tensorflow

    return _tensorflow.max_diff(path, model, example_inputs)


def split_inputs(example_inputs: Any) -> tuple[tuple, dict]:
    """(positional, keyword) arguments of a call on ``example_inputs``."""
    if isinstance(example_inputs, Mapping):
        return (), dict(example_inputs)
    if isinstance(example_inputs, tuple | list):
        return tuple(example_inputs), {}
    return (example_inputs,), {}
