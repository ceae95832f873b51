"""int8 copies of an exported student: onnxruntime's dynamic quantisation (int8 weights,
activations quantised on the fly) and static quantisation (int8 weights per channel and
activations with scales calibrated on real batches, in the QDQ format).

Dynamic quantisation uses 7-bit weights (``reduce_range``). With full-range int8
weights, x86 CPUs without VNNI (AVX2: this machine's EPYC, most CI runners) multiply
uint8 activations by int8 weights with ``VPMADDUBSW``, whose int16 sums of pairs saturate:
the MiniLM student's fidelity fell from 0.664 to 0.192 (cosine to its own fp32
embeddings 0.270); 7-bit weights cannot overflow and kept 0.657 (0.990), at the same
speed (``benchmarks/export.py``). Per-channel weights (0.165) and MatMul-only (0.191) did
not help; unsigned weights did too (0.663) but ran 10% slower.

``output.quantize: static_int8`` quantises the MatMuls' activations too, with ranges
calibrated on up to ``CALIBRATION_BATCHES`` batches of the search's evaluation data (else
on the example batch), in the QDQ format with per-channel weights. On the MiniLM
student it kept fidelity 0.657 but ran slower than fp32 on this CPU (QDQ runs int8 MatMuls
fast only with VNNI); quantising every op, LayerNorm and Gather included, cost fidelity
(0.513) and time.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["CALIBRATION_BATCHES", "calibration_feeds", "quantize_dynamic_int8", "quantize_static_int8"]

log = logging.getLogger("autokd.onnx")

CALIBRATION_BATCHES = 16


def quantize_dynamic_int8(path: str, out_path: str, **options: Any) -> str:
    """``onnxruntime.quantization.quantize_dynamic`` with 7-bit int8 weights
    (``reduce_range``, see the module's docs); ``options`` override its keyword arguments
    (``reduce_range``, ``per_channel``, ``op_types_to_quantize``, ``nodes_to_exclude``, ...)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(path, out_path, **{"weight_type": QuantType.QInt8, "reduce_range": True, **options})
    return out_path


class _Feeds:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over a list of feeds."""

    def __init__(self, feeds: list[dict]):
        self._feeds = iter(feeds)

    def get_next(self) -> dict | None:
        return next(self._feeds, None)


def quantize_static_int8(path: str, out_path: str, feeds: Iterable[Mapping[str, Any]], **options: Any) -> str:
    """``onnxruntime.quantization.quantize_static``: the MatMuls in QDQ format, int8
    weights per output channel, int8 activations whose ranges are calibrated (min-max)
    by running the model on ``feeds`` (graph input name → numpy array). The graph is first prepared with
    ``quant_pre_process`` (shape inference and fusions), as onnxruntime recommends.
    ``options`` override the keyword arguments of ``quantize_static``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    feeds = [dict(f) for f in feeds]
    if not feeds:
        raise ValueError("static int8 quantisation needs at least one calibration batch")
    reader = type("CalibrationFeeds", (_Feeds, CalibrationDataReader), {})(feeds)
    settings = {
        "quant_format": QuantFormat.QDQ,
        "per_channel": True,
        "weight_type": QuantType.QInt8,
        "activation_type": QuantType.QInt8,
        "op_types_to_quantize": ["MatMul"],
        **options,
    }
    with tempfile.TemporaryDirectory(prefix="autokd-quantize-") as directory:
        prepared = os.path.join(directory, "prepared.onnx")
        # torch's exports defeat the symbolic shape inference ("Incomplete symbolic shape
        # inference" on the attention mask's arithmetic); ONNX's own inference suffices
        quant_pre_process(path, prepared, skip_symbolic_shape=True)
        quantize_static(prepared, out_path, reader, **settings)
    return out_path


def calibration_feeds(session_inputs: list[str], example_inputs: Any, eval_data: Any = None) -> tuple[list, str]:
    """(feeds, where they came from): up to ``CALIBRATION_BATCHES`` batches of
    ``eval_data`` (a PyTorch map-style dataset or an iterable of batches, as the
    search's evaluation takes them), else the example batch."""
    feeds: list[dict] = []
    if eval_data is not None:
        try:
            for inputs in _torch_batches(eval_data, example_inputs):
                feeds.append(_feed(session_inputs, inputs))
                if len(feeds) >= CALIBRATION_BATCHES:
                    break
        except Exception as exc:  # calibration falls back on the example batch, and says so
            log.warning(
                "output.quantize: calibration batches from the evaluation data failed (%s: %s); "
                "calibrating on the example batch",
                type(exc).__name__,
                exc,
            )
            feeds = []
    if feeds:
        return feeds, f"{len(feeds)} batches of the evaluation data"
    return [_feed(session_inputs, example_inputs)], "the example batch"


def _torch_batches(eval_data: Any, example_inputs: Any) -> Iterable:
    from autokd_torch.data import make_dataloader, split_batch, unwrap

    if hasattr(eval_data, "__getitem__") and hasattr(eval_data, "__len__"):
        rows = _rows(example_inputs) or 32
        eval_data = make_dataloader(eval_data, rows, shuffle=False)
    for item in eval_data:
        yield split_batch(unwrap(item)[1])[0]


def _rows(example_inputs: Any) -> int | None:
    first = next(iter(example_inputs.values())) if isinstance(example_inputs, Mapping) else example_inputs
    if isinstance(first, tuple | list):
        first = first[0] if first else None
    shape = getattr(first, "shape", None)
    return int(shape[0]) if shape else None


def _feed(session_inputs: list[str], inputs: Any) -> dict:
    from .export import split_inputs
    from .runtime import _numpy

    args, kwargs = split_inputs(inputs)
    feed = {name: _numpy(value) for name, value in zip(session_inputs, args, strict=False)}
    for name in session_inputs:
        if name not in feed and name in kwargs:
            feed[name] = _numpy(kwargs[name])
    missing = [n for n in session_inputs if n not in feed]
    if missing:
        raise TypeError(f"a calibration batch lacks the graph's inputs {missing}")
    return feed
