"""Saving trained Keras students: a transformers TF model with ``save_pretrained``
(loadable with ``from_pretrained``), any other Keras model in the ``.keras`` format
(``keras.models.load_model``); never a pickle."""

from __future__ import annotations

import os
from typing import Any

from autokd import AutoKDError

__all__ = ["KERAS_FILE", "save_student"]

KERAS_FILE = "model.keras"


def save_student(model: Any, directory: str, *, record=None, context=None) -> dict:
    """Save ``model`` in ``directory``; returns ``format``, ``files`` and ``load``."""
    from ._tf import keras

    keras = keras()  # tf_keras: Keras 2, whose .keras format is the Keras v3 zip

    try:
        import transformers

        pretrained = getattr(transformers, "TFPreTrainedModel", None)
    except ImportError:
        pretrained = None
    if pretrained is not None and isinstance(model, pretrained):
        model.save_pretrained(directory)
        cls = type(model).__name__
        info = {
            "format": "transformers (TensorFlow)",
            "load": f"from transformers import {cls}\nmodel = {cls}.from_pretrained({directory!r})",
        }
    elif isinstance(model, keras.Model):
        path = os.path.join(directory, KERAS_FILE)
        model.save(path)
        info = {"format": "keras", "load": f"import tf_keras\nmodel = tf_keras.models.load_model({path!r})"}
    else:
        raise AutoKDError(f"output.save: the tensorflow backend saves Keras students, got {type(model).__name__}")
    info["files"] = sorted(
        os.path.relpath(os.path.join(root, name), directory) for root, _, names in os.walk(directory) for name in names
    )
    return info
