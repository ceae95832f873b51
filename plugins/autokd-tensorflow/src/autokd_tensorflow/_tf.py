"""Importing TensorFlow the way transformers 4.x TF models need it.

transformers' TF models are Keras 2 models: they need ``tf-keras``. TensorFlow picks the
Keras behind ``tf.keras`` when it is first imported, from ``TF_USE_LEGACY_KERAS``; so the
variable is set (unless the user set it) before this plugin first imports TensorFlow, and
every Keras object this plugin makes comes from ``tf_keras`` itself.
"""

from __future__ import annotations

import os

from autokd import AutoKDError

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def tensorflow():
    """The ``tensorflow`` module."""
    import tensorflow

    return tensorflow


def keras():
    """Keras 2 (``tf_keras``), the Keras of transformers' TF models."""
    try:
        import tf_keras
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise AutoKDError("autokd-tensorflow needs tf-keras (Keras 2): pip install tf-keras") from exc
    return tf_keras


def check_keras2_model(model, role: str) -> None:
    """Refuse a Keras 3 model with the fix, instead of a failure deep inside training."""
    module = type(model).__module__ or ""
    if module.startswith("keras.") or module == "keras":
        import keras as keras3

        major = getattr(keras3, "__version__", "2").split(".")[0]
        if major.isdigit() and int(major) >= 3:
            raise AutoKDError(
                f"the {role} is a Keras 3 model ({type(model).__qualname__}); autokd-tensorflow trains Keras 2 "
                f"(tf-keras) models: set TF_USE_LEGACY_KERAS=1 before importing tensorflow, or build the model "
                f"with tf_keras"
            )
