"""autokd: find a small, fast student model and train it by knowledge distillation.

The core holds the plugin contract, the config, the search loop and the result store.
Backends (``autokd-torch``, ``autokd-tensorflow``), advisors (``autokd-optuna``,
``autokd-nevergrad``) and evaluators (``autokd-latency``) are separate plugins,
discovered through the ``autokd`` entry-point group on first use.

Everything a plugin takes from the core is here: the names below, and the modules of
framework-neutral rules that backends share (``autokd.distill``, ``autokd.teacher_cache``,
``autokd.init_basis``, ``autokd.cache_switch``, ``autokd.worker``), each with its own ``__all__``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import cache_switch, distill, init_basis, teacher_cache, worker
from ._trial import TrialContext, current_trial, record_extra
from .advisor import Advisor, GridAdvisor, Objective, RandomAdvisor, SearchExhausted
from .autodistillation import AutoDistillation
from .backend import Backend, SearchFunctions
from .config import (
    LR_SCHEDULER_TYPES,
    AutoDistillationConfig,
    Config,
    Constraint,
    DistillationStagesConfig,
    ExecutorConfig,
    FidelityConfig,
    FinalDistillationConfig,
    LayerMapping,
    LRSchedulerConfig,
    SearchConfig,
    Stage,
    TeacherCacheConfig,
    TrainConfig,
    load_config,
)
from .errors import AutoKDError, ConfigError, PluginError, UnknownNameError
from .evaluation import EvalContext, known_direction
from .executor import Executor, LocalExecutor, TrialTask
from .fidelity import schedule_steps, stage_fractions, stage_steps
from .hookspecs import hookimpl, hookspec
from .imports import import_object
from .lazy import LazyObject, lazy_module_attrs, lazy_object, resolve_lazy
from .output import OutputConfig, SaveContext
from .plugins import registry
from .report import write_report
from .results import (
    ResultStore,
    TrialRecord,
    is_main_process,
    main_process_is_alone,
    pareto_front,
    select_best,
)
from .runner import FatalSearchError, TrialRunner
from .space import SearchSpace, SearchSpaceError

__all__ = [
    "resolve_lazy",
    "lazy_object",
    "lazy_module_attrs",
    "LazyObject",
    "write_report",
    "worker",
    "teacher_cache",
    "cache_switch",
    "schedule_steps",
    "stage_steps",
    "stage_fractions",
    "main_process_is_alone",
    "is_main_process",
    "init_basis",
    "import_object",
    "TrainConfig",
    "TeacherCacheConfig",
    "LRSchedulerConfig",
    "LR_SCHEDULER_TYPES",
    "Advisor",
    "AutoDistillation",
    "AutoDistillationConfig",
    "AutoKDError",
    "Backend",
    "Config",
    "ConfigError",
    "Constraint",
    "DistillationStagesConfig",
    "EvalContext",
    "ExecutorConfig",
    "FidelityConfig",
    "FinalDistillationConfig",
    "Executor",
    "FatalSearchError",
    "GridAdvisor",
    "LayerMapping",
    "LocalExecutor",
    "Objective",
    "OutputConfig",
    "PluginError",
    "RandomAdvisor",
    "ResultStore",
    "SaveContext",
    "SearchConfig",
    "SearchExhausted",
    "SearchFunctions",
    "SearchSpace",
    "SearchSpaceError",
    "Stage",
    "TrialContext",
    "TrialRecord",
    "TrialRunner",
    "TrialTask",
    "UnknownNameError",
    "__version__",
    "current_trial",
    "distill",
    "hookimpl",
    "hookspec",
    "known_direction",
    "load_config",
    "pareto_front",
    "record_extra",
    "registry",
    "select_best",
]
