"""Building students: a transformers TF model from a base config with the architecture
parameters of a trial applied."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from typing import Any

from autokd import ConfigError, record_extra

from . import _tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

__all__ = ["build_transformers_model", "resolve_model_cls", "resolve_config", "apply_arch"]


def resolve_model_cls(model_cls: Any, field: str = "model_cls") -> Any:
    """A model class from a class, ``"module:Class"`` or a name in ``transformers``
    (``"TFAutoModelForSequenceClassification"``)."""
    if not isinstance(model_cls, str):
        return model_cls
    import importlib

    module_name, _, attr = model_cls.rpartition(":")
    if not module_name:
        module_name, attr = "transformers", model_cls
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{field}: cannot import {model_cls!r} ({exc}); use 'module:Class'") from None


def resolve_config(base_config: Any, field: str = "base_config"):
    """A ``PretrainedConfig`` from a config object, a dict with ``model_type``, a
    ``config.json`` file or a model folder."""
    from transformers import AutoConfig, PretrainedConfig

    if isinstance(base_config, PretrainedConfig):
        return base_config
    if isinstance(base_config, str | os.PathLike):
        path = os.fspath(base_config)
        if os.path.isdir(path) or os.path.isfile(path):
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as fh:
                    base_config = json.load(fh)
            else:
                return AutoConfig.from_pretrained(path)
        else:
            raise ConfigError(f"{field}: no such config file or model folder: {path}")
    if isinstance(base_config, Mapping):
        values = dict(base_config)
        model_type = values.pop("model_type", None)
        if model_type is None:
            raise ConfigError(f"{field}: a config dict needs 'model_type' (e.g. 'bert'), got keys {sorted(values)}")
        try:
            return AutoConfig.for_model(model_type, **values)
        except ValueError as exc:
            raise ConfigError(f"{field}.model_type: {exc}") from None
    raise ConfigError(
        f"{field}: expected a transformers config, a dict with model_type, or a path, got {type(base_config).__name__}"
    )


def apply_arch(config: Any, arch_params: Mapping[str, Any]):
    """A copy of ``config`` with the architecture parameters set; a parameter the config
    does not have is an error naming it."""
    config = copy.deepcopy(config)
    for key, value in arch_params.items():
        if not hasattr(config, key):
            raise ConfigError(
                f"auto_distillation.search.search_space.{key}: {type(config).__name__} has no field {key!r}; "
                f"search over fields of the student's config (e.g. hidden_size, intermediate_size)"
            )
        setattr(config, key, value)
    return config


def _default_cls(config: Any):
    import transformers

    for name in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, name if name.startswith("TF") else f"TF{name}", None)
        if cls is not None:
            return cls
    return None


def build_transformers_model(
    arch_params: Mapping[str, Any],
    model_cls: Any = None,
    base_config: Any = None,
    **config_overrides: Any,
):
    """A transformers TF model: ``model_cls.from_config`` of a copy of ``base_config``
    with ``arch_params`` (and ``config_overrides``) applied, its variables built.

    :param model_cls: a TF model class, ``"module:Class"`` or a transformers name; by
        default the TF class of the config's ``architectures``.
    :param base_config: a ``PretrainedConfig``, a dict with ``model_type``, or a path.
    """
    if base_config is None:
        raise ConfigError(
            "model.builder_options.base_config: the transformers builder needs the student's base config "
            "(a config object, a dict with model_type, or a config.json / model folder path)"
        )
    config = apply_arch(
        resolve_config(base_config, "model.builder_options.base_config"), {**config_overrides, **arch_params}
    )
    cls = (
        resolve_model_cls(model_cls, "model.builder_options.model_cls")
        if model_cls is not None
        else _default_cls(config)
    )
    if cls is None:
        raise ConfigError(
            "model.builder_options.model_cls: not given and the base config names no TF architecture; "
            "give one, e.g. 'transformers:TFAutoModelForSequenceClassification'"
        )
    model = cls.from_config(config) if hasattr(cls, "from_config") else cls(config)
    model(model.dummy_inputs, training=False)  # create the variables
    record_extra("student_parameters", int(model.count_params()))
    return model
