"""ONNX Runtime sessions, and a student's ONNX copy called like the student.

:class:`OrtModel` takes the same arguments as the model it was exported from (tensors,
positional or by name) and returns torch tensors when given torch tensors, so the
search's own eval function can measure an ONNX (or int8) copy unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["OrtModel", "make_session", "to_numpy_inputs"]


def make_session(path: str, threads: int | None = 1) -> Any:
    """An ``onnxruntime.InferenceSession`` on the CPU with ``threads`` intra-op threads
    (and one inter-op thread: the graph runs sequentially)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _numpy(value: Any) -> Any:
    import numpy as np

    if hasattr(value, "detach"):  # torch
        return value.detach().cpu().numpy()
    if hasattr(value, "numpy"):  # tensorflow
        return value.numpy()
    return np.asarray(value)


def to_numpy_inputs(session: Any, args: Sequence = (), kwargs: Mapping | None = None) -> dict:
    """The feed of ``session`` for a call ``model(*args, **kwargs)``: positional
    arguments fill the graph's inputs in order, keyword arguments by name; inputs the
    graph does not take (e.g. unused ``token_type_ids``) are dropped."""
    names = [i.name for i in session.get_inputs()]
    kwargs = dict(kwargs or {})
    feed = {}
    for name, value in zip(names, args, strict=False):
        feed[name] = _numpy(value)
    for name in names:
        if name in kwargs and name not in feed:
            feed[name] = _numpy(kwargs[name])
    missing = [n for n in names if n not in feed]
    if missing:
        raise TypeError(f"the ONNX graph needs inputs {missing}, the call gave {sorted(kwargs) or len(args)}")
    return {name: _cast(session, name, value) for name, value in feed.items()}


def _cast(session: Any, name: str, value: Any) -> Any:
    import numpy as np

    kinds = {i.name: i.type for i in session.get_inputs()}
    dtype = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float)": np.float32}.get(kinds.get(name))
    return value.astype(dtype, copy=False) if dtype is not None else value


def _make_torch_module():
    import torch

    class OrtModule(torch.nn.Module):
        """An ONNX Runtime session that a torch eval function can call like the student."""

        def __init__(self, session: Any, source: Any = None):
            super().__init__()
            self.session = session
            config = getattr(source, "config", None)
            if config is not None:
                self.__dict__["config"] = config  # read by hardware evaluators, not a submodule

        def forward(self, *args, **kwargs):
            outputs = self.session.run(None, to_numpy_inputs(self.session, args, kwargs))
            tensors = tuple(torch.from_numpy(o) for o in outputs)
            return tensors[0] if len(tensors) == 1 else tensors

    return OrtModule


def OrtModel(session_or_path: Any, source: Any = None, threads: int | None = 1) -> Any:
    """A ``torch.nn.Module`` running an ONNX file (or session) in ONNX Runtime."""
    session = make_session(session_or_path, threads) if isinstance(session_or_path, str) else session_or_path
    return _make_torch_module()(session, source)
