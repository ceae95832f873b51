"""The ``transformers`` model builder: a student from a base config with the searched
architecture parameters applied.

As in the AutoDistillation design, the base config is that of the student family (the
``Trainer``'s model, e.g. a MobileBERT distilled from a BERT teacher) or, by default, the
teacher's. The student's config is rebuilt through its config class, so fields derived
from the architecture (MobileBERT's ``true_hidden_size``, a head dimension) are derived
again instead of copied stale from the base; a student whose config still contradicts
itself is refused before it is built.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import importlib
import inspect
import logging
from collections.abc import Mapping
from typing import Any

from autokd import ConfigError, record_extra

from .distillation import seeded

__all__ = ["build_student_config", "transformers_builder", "resolve_model_cls", "ATTENTION_NAMES"]

log = logging.getLogger("autokd.torch")

# Module-name parts of attention layers in transformers models: distilling their outputs
# means distilling attention maps, which sdpa attention does not return.
ATTENTION_NAMES = ("attention", "attn")

_OPTIONS = (
    "base_config",
    "model_cls",
    "teacher",
    "init_from_teacher",
    "attn_implementation",
    "distilled_layers",
    "seed",
)


def _config_fields(config_cls: type) -> set[str]:
    """The fields a config class takes in its constructor (its own and the base class's)."""
    from transformers import PretrainedConfig

    names: set[str] = set()
    for cls in (config_cls, PretrainedConfig):
        if dataclasses.is_dataclass(cls):
            names |= {f.name for f in dataclasses.fields(cls)}
        names |= {p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "kwargs")}
    names |= set(PretrainedConfig().to_dict())
    return names


def _to_config(base: Any):
    from transformers import AutoConfig, PretrainedConfig

    if isinstance(base, PretrainedConfig):
        return copy.deepcopy(base)
    if hasattr(base, "config") and isinstance(base.config, PretrainedConfig):
        return copy.deepcopy(base.config)
    if isinstance(base, Mapping):
        data = dict(base)
        if "model_type" not in data:
            raise ConfigError(
                f"model.builder_options.base_config: a mapping needs model_type (e.g. 'bert'), got keys {sorted(data)}"
            )
        return AutoConfig.for_model(data.pop("model_type"), **data)
    if isinstance(base, str):
        try:
            return AutoConfig.from_pretrained(base)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"model.builder_options.base_config: cannot load a config from {base!r} (a local directory "
                f"with config.json): {exc}"
            ) from None
    raise ConfigError(
        f"model.builder_options.base_config: expected a PretrainedConfig, a model, a mapping with model_type or a "
        f"path, got {type(base).__name__}"
    )


def build_student_config(base_config: Any, arch_params: Mapping[str, Any]):
    """A copy of ``base_config`` with ``arch_params`` applied, rebuilt by its config class.

    Fields the class derives from the arch parameters are derived again, not copied from
    the base. Unknown arch parameters, values the class does not keep, and an attention
    width that the number of heads does not divide are errors.
    """
    base = _to_config(base_config)
    cls = type(base)
    fields = _config_fields(cls)
    unknown = [k for k in arch_params if k not in fields and not hasattr(base, k)]
    if unknown:
        parts = []
        for name in unknown:
            near = difflib.get_close_matches(name, sorted(fields), n=1, cutoff=0.8)
            parts.append(f"{name!r}" + (f" (did you mean {', '.join(near)}?)" if near else ""))
        verb = "is not a field" if len(parts) == 1 else "are not fields"
        raise ConfigError(
            f"auto_distillation.search.search_space: {', '.join(parts)} {verb} of {cls.__name__}; "
            f"the search space names fields of the student's config"
        )
    values = base.to_dict()
    # Derived fields: attributes the constructor does not take (set from other fields),
    # and fields whose default changes when an arch parameter changes (e.g. head_dim).
    derived = {k for k in values if k not in fields}
    probe_keys = [k for k in arch_params if k in fields]
    try:
        with _quiet():
            plain, moved = cls(), cls(**{k: arch_params[k] for k in probe_keys})
        derived |= {k for k, v in moved.to_dict().items() if k not in arch_params and plain.to_dict().get(k) != v}
    except Exception:  # a class whose constructor rejects these values on its own: the build below reports it
        pass
    kept = {k: v for k, v in values.items() if k not in derived}
    try:
        with _quiet():
            config = cls.from_dict({**kept, **dict(arch_params)})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"the student config {cls.__name__} with {dict(arch_params)} is invalid: {exc}") from None
    for key in derived:  # custom attributes of the base that the class does not derive
        if not hasattr(config, key):
            setattr(config, key, values[key])
    changed = {k: (v, getattr(config, k, None)) for k, v in arch_params.items() if getattr(config, k, None) != v}
    if changed:
        raise ConfigError(
            f"the student config {cls.__name__} did not keep the arch parameters "
            + ", ".join(f"{k}={v!r} (it has {got!r})" for k, (v, got) in changed.items())
        )
    _check_consistent(config)
    return config


def _check_consistent(config: Any) -> None:
    heads = getattr(config, "num_attention_heads", None)
    if not isinstance(heads, int) or heads <= 0 or getattr(config, "head_dim", None):
        return
    width_name = "true_hidden_size" if hasattr(config, "true_hidden_size") else "hidden_size"
    width = getattr(config, width_name, None)
    if isinstance(width, int) and width % heads:
        raise ConfigError(
            f"the student config contradicts itself: {width_name} {width} is not a multiple of "
            f"num_attention_heads {heads}; take search space choices whose widths the head counts divide"
        )


class _quiet:
    """Silence transformers' config warnings while probing config classes."""

    def __enter__(self):
        import transformers

        self._verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()

    def __exit__(self, *exc):
        import transformers

        transformers.logging.set_verbosity(self._verbosity)


def resolve_model_cls(model_cls: Any, teacher: Any = None, config: Any = None) -> Any:
    """A model class from a class, a transformers name (``'AutoModelForSequenceClassification'``)
    or an import string; by default the teacher's class when the student is of the
    teacher's family, else the ``AutoModelFor...`` of the teacher's task."""
    import transformers

    if model_cls is None:
        if teacher is None:
            return transformers.AutoModel
        teacher_type = getattr(getattr(teacher, "config", None), "model_type", None)
        if config is None or getattr(config, "model_type", None) == teacher_type:
            return type(teacher)
        name = type(teacher).__name__
        task = name[name.index("For") :] if "For" in name else ""
        return getattr(transformers, f"AutoModel{task}", transformers.AutoModel)
    if isinstance(model_cls, str):
        if ":" in model_cls:
            module, _, attr = model_cls.partition(":")
            try:
                return getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError) as exc:
                raise ConfigError(f"model.builder_options.model_cls: cannot import {model_cls!r}: {exc}") from None
        found = getattr(transformers, model_cls, None)
        if found is None:
            raise ConfigError(
                f"model.builder_options.model_cls: transformers has no {model_cls!r}; name a class such as "
                f"'AutoModelForSequenceClassification' or give 'package.module:Class'"
            )
        return found
    return model_cls


def _instantiate(model_cls: Any, config: Any, attn_implementation: str | None):
    kwargs = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
    if hasattr(model_cls, "from_config"):  # the Auto classes
        return model_cls.from_config(config, **kwargs)
    if hasattr(model_cls, "_from_config"):  # concrete PreTrainedModel classes
        return model_cls._from_config(config, **kwargs)
    return model_cls(config)


def _distills_attention(layers: Any) -> bool:
    return any(any(part in str(layer).lower() for part in ATTENTION_NAMES) for layer in layers or ())


def transformers_builder(arch_params: Mapping[str, Any], **options: Any):
    """Build a student: ``model_cls.from_config(copy of base_config + arch_params)``.

    Options (``model.builder_options``):

    - ``base_config``: a ``PretrainedConfig``, a model, a mapping with ``model_type`` or a
      local path; default: the teacher's config.
    - ``model_cls``: a class, a transformers class name or ``'package.module:Class'``;
      default: the teacher's class for a student of the teacher's family, else the
      ``AutoModelFor...`` of the teacher's task.
    - ``init_from_teacher``: ``true`` or a mapping of options of
      ``autokd_torch.init_from_teacher.initialize_from_teacher``.
    - ``attn_implementation``: default ``'eager'`` when ``distilled_layers`` name
      attention modules (sdpa returns no attention maps), else the model's default.
    - ``seed``: the weight init follows it (the global RNG is left as it was).
    - ``teacher`` and ``distilled_layers`` are passed by the backend and the ``Trainer``.
    """
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise ConfigError(
            f"model.builder_options: unknown option(s) {', '.join(unknown)} of the transformers builder; "
            f"it takes {', '.join(o for o in _OPTIONS if o not in ('teacher', 'distilled_layers'))}"
        )
    teacher = options.get("teacher")
    base = options.get("base_config")
    if base is None:
        if teacher is None:
            raise ConfigError(
                "model.builder_options.base_config: missing: give the student family's config (or a model), "
                "or a teacher whose config is copied"
            )
        base = teacher
    config = build_student_config(base, dict(arch_params))
    model_cls = resolve_model_cls(options.get("model_cls"), teacher, config)
    attn = options.get("attn_implementation")
    if attn is None and _distills_attention(options.get("distilled_layers")):
        attn = "eager"
    with seeded(options.get("seed")):
        model = _instantiate(model_cls, config, attn)
    record: dict[str, Any] = {
        "builder": "transformers",
        "model_cls": type(model).__name__,
        "model_type": getattr(config, "model_type", None),
        "arch_params": dict(arch_params),
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }
    init = options.get("init_from_teacher")
    if init:
        record["init_from_teacher"] = _init_from_teacher(model, teacher, init)
    record_extra("builder", record)
    log.info("built %s %s (%d parameters)", record["model_cls"], dict(arch_params), record["num_parameters"])
    return model


def _init_from_teacher(model: Any, teacher: Any, init: Any) -> Any:
    if init is True:
        init = {}
    if not isinstance(init, Mapping):
        raise ConfigError(f"model.builder_options.init_from_teacher: true or a mapping of options, got {init!r}")
    if teacher is None:
        raise ConfigError(
            "model.builder_options.init_from_teacher: no teacher to initialise from; the backend and the Trainer "
            "pass it, in Python pass teacher=..."
        )
    try:
        from .init_from_teacher import initialize_from_teacher
    except ImportError as exc:
        raise ConfigError(
            f"model.builder_options.init_from_teacher: this autokd-torch cannot initialise from the teacher ({exc})"
        ) from None
    report = initialize_from_teacher(model, teacher, **dict(init))
    # Kept on the model so the built-in train function can start the feature matchers from
    # the same basis (a projection back to the teacher's width), not from random (#9).
    model.autokd_init_report = report
    to_dict = getattr(report, "to_dict", None)
    return to_dict() if callable(to_dict) else report
