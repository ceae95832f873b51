"""Which framework a model belongs to, read from its class hierarchy.

Only module names are inspected, so neither torch nor tensorflow is imported to decide:
a PyTorch model has ``torch.nn.Module`` in its MRO, a TensorFlow model has a class from
``tensorflow``, ``tf_keras`` or ``keras`` (``tf.keras.Model``, Keras 3, ``tf.Module``).
"""

from __future__ import annotations

import sys
from typing import Any

from autokd import AutoKDError

__all__ = ["UnsupportedModelError", "detect_framework"]

_TF_ROOTS = ("tensorflow", "tf_keras", "keras")


class UnsupportedModelError(AutoKDError, TypeError):
    """The model is neither a PyTorch nor a TensorFlow/Keras model."""


def _type_name(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _roots(model: Any) -> list[str]:
    return [(getattr(cls, "__module__", None) or "").split(".")[0] for cls in type(model).__mro__]


def detect_framework(model: Any, what: str = "autokd-latency") -> str:
    """``'pytorch'`` or ``'tensorflow'``; raises :class:`UnsupportedModelError` otherwise.

    A Keras 3 model counts as TensorFlow only on Keras' TensorFlow backend; on the torch
    backend it is also a ``torch.nn.Module`` and is measured as one.
    """
    roots = _roots(model)
    if "torch" in roots:
        return "pytorch"
    if any(root in _TF_ROOTS for root in roots):
        if "keras" in roots and "tensorflow" not in roots and "tf_keras" not in roots:
            keras = sys.modules.get("keras")
            backend = keras.backend.backend() if keras is not None else "unknown"
            if backend != "tensorflow":
                raise UnsupportedModelError(
                    f"{what}: {_type_name(model)} is a Keras 3 model on the {backend!r} backend; "
                    f"only Keras on the TensorFlow backend (KERAS_BACKEND=tensorflow) or torch is supported"
                )
        return "tensorflow"
    raise UnsupportedModelError(
        f"{what}: cannot evaluate a model of type {_type_name(model)}: supported are PyTorch models "
        f"(torch.nn.Module) and TensorFlow/Keras models (keras.Model, tf.Module). If the model wraps one, "
        f"have model_builder return the wrapped torch or Keras model"
    )
