"""The attrs schema of an autokd document: one frozen class per section
(``model``, ``auto_distillation``, ``train``, ``evaluation``, ``data``, ``output``), and the
normalised pieces the backends read (:class:`Stage`, :class:`LayerMapping`,
:class:`Constraint`). Structuring a document into these classes is
:mod:`autokd.config.structuring`; checking it, :mod:`autokd.config.checks`."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ..advisor import Objective
from ..errors import ConfigError
from ..evaluation import metric_value
from ..output import OutputConfig
from ..space import SearchSpace

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
    """``auto_distillation.search``.

    :ivar advisor_options: the advisor's own options (e.g. autokd-optuna's ``storage``
        and ``study_name``, which were keys of this section before 0.1: still read there,
        with a :class:`DeprecationWarning`, and moved here).
    """

    search_space: dict
    search_algorithm: str = "BO"
    metrics: list[str] = attrs.field(factory=lambda: ["eval_loss"])
    higher_is_better: list[bool] | None = None
    max_trials: int = 10
    seed: int | None = None
    advisor_options: dict = _dict_field()
    constraints: list[str] = attrs.field(factory=list)
    fidelity: FidelityConfig | None = None
    executor: ExecutorConfig = attrs.field(factory=ExecutorConfig)

    @property
    def space(self) -> SearchSpace:
        return SearchSpace(self.search_space)

    def objectives(self) -> list[Objective]:
        """The objectives in metric order, with directions from ``higher_is_better`` or
        the metrics' known directions."""
        from ..evaluation import known_direction

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
        from .stages import normalize_stages

        return normalize_stages(self.flash_distillation, "flash_distillation", [])

    def regular_stages(self) -> list[Stage]:
        from .stages import normalize_stages

        return normalize_stages(self.regular_distillation, "regular_distillation", [])


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
# nothing but warm-up and total steps, and warm-up-stable-decay (``decay_ratio`` too).
LR_SCHEDULER_TYPES = (
    "constant",
    "constant_with_warmup",
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "inverse_sqrt",
    "warmup_stable_decay",
)
MIXED_PRECISION = ("no", "fp16", "bf16")


@attrs.frozen
class LRSchedulerConfig:
    """``train.lr_scheduler``: the learning rate of every stage over its configured steps.

    :ivar type: one of :data:`LR_SCHEDULER_TYPES` (``transformers.get_scheduler``).
    :ivar warmup_ratio: warm-up as a fraction of the stage's steps, or
    :ivar warmup_steps: warm-up in optimizer steps (not both).
    :ivar decay_ratio: ``warmup_stable_decay`` only: the fraction of the stage's steps at
        its end over which the rate falls linearly to 0 (constant between the warm-up and
        them). A stage continued past its configured steps (a final distillation) is
        constant until its new end's decay, so every evaluated model has cooled down.
    """

    type: str = "constant"
    warmup_ratio: float | None = None
    warmup_steps: int | None = None
    decay_ratio: float | None = None

    def warmup(self, train_steps: int) -> int:
        """Warm-up steps of a stage of ``train_steps`` optimizer steps."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        return math.ceil((self.warmup_ratio or 0.0) * train_steps)

    def decay(self, train_steps: int) -> int:
        """Decay steps of a ``warmup_stable_decay`` stage of ``train_steps`` optimizer steps
        (at most the steps after the warm-up)."""
        return min(math.ceil((self.decay_ratio or 0.0) * train_steps), max(0, train_steps - self.warmup(train_steps)))


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
    :ivar group_by_length: batches of examples of similar length (less padding), in a
        random order (a backend that cannot group refuses it).
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
    group_by_length: bool = False

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
