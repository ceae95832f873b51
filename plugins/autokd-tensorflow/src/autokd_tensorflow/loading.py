"""Loading teachers: an import string, or a model folder (``config.json`` and
safetensors weights), without torch.

transformers 4.x ``TFAutoModel.from_pretrained`` cannot read safetensors written by
PyTorch (``{'format': 'pt'}``) when torch is not installed: it iterates a lazy
``safe_open`` handle that is not iterable. The folder is therefore loaded here: the model
is built from its config, the weights are read as numpy arrays with
``safetensors.numpy`` and mapped onto the TF variables by transformers' own PyTorch→TF
name conversion (which transposes linear kernels). Weights written by a TF model
(``{'format': 'tf'}``) are matched by their TF names. Nothing is unpickled.
"""

from __future__ import annotations

import json
import os
from typing import Any

from autokd import AutoKDError, ConfigError

from . import _tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from .builders import _default_cls, resolve_model_cls

__all__ = ["load_model", "load_safetensors_model", "safetensors_files"]


def safetensors_files(folder: str) -> list[str]:
    """The weight files of a folder: ``model.safetensors`` or the shards its
    ``model.safetensors.index.json`` lists."""
    single = os.path.join(folder, "model.safetensors")
    if os.path.isfile(single):
        return [single]
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index, encoding="utf-8") as fh:
            weight_map = json.load(fh).get("weight_map", {})
        return [os.path.join(folder, name) for name in dict.fromkeys(weight_map.values())]
    return []


def _format(path: str) -> str:
    from safetensors import safe_open

    with safe_open(path, framework="numpy") as handle:
        metadata = handle.metadata() or {}
    return metadata.get("format", "pt")


def load_safetensors_model(folder: str | os.PathLike, model_cls: Any = None):
    """A transformers TF model from a folder with ``config.json`` and safetensors
    weights written by PyTorch or TensorFlow.

    :param model_cls: the TF class to build; by default the TF class of the config's
        ``architectures`` (``BertForSequenceClassification`` → ``TFBertForSequenceClassification``).
    """
    from transformers import AutoConfig

    folder = os.fspath(folder)
    files = safetensors_files(folder)
    if not files:
        raise AutoKDError(f"{folder}: no model.safetensors (or model.safetensors.index.json) in the folder")
    config = AutoConfig.from_pretrained(folder)
    cls = resolve_model_cls(model_cls) if model_cls is not None else _default_cls(config)
    if cls is None:
        raise ConfigError(
            f"{folder}: config.json names no architecture with a TF class; pass model_cls "
            f"(e.g. transformers:TFAutoModelForSequenceClassification)"
        )
    try:
        model = cls.from_config(config) if hasattr(cls, "from_config") else cls(config)
        model(model.dummy_inputs, training=False)
    except (AttributeError, ValueError, TypeError) as exc:
        raise AutoKDError(
            f"{folder}: cannot build {getattr(cls, '__name__', cls)} from its {type(config).__name__}: {exc}; "
            f"pass the model_cls it was saved from"
        ) from None
    formats = {_format(f) for f in files}
    if formats == {"tf"}:
        _load_tf_named(model, files, folder)
    else:
        _load_pt_named(model, files, folder)
    return model


def _load_pt_named(model, files: list[str], folder: str) -> None:
    from safetensors.numpy import load_file
    from transformers.modeling_tf_pytorch_utils import load_pytorch_state_dict_in_tf2_model

    state_dict: dict = {}
    for path in files:
        state_dict.update(load_file(path))
    try:
        load_pytorch_state_dict_in_tf2_model(model, state_dict, allow_missing_keys=False)
    except AttributeError as exc:  # transformers' way of saying a weight is missing
        raise AutoKDError(
            f"{folder}: the checkpoint does not fit {type(model).__name__}: {exc}; pass the model_cls it was saved from"
        ) from None


def _load_tf_named(model, files: list[str], folder: str) -> None:
    from transformers.modeling_tf_utils import load_tf_weights_from_safetensors

    still_missing = None
    for path in files:
        missing, _unexpected, _mismatched = load_tf_weights_from_safetensors(model, path)
        still_missing = set(missing) if still_missing is None else still_missing & set(missing)
    if still_missing:
        raise AutoKDError(
            f"{folder}: the checkpoint does not fit {type(model).__name__}: no weights for "
            f"{sorted(still_missing)[:5]}; pass the model_cls it was saved from"
        )


def load_model(spec: Any, model_cls: Any = None, field: str = "model.teacher"):
    """A model from a model object (returned as is), an import string
    ``'module:function'`` (called when callable) or a model folder."""
    if not isinstance(spec, str | os.PathLike):
        return spec
    text = os.fspath(spec)
    if os.path.isdir(text):
        if safetensors_files(text):
            return load_safetensors_model(text, model_cls)
        cls = resolve_model_cls(model_cls) if model_cls is not None else None
        if cls is None:
            from transformers import TFAutoModel

            cls = TFAutoModel
        try:
            return cls.from_pretrained(text)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{field}: cannot load a model from {text}: {exc}") from None
    if ":" in text:
        from autokd import import_object

        obj = import_object(text, field)
        keras = _tf.keras()
        if callable(obj) and not isinstance(obj, keras.Model):
            obj = obj()
        return obj
    raise ConfigError(f"{field}: {text!r} is neither a model folder nor an import string 'module:function'")
