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

The package, one job per module: :mod:`~autokd.config.schema` (the attrs classes),
:mod:`~autokd.config.structuring` (the cattrs converter and its error paths),
:mod:`~autokd.config.stages` (a distillation section as stages),
:mod:`~autokd.config.checks` (the checks across fields) and
:mod:`~autokd.config.loading` (YAML, dicts and config objects in; plain data out).
"""

from __future__ import annotations

from ..output import OutputConfig
from .loading import MAX_YAML_NODES, load_config, to_dict
from .schema import (
    FRAMEWORKS,
    LR_SCHEDULER_TYPES,
    MIXED_PRECISION,
    AutoDistillationConfig,
    Config,
    Constraint,
    DataConfig,
    DistillationConfig,
    DistillationStagesConfig,
    EvaluationConfig,
    ExecutorConfig,
    FidelityConfig,
    FinalDistillationConfig,
    LayerMapping,
    LRSchedulerConfig,
    ModelConfig,
    SearchConfig,
    Stage,
    TeacherCacheConfig,
    TrainConfig,
)
from .stages import normalize_stages

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
    "to_dict",
    "normalize_stages",
    "FRAMEWORKS",
    "LR_SCHEDULER_TYPES",
    "MIXED_PRECISION",
    "MAX_YAML_NODES",
]
