"""The checks of a structured document that one field's type cannot say: ranges,
lengths that must agree across fields, metric names a trial computes, criterion
arguments, the training engine's keys. Each adds ``path: message`` lines to
``problems`` so that every problem of a document is reported at once."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from ..space import SearchSpace, SearchSpaceError
from .schema import (
    LR_SCHEDULER_TYPES,
    MIXED_PRECISION,
    Constraint,
    DistillationStagesConfig,
    EvaluationConfig,
    FidelityConfig,
    FinalDistillationConfig,
    SearchConfig,
    TrainConfig,
)
from .stages import normalize_stages
from .structuring import did_you_mean, structure_section, type_hint

_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def check_search(search: SearchConfig, path: str, problems: list[str], evaluators: Any = None) -> None:
    """The search section; with ``evaluators`` (the registry's) also that every metric
    has a direction (given, known, or declared by its evaluator)."""
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
    elif evaluators is not None:
        from ..evaluation import known_direction

        unknown = [m for m in search.metrics if known_direction(m, evaluators) is None]
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
    check_fidelity(search.fidelity, f"{path}.fidelity", problems)
    if search.executor.max_concurrent < 1:
        problems.append(
            f"{path}.executor.max_concurrent: must be >= 1 (trials running at once), got {search.executor.max_concurrent}"
        )
    if not search.executor.name:
        problems.append(f"{path}.executor.name: empty: name an executor such as 'local' or 'processes'")


_SCHEDULES = ("successive_halving", "hyperband")


def check_fidelity(fidelity: FidelityConfig | None, path: str, problems: list[str]) -> None:
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


def check_final(final: FinalDistillationConfig | None, n_stages: int, path: str, problems: list[str]) -> None:
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


def check_metric_names(
    search: SearchConfig | None,
    evaluation: EvaluationConfig,
    search_path: str,
    problems: list[str],
    evaluators: Any,
) -> None:
    """Constraints and ``evaluation.<metric>`` options name metrics a trial computes: an
    objective, a metric in ``evaluation.record``, or a registered evaluator (#13: a
    misspelt ``latncy`` was taken as a metric, and a constraint on an unknown metric was
    silently ignored by the best-arch rule). ``evaluators``: the registry's evaluators."""
    objectives = list(search.metrics) if search is not None else []
    computed = [*objectives, *evaluation.record]
    known = [*computed, *evaluators.names()]
    if search is not None:
        for i, text in enumerate(search.constraints):
            try:
                metric = Constraint.parse(text).metric
            except ValueError:
                continue  # reported by check_search
            if metric not in computed and metric not in evaluators:
                problems.append(
                    f"{search_path}.constraints[{i}]: {metric!r} is not a metric of this search: add it to "
                    f"evaluation.record (a metric eval_func returns) or install the evaluator that computes it"
                    + did_you_mean(metric, known)
                )
    fixed = ["function", "batch_size", "record"]
    for key in evaluation.metric_options:
        if key in computed or key in evaluators:
            continue
        problems.append(
            f"evaluation.{key}: unknown key{did_you_mean(key, [*fixed, *known])}. Keys here are {', '.join(fixed)} "
            f"and the options of a metric that is searched ({', '.join(objectives) or 'none'}), recorded "
            f"(evaluation.record) or a registered evaluator ({', '.join(evaluators.names()) or 'none installed'})"
        )


def check_import_string(value: str | None, path: str, problems: list[str]) -> None:
    if value is not None and ":" not in value:
        problems.append(f"{path}: {value!r} is not an import string like 'package.module:function'")


def check_criterion(criterion: dict | None, path: str, problems: list[str]) -> None:
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
        kd = structure_section(dict(args), _KDCriterionArgs, f"{path}.{name}", problems)
        if kd is not None:
            from ..distill import loss_type_problems, loss_weight_problems

            type_problems = loss_type_problems(kd.loss_types, f"{path}.{name}.loss_types", output=True)
            problems.extend(type_problems)
            problems.extend(loss_weight_problems(kd.loss_weights, f"{path}.{name}.loss_weights", 2, sum_to_one=True))
            if kd.temperature <= 0:
                problems.append(f"{path}.{name}.temperature: must be positive, got {kd.temperature}")
    elif name == "IntermediateLayersKnowledgeDistillationLoss":
        il = structure_section(dict(args), _ILCriterionArgs, f"{path}.{name}", problems)
        if il is not None:
            cfg = DistillationStagesConfig(
                layer_mappings_for_knowledge_transfer=il.layer_mappings_for_knowledge_transfer,
                loss_types=il.loss_types,
                loss_weights=il.loss_weights,
                add_origin_loss=il.add_origin_loss,
            )
            normalize_stages(cfg, f"{path}.{name}", problems)


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


def check_train(train: TrainConfig, path: str, problems: list[str], framework: str = "pytorch") -> None:
    from ..distill import optimizer_problems

    check_import_string(train.function, f"{path}.function", problems)
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
    check_criterion(train.criterion, f"{path}.criterion", problems)
    check_engine(train, path, problems)


def check_engine(train: TrainConfig, path: str, problems: list[str]) -> None:
    """The engine keys: devices, precision, accumulation, clipping, schedule. What the
    machine has (a GPU for ``cuda`` or ``fp16``) is checked by the backend."""
    if not isinstance(train.device, str) or not _DEVICE.fullmatch(train.device):
        problems.append(f"{path}.device: 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {train.device!r}")
    if train.mixed_precision not in MIXED_PRECISION:
        hint = type_hint(train.mixed_precision)
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
    if schedule.type == "warmup_stable_decay":
        if schedule.decay_ratio is None or not 0 < schedule.decay_ratio <= 1:
            problems.append(
                f"{spath}.decay_ratio: warmup_stable_decay needs the fraction of the stage's steps to decay over, in "
                f"(0, 1] (e.g. 0.2), got {schedule.decay_ratio!r}"
            )
        elif schedule.decay_ratio + (schedule.warmup_ratio or 0) > 1:
            problems.append(
                f"{spath}: warmup_ratio + decay_ratio must be at most 1, got {schedule.warmup_ratio} + "
                f"{schedule.decay_ratio}"
            )
    elif schedule.decay_ratio is not None:
        problems.append(
            f"{spath}.decay_ratio: only warmup_stable_decay decays at the end of a stage; drop it, or use type "
            f"warmup_stable_decay"
        )
