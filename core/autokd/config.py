"""Configuration: frozen attrs classes, structured with cattrs, validated all at once.

Every layout of the AutoDistillation design is accepted:

- the YAML file with ``model``, ``auto_distillation`` (``search``,
  ``flash_distillation``, ``regular_distillation``), ``train`` and ``evaluation``;
- the single-run YAML file with ``distillation.train.optimizer`` and
  ``distillation.train.criterion``;
- the Python dict of ``Trainer.autodistillation_config`` (``search`` and
  ``flash_distillation.knowledge_transfer`` / ``flash_distillation.regular_distillation``);
- config objects (:class:`Config`, :class:`AutoDistillationConfig`, or anything with a
  ``to_autokd_config()`` method).

:func:`load_config` reports every problem of a document at once, each with its path
(``auto_distillation.search.higher_is_better: 2 values for 3 metrics``).
"""

from __future__ import annotations

import difflib
import math
import operator
import os
import re
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from .advisor import Objective
from .errors import ConfigError
from .evaluation import metric_value
from .output import OutputConfig, check_output
from .space import SearchSpace, SearchSpaceError

__all__ = [
    "Config",
    "ModelConfig",
    "SearchConfig",
    "FidelityConfig",
    "ExecutorConfig",
    "FinalDistillationConfig",
    "DistillationStagesConfig",
    "AutoDistillationConfig",
    "TrainConfig",
    "TeacherCacheConfig",
    "LRSchedulerConfig",
    "DistillationConfig",
    "EvaluationConfig",
    "DataConfig",
    "LayerMapping",
    "OutputConfig",
    "Stage",
    "Constraint",
    "load_config",
]

FRAMEWORKS = ("pytorch", "tensorflow")


# --------------------------------------------------------------------------------------
# Normalised pieces used by the backends
# --------------------------------------------------------------------------------------


@attrs.frozen
class LayerMapping:
    """One feature pair of intermediate-layer distillation.

    ``student_layer`` / ``teacher_layer`` are dotted module names (``''`` is the model);
    the ``*_process`` fields pick a part of that module's output: ``''`` (all of it), a
    tuple index (``'1'``) or a dict / ``ModelOutput`` key (``'logits'``).
    """

    student_layer: str
    student_process: str
    teacher_layer: str
    teacher_process: str

    @classmethod
    def parse(cls, item: Any) -> LayerMapping:
        if isinstance(item, LayerMapping):
            return item
        if isinstance(item, str | bytes) or not isinstance(item, Sequence):
            raise ValueError(
                f"a layer mapping is a list of 2 or 4 items (student_layer, [student_process,] "
                f"teacher_layer[, teacher_process]), got {item!r}"
            )
        parts = list(item)
        if len(parts) == 2:
            parts = [parts[0], "", parts[1], ""]
        if len(parts) != 4:
            raise ValueError(
                f"a layer mapping has 2 items (student_layer, teacher_layer) or 4 "
                f"(student_layer, student_process, teacher_layer, teacher_process), got {len(parts)}: {item!r}"
            )
        for i in (0, 2):
            if not isinstance(parts[i], str):
                raise ValueError(f"layer names must be strings, got {parts[i]!r} in {item!r}")
        for i in (1, 3):
            if parts[i] is None:
                parts[i] = ""
            elif isinstance(parts[i], int) and not isinstance(parts[i], bool):
                parts[i] = str(parts[i])
            elif not (isinstance(parts[i], str) or callable(parts[i])):
                raise ValueError(f"an output process is an index ('1'), a key or '', got {parts[i]!r} in {item!r}")
        return cls(*parts)


@attrs.frozen
class Stage:
    """One distillation stage, normalised from any config layout.

    A stage with ``layer_mappings`` uses intermediate-layer distillation (one loss type
    and weight per mapping); a stage without uses output distillation
    (``KnowledgeDistillationLoss``: ``loss_types`` = [student-vs-targets,
    student-vs-teacher] and their weights).
    """

    block_name: str | None
    layer_mappings: tuple[LayerMapping, ...]
    loss_types: tuple[str, ...]
    loss_weights: tuple[float, ...]
    add_origin_loss: bool
    train_steps: int
    temperature: float = 1.0


@attrs.frozen
class Constraint:
    """``metric <op> bound``, e.g. ``latency <= 5``."""

    metric: str
    op: str
    bound: float

    _OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt, "==": operator.eq}
    _PATTERN = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(<=|>=|==|<|>)\s*([-+]?[0-9.]+(?:[eE][-+]?\d+)?)\s*$")

    @classmethod
    def parse(cls, text: str) -> Constraint:
        match = cls._PATTERN.match(text) if isinstance(text, str) else None
        if not match:
            raise ValueError(f"{text!r} is not a constraint like 'latency <= 5' (metric, <=|<|>=|>|==, number)")
        return cls(match[1], match[2], float(match[3]))

    def holds(self, metrics: Mapping[str, Any]) -> bool:
        value = metric_value(metrics.get(self.metric))
        if value is None:
            return False
        return self._OPS[self.op](value, self.bound)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


# --------------------------------------------------------------------------------------
# Document sections
# --------------------------------------------------------------------------------------


def _dict_field():
    return attrs.field(factory=dict)


@attrs.frozen
class ModelConfig:
    """``model``: what is compressed, and how students are built.

    :ivar builder: a registered model builder (``transformers``) or an import string
        ``"package.module:function"`` of the user's own builder.
    :ivar builder_options: keyword arguments of the builder (e.g. ``base_config``,
        ``model_cls``, ``init_from_teacher``).
    :ivar teacher: an import string of a function returning the teacher model, or a
        path the backend loads with ``from_pretrained``.
    """

    name: str | None = None
    framework: str = "pytorch"
    builder: str | None = None
    builder_options: dict = _dict_field()
    teacher: str | None = None


@attrs.frozen
class FidelityConfig:
    """``auto_distillation.search.fidelity``: multi-fidelity search (successive halving).

    :ivar schedule: ``successive_halving`` (one bracket of ``max_trials`` candidates) or
        ``hyperband`` (brackets starting at each rung, ``max_trials`` shared among them).
    :ivar min_fraction: the first rung's share of every stage's ``train_steps``.
    :ivar eta: the best ``1/eta`` of a rung go on to a budget ``eta`` times larger.
    """

    schedule: str = "successive_halving"
    min_fraction: float = 1 / 9
    eta: int = 3


@attrs.frozen
class ExecutorConfig:
    """``auto_distillation.search.executor``: what runs the trials.

    :ivar name: a registered executor (``local``: serial, in process; ``processes``; ...).
    :ivar max_concurrent: trials running at once.
    :ivar options: every other key, passed to the executor's factory.
    """

    name: str = "local"
    max_concurrent: int = 1
    options: dict = attrs.field(factory=dict)


@attrs.frozen
class FinalDistillationConfig:
    """``auto_distillation.final_distillation``: after the search, distil the chosen
    architecture(s) to the end.

    :ivar candidates: 1 (the best architecture) or k (the best k of the Pareto front).
    :ivar train_steps: the final model's steps, one per stage (flash stages, then regular).
    :ivar multiplier: or the final model's steps as a multiple of the configured ones.
    """

    candidates: int = 1
    train_steps: list[int] | None = None
    multiplier: float | None = None


@attrs.frozen
class SearchConfig:
    """``auto_distillation.search``."""

    search_space: dict
    search_algorithm: str = "BO"
    metrics: list[str] = attrs.field(factory=lambda: ["eval_loss"])
    higher_is_better: list[bool] | None = None
    max_trials: int = 10
    seed: int | None = None
    advisor_options: dict = _dict_field()
    constraints: list[str] = attrs.field(factory=list)
    storage: str | None = None
    study_name: str | None = None
    fidelity: FidelityConfig | None = None
    executor: ExecutorConfig = attrs.field(factory=ExecutorConfig)

    @property
    def space(self) -> SearchSpace:
        return SearchSpace(self.search_space)

    def objectives(self) -> list[Objective]:
        """The objectives in metric order, with directions from ``higher_is_better`` or
        the metrics' known directions."""
        from .evaluation import known_direction

        if self.higher_is_better is not None:
            return [Objective(m, bool(h)) for m, h in zip(self.metrics, self.higher_is_better, strict=True)]
        return [Objective(m, bool(known_direction(m))) for m in self.metrics]

    def parsed_constraints(self) -> list[Constraint]:
        return [Constraint.parse(c) for c in self.constraints]


@attrs.frozen
class DistillationStagesConfig:
    """``flash_distillation`` or ``regular_distillation``: one or more stages.

    Per-stage fields are lists with one entry per stage (per ``block_names`` entry in
    flash distillation); a single value applies to every stage.
    """

    block_names: list[str] | None = None
    layer_mappings_for_knowledge_transfer: list | None = None
    loss_types: list | None = None
    loss_weights: list | None = None
    add_origin_loss: bool | list[bool] | None = None
    train_steps: int | list[int] | None = None
    temperature: float | list[float] = 1.0


@attrs.frozen
class AutoDistillationConfig:
    """``auto_distillation``: the search and the distillation of each candidate."""

    search: SearchConfig
    flash_distillation: DistillationStagesConfig | None = None
    regular_distillation: DistillationStagesConfig | None = None
    final_distillation: FinalDistillationConfig | None = None

    def flash_stages(self) -> list[Stage]:
        return _stages(self.flash_distillation, "flash_distillation", [])

    def regular_stages(self) -> list[Stage]:
        return _stages(self.regular_distillation, "regular_distillation", [])


@attrs.frozen
class TeacherCacheConfig:
    """``train.teacher_cache``: reuse the frozen teacher's outputs across steps and
    trials (backends that support it).

    :ivar memory_budget_mb: outputs kept in memory; beyond it they go to memory-mapped
        files under ``directory`` (default ``<output_dir>/teacher_cache``) up to
        ``disk_budget_mb`` (None: the backend's own limit; autokd-torch leaves 1 GB of
        the disk free); beyond that the teacher runs.
    """

    enabled: bool = True
    dtype: str = "float32"
    memory_budget_mb: float = 2048.0
    directory: str | None = None
    prefill: bool = False
    disk_budget_mb: float | None = None


# ``train.lr_scheduler.type``: the schedules of ``transformers.get_scheduler`` that need
# nothing but warm-up and total steps.
LR_SCHEDULER_TYPES = (
    "constant",
    "constant_with_warmup",
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "inverse_sqrt",
)
MIXED_PRECISION = ("no", "fp16", "bf16")
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


@attrs.frozen
class LRSchedulerConfig:
    """``train.lr_scheduler``: the learning rate of every stage over its configured steps.

    :ivar type: one of :data:`LR_SCHEDULER_TYPES` (``transformers.get_scheduler``).
    :ivar warmup_ratio: warm-up as a fraction of the stage's steps, or
    :ivar warmup_steps: warm-up in optimizer steps (not both).
    """

    type: str = "constant"
    warmup_ratio: float | None = None
    warmup_steps: int | None = None

    def warmup(self, train_steps: int) -> int:
        """Warm-up steps of a stage of ``train_steps`` optimizer steps."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        return math.ceil((self.warmup_ratio or 0.0) * train_steps)


@attrs.frozen
class TrainConfig:
    """``train`` (and ``distillation.train``): how the built-in train function trains.

    :ivar function: import string of a user train function (``model -> model``).
    :ivar optimizer: ``{name: {arguments}}``, e.g. ``{'SGD': {'learning_rate': 0.001}}``.
    :ivar criterion: ``{criterion name: {arguments}}`` (single distillation runs).
    :ivar device: ``auto`` (CUDA when available, else MPS, else the CPU), ``cpu``,
        ``cuda``, ``cuda:N`` or ``mps``; what the machine has is checked by the backend.
    :ivar mixed_precision: ``no``, ``fp16`` (a GPU) or ``bf16``: autocast of the forward passes.
    :ivar gradient_accumulation_steps: micro-batches of ``batch_size`` per optimizer step
        (``train_steps`` count optimizer steps).
    :ivar max_grad_norm: clip the gradients' global norm to this (None: no clipping).
    :ivar lr_scheduler: the learning-rate schedule of each stage.
    """

    function: str | None = None
    optimizer: dict = attrs.field(factory=lambda: {"AdamW": {"learning_rate": 1e-4}})
    criterion: dict | None = None
    batch_size: int = 32
    train_steps: int | None = None
    epochs: int | None = None
    teacher_cache: TeacherCacheConfig = attrs.field(factory=TeacherCacheConfig)
    device: str = "auto"
    mixed_precision: str = "no"
    gradient_accumulation_steps: int = 1
    max_grad_norm: float | None = None
    lr_scheduler: LRSchedulerConfig = attrs.field(factory=LRSchedulerConfig)

    def set_fields(self) -> set[str]:
        """The fields whose value differs from the default (what a config ``train``
        section overrides, e.g. in ``Trainer.autodistillation``)."""
        default = TrainConfig()
        return {f.name for f in attrs.fields(TrainConfig) if getattr(self, f.name) != getattr(default, f.name)}


@attrs.frozen
class DistillationConfig:
    """``distillation``: a single distillation run (``autokd_torch.Distillation``)."""

    train: TrainConfig = attrs.field(factory=TrainConfig)


@attrs.frozen
class EvaluationConfig:
    """``evaluation``: the eval function, and options per metric.

    Keys other than ``function``, ``batch_size`` and ``record`` are metric names whose
    value is that metric's options, passed to its evaluator
    (``evaluation.latency: {batch_size: 1, seq_len: 128}``).

    :ivar record: metrics to compute and record in every trial without optimising them
        (e.g. ``['params']``).
    """

    function: str | None = None
    batch_size: int | None = None
    record: list[str] = attrs.field(factory=list)
    metric_options: dict[str, dict] = _dict_field()

    def options_for(self, metric: str) -> dict:
        return dict(self.metric_options.get(metric, {}))


@attrs.frozen
class DataConfig:
    """``data``: import strings of functions returning the train and eval datasets,
    used by ``autokd run`` with a backend's built-in functions."""

    train: str | None = None
    eval: str | None = None
    options: dict = _dict_field()


@attrs.frozen
class Config:
    """A whole autokd document."""

    model: ModelConfig = attrs.field(factory=ModelConfig)
    auto_distillation: AutoDistillationConfig | None = None
    distillation: DistillationConfig | None = None
    train: TrainConfig = attrs.field(factory=TrainConfig)
    evaluation: EvaluationConfig = attrs.field(factory=EvaluationConfig)
    data: DataConfig = attrs.field(factory=DataConfig)
    output: OutputConfig = attrs.field(factory=OutputConfig)
    source: str | None = attrs.field(default=None, eq=False)

    @property
    def search(self) -> SearchConfig:
        if self.auto_distillation is None:
            raise ConfigError("auto_distillation.search: missing: the config has no search section", self.source)
        return self.auto_distillation.search


# --------------------------------------------------------------------------------------
# Structuring
# --------------------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    return type(value).__name__


def _hint(value: Any) -> str:
    if isinstance(value, str) and value.rstrip().endswith(","):
        return f" (a trailing comma? YAML reads {value.strip()} as a string)"
    return ""


def _structure_int(value, _type):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {_type_name(value)} {value!r}{_hint(value)}")
    return value


def _structure_float(value, _type):
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {_type_name(value)} {value!r}{_hint(value)}")
    return float(value)


def _structure_bool(value, _type):
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {_type_name(value)} {value!r}{_hint(value)}")
    return value


def _structure_str(value, _type):
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {_type_name(value)} {value!r}")
    return value


def _structure_list(value, _type):
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise TypeError(f"expected a list, got {_type_name(value)} {value!r}{_hint(value)}")
    return list(value)


def _structure_dict(value, _type):
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a mapping, got {_type_name(value)} {value!r}")
    return dict(value)


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook(int, _structure_int)
    conv.register_structure_hook(float, _structure_float)
    conv.register_structure_hook(bool, _structure_bool)
    conv.register_structure_hook(str, _structure_str)
    conv.register_structure_hook(list, _structure_list)
    conv.register_structure_hook(dict, _structure_dict)

    def int_or_list(value, _type):
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            return _structure_int(value, int)
        errors = []
        out = []
        for i, v in enumerate(value):
            try:
                out.append(_structure_int(v, int))
            except TypeError as exc:
                exc.add_note(IterableValidationNoteCompat(f"index {i}", i))
                errors.append(exc)
        if errors:
            raise IterableValidationError("bad list", errors, list)
        return out

    def float_or_list(value, _type):
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            return _structure_float(value, float)
        return [_structure_float(v, float) for v in value]

    def bool_or_list(value, _type):
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            return _structure_bool(value, bool)
        return [_structure_bool(v, bool) for v in value]

    def optional(fn):
        return lambda value, _type: None if value is None else fn(value, _type)

    def typed_list(value, list_type):
        # cattrs would split a string into characters (`record: latency` → l, a, t...):
        # every list field refuses a lone string instead (#13), as search_space does.
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            one = f" (write [{value}] for a one-item list)" if isinstance(value, str) else ""
            raise TypeError(f"expected a list, got {_type_name(value)} {value!r}{one}{_hint(value)}")
        (item_type,) = typing.get_args(list_type)
        errors, out = [], []
        for i, v in enumerate(value):
            try:
                out.append(conv.structure(v, item_type))
            except Exception as exc:  # noqa: BLE001 - collected and reported with its index
                exc.add_note(IterableValidationNoteCompat(f"index {i}", i))
                errors.append(exc)
        if errors:
            raise IterableValidationError("bad list", errors, list_type)
        return out

    conv.register_structure_hook_func(
        lambda t: typing.get_origin(t) is list and len(typing.get_args(t)) == 1, typed_list
    )
    conv.register_structure_hook(int | list[int], int_or_list)
    conv.register_structure_hook(float | list[float], float_or_list)
    conv.register_structure_hook(bool | list[bool], bool_or_list)
    conv.register_structure_hook(int | list[int] | None, optional(int_or_list))
    conv.register_structure_hook(bool | list[bool] | None, optional(bool_or_list))

    def evaluation(value, _type):
        if not isinstance(value, Mapping):
            raise TypeError(f"expected a mapping, got {_type_name(value)} {value!r}")
        fixed = {k: value[k] for k in ("function", "batch_size", "record") if k in value}
        errors = []
        options = {}
        for key, opts in value.items():
            if key in fixed:
                continue
            if opts is None:
                opts = {}
            if not isinstance(opts, Mapping):
                near = _nearest(str(key), ["function", "batch_size", "record"])
                exc = TypeError(
                    f"unknown key{near}; a metric's options are a mapping, got {_type_name(opts)} {opts!r}"
                    if near
                    else f"expected the options of metric {key!r} as a mapping (e.g. {key}: {{batch_size: 1}}), "
                    f"got {_type_name(opts)} {opts!r}"
                )
                exc.add_note(IterableValidationNoteCompat(f"key {key}", key))
                errors.append(exc)
                continue
            options[str(key)] = dict(opts)
        base = conv.structure(fixed, _EvaluationFixed)
        if errors:
            raise IterableValidationError("bad evaluation", errors, EvaluationConfig)
        return EvaluationConfig(base.function, base.batch_size, base.record, options)

    conv.register_structure_hook(EvaluationConfig, evaluation)

    def executor(value, _type):
        if isinstance(value, str):  # executor: processes
            value = {"name": value}
        if not isinstance(value, Mapping):
            raise TypeError(
                f"expected a mapping like {{name: processes, max_concurrent: 2}}, got {_type_name(value)} {value!r}"
            )
        fixed = {k: value[k] for k in ("name", "max_concurrent") if k in value}
        base = conv.structure(fixed, _ExecutorFixed)
        options = {str(k): v for k, v in value.items() if k not in fixed}
        return ExecutorConfig(base.name, base.max_concurrent, options)

    conv.register_structure_hook(ExecutorConfig, executor)
    return conv


@attrs.frozen
class _ExecutorFixed:
    name: str = "local"
    max_concurrent: int = 1


@attrs.frozen
class _EvaluationFixed:
    function: str | None = None
    batch_size: int | None = None
    record: list[str] = attrs.field(factory=list)


class IterableValidationNoteCompat(str):
    """A path note for errors raised by our own hooks (same shape as cattrs' notes)."""

    def __new__(cls, text: str, index):
        obj = str.__new__(cls, text)
        obj.index = index
        return obj


_converter = _make_converter()


def _flatten_errors(exc: BaseException, path: str) -> list[str]:
    """cattrs' exception group as ``path: message`` lines."""
    if isinstance(exc, ForbiddenExtraKeysError):
        allowed = [a.name for a in attrs.fields(exc.cl)] if attrs.has(exc.cl) else []
        return [
            f"{_join(path, key)}: unknown key" + (f" (known keys here: {', '.join(allowed)})" if allowed else "")
            for key in sorted(exc.extra_fields)
        ]
    if isinstance(exc, BaseExceptionGroup):
        lines = []
        for sub in exc.exceptions:
            sub_path = path
            for note in getattr(sub, "__notes__", []):
                if hasattr(note, "name"):  # AttributeValidationNote
                    sub_path = _join(path, note.name)
                elif hasattr(note, "index"):  # IterableValidationNote
                    sub_path = f"{path}[{note.index}]" if isinstance(note.index, int) else _join(path, note.index)
            lines.extend(_flatten_errors(sub, sub_path))
        return lines
    if isinstance(exc, KeyError):
        return [f"{path}: required but missing"]
    message = str(exc)
    if isinstance(exc, TypeError | ValueError) and message.startswith(("expected", "a layer", "unknown")):
        return [f"{path}: {message}"]
    return [f"{path}: {type(exc).__name__}: {message}"]


def _join(path: str, name: Any) -> str:
    return f"{path}.{name}" if path else str(name)


def _structure(value: Any, cls: type, path: str, problems: list[str]):
    """Structure ``value`` as ``cls``, adding every problem to ``problems``.

    When some fields are bad, the rest is structured again with those fields at their
    defaults, so the semantic checks of the good fields still run and a document's
    problems are all reported at once. Returns None when that is not possible."""
    try:
        return _converter.structure(value, cls)
    except (ClassValidationError, IterableValidationError, ForbiddenExtraKeysError, TypeError, ValueError) as exc:
        problems.extend(_flatten_errors(exc, path))
        bad = _bad_fields(exc)
    if not isinstance(value, Mapping) or not attrs.has(cls) or not bad:
        return None
    fields = {f.name: f for f in attrs.fields(cls)}
    if any(name in fields and fields[name].default is attrs.NOTHING for name in bad):
        return None
    retry = {k: v for k, v in value.items() if k in fields and k not in bad}
    try:
        obj = _converter.structure(retry, cls)
    except Exception:
        return None
    return attrs.evolve(obj) if obj is not None else None


def _bad_fields(exc: BaseException) -> set[str]:
    if isinstance(exc, ForbiddenExtraKeysError):
        return set(exc.extra_fields)
    names = set()
    if isinstance(exc, ClassValidationError):
        for sub in exc.exceptions:
            for note in getattr(sub, "__notes__", []):
                if hasattr(note, "name"):
                    names.add(note.name)
            if isinstance(sub, ForbiddenExtraKeysError):
                names |= set(sub.extra_fields)
    return names


# --------------------------------------------------------------------------------------
# Semantic checks
# --------------------------------------------------------------------------------------


def _stages(cfg: DistillationStagesConfig | None, path: str, problems: list[str]) -> list[Stage]:
    """Normalise a flash or regular distillation section into stages: the public rule is
    :func:`autokd.distill.normalize_stages` (imported here lazily: it builds these classes)."""
    from .distill import normalize_stages

    return normalize_stages(cfg, path, problems)


def _check_search(search: SearchConfig, path: str, problems: list[str]) -> None:
    try:
        SearchSpace(search.search_space)
    except SearchSpaceError as exc:
        for part in str(exc).split("; "):
            problems.append(f"{path}.search_space.{part}" if ":" in part else f"{path}.search_space: {part}")
    if search.max_trials <= 0:
        problems.append(f"{path}.max_trials: must be a positive number of trials, got {search.max_trials}")
    if not search.metrics:
        problems.append(f"{path}.metrics: empty list: name at least one metric to optimise")
    if search.higher_is_better is not None:
        if len(search.higher_is_better) != len(search.metrics):
            problems.append(
                f"{path}.higher_is_better: {len(search.higher_is_better)} values for {len(search.metrics)} metrics"
            )
    else:
        from .evaluation import known_direction

        unknown = [m for m in search.metrics if known_direction(m) is None]
        if unknown:
            problems.append(
                f"{path}.higher_is_better: missing, and the direction of {', '.join(map(repr, unknown))} is not "
                f"known: give one true/false per metric, e.g. higher_is_better: "
                f"[{', '.join('true' for _ in search.metrics)}]"
            )
    for i, text in enumerate(search.constraints):
        try:
            Constraint.parse(text)
        except ValueError as exc:
            problems.append(f"{path}.constraints[{i}]: {exc}")
    if not search.search_algorithm:
        problems.append(f"{path}.search_algorithm: empty: name an advisor such as 'BO' or 'random'")
    _check_fidelity(search.fidelity, f"{path}.fidelity", problems)
    if search.executor.max_concurrent < 1:
        problems.append(
            f"{path}.executor.max_concurrent: must be >= 1 (trials running at once), got {search.executor.max_concurrent}"
        )
    if not search.executor.name:
        problems.append(f"{path}.executor.name: empty: name an executor such as 'local' or 'processes'")


_SCHEDULES = ("successive_halving", "hyperband")


def _check_fidelity(fidelity: FidelityConfig | None, path: str, problems: list[str]) -> None:
    if fidelity is None:
        return
    if fidelity.schedule not in _SCHEDULES:
        problems.append(f"{path}.schedule: {fidelity.schedule!r} is not one of {list(_SCHEDULES)}")
    if not 0 < fidelity.min_fraction <= 1:
        problems.append(
            f"{path}.min_fraction: must be in (0, 1] (the first rung's share of each stage's train_steps, "
            f"e.g. 0.1111 for 1/9), got {fidelity.min_fraction}"
        )
    if fidelity.eta < 2:
        problems.append(
            f"{path}.eta: must be >= 2 (the best 1/eta of a rung go on to an eta times larger budget), got {fidelity.eta}"
        )


def _check_final(final: FinalDistillationConfig | None, n_stages: int, path: str, problems: list[str]) -> None:
    if final is None:
        return
    if final.candidates < 1:
        problems.append(f"{path}.candidates: must be >= 1 (1: the best architecture, k: the best k of the front)")
    if (final.train_steps is None) == (final.multiplier is None):
        problems.append(
            f"{path}: give exactly one of train_steps (the final model's steps, one per stage) or multiplier "
            f"(its steps as a multiple of the configured ones, e.g. 3)"
        )
    if final.multiplier is not None and not final.multiplier >= 1:
        problems.append(f"{path}.multiplier: must be >= 1 (the search's full budget is 1), got {final.multiplier}")
    if final.train_steps is not None:
        if n_stages == 0:
            problems.append(
                f"{path}.train_steps: the config has no distillation stages to give steps to; use multiplier"
            )
        elif len(final.train_steps) != n_stages:
            problems.append(
                f"{path}.train_steps: {len(final.train_steps)} values for {n_stages} stages "
                f"(one per stage: flash stages, then regular stages)"
            )
        for i, steps in enumerate(final.train_steps):
            if steps < 0:
                problems.append(f"{path}.train_steps[{i}]: must be >= 0, got {steps}")


def _check_metric_names(
    search: SearchConfig | None, evaluation: EvaluationConfig, search_path: str, problems: list[str]
) -> None:
    """Constraints and ``evaluation.<metric>`` options name metrics a trial computes: an
    objective, a metric in ``evaluation.record``, or a registered evaluator (#13: a
    misspelt ``latncy`` was taken as a metric, and a constraint on an unknown metric was
    silently ignored by the best-arch rule)."""
    from .plugins import registry

    evaluators = registry().evaluators
    objectives = list(search.metrics) if search is not None else []
    computed = [*objectives, *evaluation.record]
    known = [*computed, *evaluators.names()]
    if search is not None:
        for i, text in enumerate(search.constraints):
            try:
                metric = Constraint.parse(text).metric
            except ValueError:
                continue  # reported by _check_search
            if metric not in computed and metric not in evaluators:
                problems.append(
                    f"{search_path}.constraints[{i}]: {metric!r} is not a metric of this search: add it to "
                    f"evaluation.record (a metric eval_func returns) or install the evaluator that computes it"
                    + _nearest(metric, known)
                )
    fixed = ["function", "batch_size", "record"]
    for key in evaluation.metric_options:
        if key in computed or key in evaluators:
            continue
        problems.append(
            f"evaluation.{key}: unknown key{_nearest(key, [*fixed, *known])}. Keys here are {', '.join(fixed)} "
            f"and the options of a metric that is searched ({', '.join(objectives) or 'none'}), recorded "
            f"(evaluation.record) or a registered evaluator ({', '.join(evaluators.names()) or 'none installed'})"
        )


def _nearest(name: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(dict.fromkeys(candidates)), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_import_string(value: str | None, path: str, problems: list[str]) -> None:
    if value is not None and ":" not in value:
        problems.append(f"{path}: {value!r} is not an import string like 'package.module:function'")


def _check_criterion(criterion: dict | None, path: str, problems: list[str]) -> None:
    if criterion is None:
        return
    if len(criterion) != 1:
        problems.append(
            f"{path}: name exactly one criterion, e.g. {{KnowledgeDistillationLoss: {{temperature: 1.0}}}}, "
            f"got {sorted(criterion)}"
        )
        return
    ((name, args),) = criterion.items()
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        problems.append(f"{path}.{name}: expected a mapping of arguments, got {args!r}")
        return
    if name == "KnowledgeDistillationLoss":
        kd = _structure(dict(args), _KDCriterionArgs, f"{path}.{name}", problems)
        if kd is not None:
            from .distill import loss_type_problems, loss_weight_problems

            type_problems = loss_type_problems(kd.loss_types, f"{path}.{name}.loss_types", output=True)
            problems.extend(type_problems)
            problems.extend(loss_weight_problems(kd.loss_weights, f"{path}.{name}.loss_weights", 2, sum_to_one=True))
            if kd.temperature <= 0:
                problems.append(f"{path}.{name}.temperature: must be positive, got {kd.temperature}")
    elif name == "IntermediateLayersKnowledgeDistillationLoss":
        il = _structure(dict(args), _ILCriterionArgs, f"{path}.{name}", problems)
        if il is not None:
            cfg = DistillationStagesConfig(
                layer_mappings_for_knowledge_transfer=il.layer_mappings_for_knowledge_transfer,
                loss_types=il.loss_types,
                loss_weights=il.loss_weights,
                add_origin_loss=il.add_origin_loss,
            )
            _stages(cfg, f"{path}.{name}", problems)


@attrs.frozen
class _KDCriterionArgs:
    temperature: float = 1.0
    loss_types: list[str] = attrs.field(factory=lambda: ["CE", "CE"])
    loss_weights: list[float] = attrs.field(factory=lambda: [0.5, 0.5])


@attrs.frozen
class _ILCriterionArgs:
    layer_mappings_for_knowledge_transfer: list
    loss_types: list | None = None
    loss_weights: list | None = None
    add_origin_loss: bool = False


def _check_train(train: TrainConfig, path: str, problems: list[str], framework: str = "pytorch") -> None:
    from .distill import optimizer_problems

    _check_import_string(train.function, f"{path}.function", problems)
    problems.extend(optimizer_problems(train.optimizer, framework, f"{path}.optimizer"))
    if train.batch_size <= 0:
        problems.append(f"{path}.batch_size: must be positive, got {train.batch_size}")
    if train.train_steps is not None and train.train_steps <= 0:
        problems.append(f"{path}.train_steps: must be positive, got {train.train_steps}")
    if train.teacher_cache.dtype not in ("float32", "float16"):
        problems.append(f"{path}.teacher_cache.dtype: 'float32' or 'float16', got {train.teacher_cache.dtype!r}")
    if train.teacher_cache.memory_budget_mb < 0:
        problems.append(f"{path}.teacher_cache.memory_budget_mb: must be >= 0")
    if train.teacher_cache.disk_budget_mb is not None and train.teacher_cache.disk_budget_mb < 0:
        problems.append(f"{path}.teacher_cache.disk_budget_mb: must be >= 0 (or null for no limit)")
    _check_criterion(train.criterion, f"{path}.criterion", problems)
    _check_engine(train, path, problems)


def _check_engine(train: TrainConfig, path: str, problems: list[str]) -> None:
    """The engine keys: devices, precision, accumulation, clipping, schedule. What the
    machine has (a GPU for ``cuda`` or ``fp16``) is checked by the backend."""
    if not isinstance(train.device, str) or not _DEVICE.fullmatch(train.device):
        problems.append(f"{path}.device: 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {train.device!r}")
    if train.mixed_precision not in MIXED_PRECISION:
        hint = _hint(train.mixed_precision)
        problems.append(f"{path}.mixed_precision: 'no', 'fp16' or 'bf16', got {train.mixed_precision!r}{hint}")
    elif train.mixed_precision == "fp16" and train.device in ("cpu", "mps"):
        problems.append(f"{path}.mixed_precision: fp16 needs a CUDA GPU and device is {train.device!r}; use bf16 or no")
    if train.gradient_accumulation_steps < 1:
        problems.append(
            f"{path}.gradient_accumulation_steps: must be at least 1, got {train.gradient_accumulation_steps}"
        )
    if train.max_grad_norm is not None and not train.max_grad_norm > 0:
        problems.append(f"{path}.max_grad_norm: must be positive (or null for no clipping), got {train.max_grad_norm}")
    schedule, spath = train.lr_scheduler, f"{path}.lr_scheduler"
    if schedule.type not in LR_SCHEDULER_TYPES:
        problems.append(f"{spath}.type: one of {', '.join(LR_SCHEDULER_TYPES)}, got {schedule.type!r}")
    if schedule.warmup_ratio is not None and schedule.warmup_steps is not None:
        problems.append(f"{spath}: give warmup_ratio or warmup_steps, not both")
    if schedule.warmup_ratio is not None and not 0 <= schedule.warmup_ratio <= 1:
        problems.append(f"{spath}.warmup_ratio: a fraction of the stage's steps in [0, 1], got {schedule.warmup_ratio}")
    if schedule.warmup_steps is not None and schedule.warmup_steps < 0:
        problems.append(f"{spath}.warmup_steps: must be >= 0, got {schedule.warmup_steps}")
    if schedule.type == "constant" and (schedule.warmup_ratio or schedule.warmup_steps):
        problems.append(f"{spath}.type: 'constant' has no warm-up; use 'constant_with_warmup' (or linear, cosine)")


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


def _lift_seed_dict(doc: Mapping, problems: list[str]) -> dict:
    """The ``Trainer.autodistillation_config`` dict: ``search`` and
    ``flash_distillation.{knowledge_transfer, regular_distillation}`` at top level."""
    section = dict(doc)
    flash = section.get("flash_distillation")
    if isinstance(flash, Mapping) and ("knowledge_transfer" in flash or "regular_distillation" in flash):
        flash = dict(flash)
        section["flash_distillation"] = flash.pop("knowledge_transfer", None)
        if "regular_distillation" in flash:
            if "regular_distillation" in section:
                problems.append("regular_distillation: given both at top level and under flash_distillation; keep one")
            section["regular_distillation"] = flash.pop("regular_distillation")
        for key in flash:
            section.setdefault("_unknown_flash", []).append(key)
    return section


def _parse_document(doc: Any, source: str | None) -> Config:
    problems: list[str] = []
    if not isinstance(doc, Mapping):
        raise ConfigError(f"the document must be a mapping of sections, got {_type_name(doc)}", source)
    doc = dict(doc)

    # The seed's Python dict form is the auto_distillation section on its own.
    ad_path = "auto_distillation"
    if "auto_distillation" not in doc and "search" in doc:
        doc = {"auto_distillation": doc}
        ad_path = ""

    known = {f.name for f in attrs.fields(Config)} - {"source"}
    for key in doc:
        if key not in known:
            problems.append(f"{key}: unknown section (known sections: {', '.join(sorted(known))})")

    def p(name: str) -> str:
        return _join(ad_path, name) if ad_path else name

    model = _structure(doc.get("model") or {}, ModelConfig, "model", problems) or ModelConfig()
    if model.framework not in FRAMEWORKS:
        problems.append(f"model.framework: {model.framework!r} is not one of {list(FRAMEWORKS)}")
        model = attrs.evolve(model, framework="pytorch")

    auto = None
    if doc.get("auto_distillation") is not None:
        raw = doc["auto_distillation"]
        if not isinstance(raw, Mapping):
            problems.append(f"auto_distillation: expected a mapping, got {_type_name(raw)}")
        else:
            raw = _lift_seed_dict(raw, problems)
            for key in raw.pop("_unknown_flash", []):
                problems.append(
                    f"{p('flash_distillation')}.{key}: unknown key (known: knowledge_transfer, regular_distillation)"
                )
            for key in raw:
                if key not in ("search", "flash_distillation", "regular_distillation", "final_distillation"):
                    problems.append(
                        f"{p(key)}: unknown key (known keys here: search, flash_distillation, "
                        f"regular_distillation, final_distillation)"
                    )
            search = None
            if raw.get("search") is None:
                problems.append(f"{p('search')}: required but missing")
            else:
                search = _structure(raw["search"], SearchConfig, p("search"), problems)
                if search is not None:
                    _check_search(search, p("search"), problems)
            flash_path = p("flash_distillation") + (".knowledge_transfer" if not ad_path else "")
            flash = None
            if raw.get("flash_distillation") is not None:
                flash = _structure(raw["flash_distillation"], DistillationStagesConfig, flash_path, problems)
                if flash is not None:
                    _stages(flash, flash_path, problems)
            regular = None
            reg_path = p("regular_distillation") if ad_path else "flash_distillation.regular_distillation"
            if raw.get("regular_distillation") is not None:
                regular = _structure(raw["regular_distillation"], DistillationStagesConfig, reg_path, problems)
                if regular is not None:
                    _stages(regular, reg_path, problems)
            final = None
            if raw.get("final_distillation") is not None:
                final = _structure(
                    raw["final_distillation"], FinalDistillationConfig, p("final_distillation"), problems
                )
                if final is not None:
                    n_stages = len(_stages(flash, flash_path, [])) + len(_stages(regular, reg_path, []))
                    _check_final(final, n_stages, p("final_distillation"), problems)
            if search is not None:
                auto = AutoDistillationConfig(search, flash, regular, final)

    distillation = None
    if doc.get("distillation") is not None:
        distillation = _structure(doc["distillation"], DistillationConfig, "distillation", problems)
        if distillation is not None:
            _check_train(distillation.train, "distillation.train", problems, model.framework)

    train = _structure(doc.get("train") or {}, TrainConfig, "train", problems) or TrainConfig()
    if "train" in doc:
        _check_train(train, "train", problems, model.framework)
    evaluation = _structure(doc.get("evaluation") or {}, EvaluationConfig, "evaluation", problems) or EvaluationConfig()
    _check_import_string(evaluation.function, "evaluation.function", problems)
    _check_metric_names(auto.search if auto is not None else None, evaluation, p("search"), problems)
    data = _structure(doc.get("data") or {}, DataConfig, "data", problems) or DataConfig()
    _check_import_string(data.train, "data.train", problems)
    _check_import_string(data.eval, "data.eval", problems)
    if model.builder is not None and ":" not in model.builder and not model.builder.isidentifier():
        problems.append(f"model.builder: {model.builder!r} is neither a registered builder name nor 'module:function'")

    output = _structure(doc.get("output") or {}, OutputConfig, "output", problems) or OutputConfig()
    check_output(output, problems)

    if problems:
        raise ConfigError(problems, source)
    return Config(model, auto, distillation, train, evaluation, data, output=output, source=source)


def load_config(conf: Any, framework: str | None = None) -> Config:
    """A :class:`Config` from a YAML path, a dict of any supported layout, or a config
    object. Raises :class:`ConfigError` listing every problem with its path."""
    if isinstance(conf, Config):
        cfg = conf
    elif isinstance(conf, AutoDistillationConfig):
        cfg = Config(auto_distillation=conf)
    elif hasattr(conf, "to_autokd_config"):
        cfg = load_config(conf.to_autokd_config())
    elif isinstance(conf, str | os.PathLike):
        cfg = _parse_document(_read_yaml(os.fspath(conf)), os.fspath(conf))
    elif isinstance(conf, Mapping):
        cfg = _parse_document(conf, None)
    else:
        raise ConfigError(f"expected a YAML file path, a dict or a config object, got {_type_name(conf)}")
    if framework is not None and framework != cfg.model.framework:
        if framework not in FRAMEWORKS:
            raise ConfigError(f"framework: {framework!r} is not one of {list(FRAMEWORKS)}")
        cfg = attrs.evolve(cfg, model=attrs.evolve(cfg.model, framework=framework))
        from .distill import optimizer_problems

        problems = optimizer_problems(cfg.train.optimizer, framework, "train.optimizer")
        if cfg.distillation is not None:
            problems += optimizer_problems(cfg.distillation.train.optimizer, framework, "distillation.train.optimizer")
        if problems:
            raise ConfigError(problems, cfg.source)
    return cfg


# A config is a few hundred nodes; a document whose aliases expand past this is an alias
# bomb (#13: a 659-byte file wrote a 197 MB summary.json per trial).
MAX_YAML_NODES = 100_000


def _read_yaml(path: str) -> Any:
    import yaml

    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise ConfigError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a YAML config file", path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", path) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (a binary file?): {exc.reason} at byte {exc.start}", path) from None
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_expansion(node, path)
        doc = None if node is None else loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"not valid YAML{where}: {getattr(exc, 'problem', None) or exc}", path) from None
    finally:
        loader.dispose()
    if doc is None:
        raise ConfigError("the file is empty", path)
    return doc


def _check_expansion(root: Any, path: str) -> None:
    """Refuse a document whose aliases expand to more than MAX_YAML_NODES nodes (or
    refer to themselves), counting before anything is built."""
    count, stack = 0, [root]
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_YAML_NODES:
            raise ConfigError(
                f"the document expands to more than {MAX_YAML_NODES:,} YAML nodes through its aliases (*name); "
                f"refusing it as an alias bomb: write the values out or use fewer aliases",
                path,
            )
        value = node.value
        if isinstance(value, list):
            for item in value:
                if isinstance(item, tuple):
                    stack.extend(item)
                else:
                    stack.append(item)


def _make_strict_loader():
    import yaml

    class StrictLoader(yaml.SafeLoader):
        """``yaml.safe_load`` that refuses a key given twice in one mapping."""

    def construct_mapping(loader, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = (key_node.tag, key_node.value)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key_node.value!r} (first given at line {seen[key] + 1}); keep one",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return loader.construct_mapping(node, deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return StrictLoader


class _LazyLoader:
    """The strict loader class, made on first use (PyYAML is imported lazily)."""

    _cls = None

    def __call__(self, text):
        if _LazyLoader._cls is None:
            _LazyLoader._cls = _make_strict_loader()
        return _LazyLoader._cls(text)


_StrictLoader = _LazyLoader()


def to_dict(config: Config) -> dict:
    """The config as plain data (for records and ``summary.json``)."""
    data = cattrs.Converter().unstructure(config)
    data.pop("source", None)
    ev = data.get("evaluation", {})
    ev.update(ev.pop("metric_options", {}))
    return data
