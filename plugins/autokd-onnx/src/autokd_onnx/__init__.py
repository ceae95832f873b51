"""autokd-onnx: ONNX copies of the students autokd saves (``output.onnx: true``).

:func:`export_student` exports a saved student to ``model.onnx`` (PyTorch:
``torch.onnx.export`` with dynamic batch and sequence axes; TensorFlow: ``tf2onnx`` where
it is installed), checks it with ``onnx.checker`` and compares ONNX Runtime's outputs with
the framework's, and with ``output.quantize: dynamic_int8`` (or ``static_int8``, see
:mod:`autokd_onnx.quantize`) adds an int8 ``model.int8.onnx`` whose task metrics are
measured again.
``autokd-latency``'s ``onnx_latency`` evaluators time these same exports.

Importing this package imports neither torch, tensorflow nor onnxruntime.
"""

from __future__ import annotations

from .export import ExportResult, check_available, export_model, export_student, quantize_int8
from .runtime import OrtModel, make_session

__version__ = "0.1.0"

__all__ = [
    "ExportResult",
    "OrtModel",
    "__version__",
    "check_available",
    "export_model",
    "export_student",
    "make_session",
    "quantize_int8",
]
