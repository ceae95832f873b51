"""The built-in train function of a search: flash distillation stages, then regular ones.

Flash stage ``i`` trains only the parameters under ``block_names[i]`` with
``IntermediateLayersKnowledgeDistillationLoss`` on that stage's layer mappings, loss
types and weights, for ``train_steps[i]`` optimizer steps. Regular stages then train the
whole student: with layer mappings (the design's ``[('cls', '0', 'cls', '0')]``) by
intermediate-layer distillation plus, with ``add_origin_loss``, the student's own loss;
without mappings by ``KnowledgeDistillationLoss`` (``loss_types`` = [student-vs-targets,
student-vs-teacher], ``temperature``), whose student-vs-targets term already is the
student's own loss, so ``add_origin_loss`` adds nothing there.

A flash stage template (``{i}``/``{t}`` in its names, docs/config.md) is expanded for
each student by the core's rules (:mod:`autokd.stage_templates`): one stage per student
layer, paired with the uniform teacher layers, attention maps dropped where the head
counts differ; the teacher cache is asked for every teacher layer up front.

Each stage draws from its own stream of the seeded batch order, and all trials of a search share
one :class:`~autokd_torch.teacher.TeacherForward` and its teacher-output cache
(``train.teacher_cache``, issue #8): the teacher runs once per training example and
output, not once per step of every stage of every trial. A caller that builds a new train
function per trial (stages that depend on the student) shares one by passing
``teacher_forward=``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs
import torch
from torch import nn

from autokd import AutoKDError, Config, Stage, TrainConfig, record_extra, schedule_steps, stage_fractions, stage_steps
from autokd.distill import expand_for_student, expand_stage_budget, expand_stage_templates, is_template

from .criteria import DistillationCriterion, IntermediateLayersKnowledgeDistillationLoss, KnowledgeDistillationLoss
from .data import make_dataloader, repeat_batches
from .distillation import Distillation, Scheduler
from .engine import Engine, is_main_process, prepare_batches
from .features import FeatureSpec
from .teacher import TeacherForward

__all__ = ["FlashDistillationTrainFunc", "stage_criterion", "teacher_feature_specs", "stages_need_logits"]

log = logging.getLogger("autokd.torch")


def stage_criterion(stage: Stage) -> DistillationCriterion:
    """The criterion of one normalised stage."""
    if stage.layer_mappings:
        return IntermediateLayersKnowledgeDistillationLoss(
            stage.layer_mappings, stage.loss_types, stage.loss_weights, stage.add_origin_loss
        )
    return KnowledgeDistillationLoss(stage.temperature, stage.loss_types, stage.loss_weights)


def basis_matcher_initializer(model: nn.Module) -> Callable | None:
    """For a student initialised from its teacher (``init_from_teacher``), a
    ``matcher_initializer`` that starts each feature matcher from the width basis ``P``
    (weight ``P``, bias 0: the student's ``P^T x`` maps back to ``P P^T x``) instead of
    random; matchers between other widths keep their own initialisation. None for a
    student without an init report."""
    report = next((m.autokd_init_report for m in model.modules() if hasattr(m, "autokd_init_report")), None)
    if report is None or getattr(report, "basis", None) is None:
        return None
    from .init_from_teacher import feature_matcher_init

    def initialize(mapping, linear: nn.Linear) -> None:
        init = feature_matcher_init(report, linear.in_features, linear.out_features)
        if init is not None:
            weight, bias = init
            with torch.no_grad():
                linear.weight.copy_(weight.to(linear.weight.dtype))
                if linear.bias is not None:
                    linear.bias.copy_(bias.to(linear.bias.dtype))

    return initialize


def teacher_feature_specs(stages: Iterable[Stage]) -> list[FeatureSpec]:
    """Every ``(teacher_layer, teacher_process)`` the stages' mappings need."""
    return list(dict.fromkeys((m.teacher_layer, m.teacher_process) for s in stages for m in s.layer_mappings))


def stages_need_logits(stages: Iterable[Stage]) -> bool:
    """Whether a stage distils the teacher's logits (output distillation: no mappings)."""
    return any(not s.layer_mappings for s in stages)


@attrs.define
class _Progress:
    """How far one student got (a train function continuing it with a budget)."""

    distillers: list[Distillation]
    done: list[float]
    rng_state: torch.Tensor | None = None
    stages_of: tuple[list[Stage], list[Stage]] | None = None  # its (flash, regular) stages
    extras: dict = attrs.Factory(dict)  # what the expansion of its templates records in each trial


class FlashDistillationTrainFunc:
    """``train_func(model, budget=None) -> model`` running the config's flash and regular stages.

    :param config: the search config (its ``auto_distillation`` stages).
    :param teacher_model: the teacher.
    :param train_data: a map-style dataset (batched here, with example indices) or an
        iterable of batches (e.g. a ``DataLoader``).
    :param data_collator: collates a dataset's examples (default: by example type).
    :param batch_size: default ``config.train.batch_size``.
    :param optimizer: ``{name: {arguments}}``, default ``config.train.optimizer``; a fresh
        optimizer per stage.
    :param seed: seeds the batch order, weight init of matchers and dropout; the same in
        every trial, so trials differ only by their architecture.
    :param teacher_forward: a :class:`TeacherForward` shared with other train functions
        (and its cache); default a new one for ``teacher_model`` with the cache of
        ``config.train.teacher_cache``. With it, ``teacher_model`` may be None.
    :param output_dir: the search's output directory; the cache's files go to
        ``<output_dir>/teacher_cache/`` unless ``train.teacher_cache.directory`` is set.
    :param num_workers: ``DataLoader`` worker processes for a dataset's batches.
    :param pin_memory: pin the batches in memory (when CUDA is used).
    :param train_config: the engine settings (device, mixed precision, accumulation,
        clipping, schedule); default ``config.train``.

    Called with a ``budget`` (multi-fidelity search, issue #15): a fraction of every
    stage's configured steps, or one fraction per stage (flash stages, then regular), to
    train *now*; a later call with the same model object continues each stage where it
    stopped (its steps, optimizer, schedule, matchers and batch stream), so increments
    adding up to 1 train exactly as one call without a budget does.

    Each call records ``extras['teacher_cache']`` in the running trial (whether the cache
    served it, its hits and misses in examples, its bytes in memory and on disk) and
    ``extras['train']`` (device, mixed precision, processes, accumulation, schedule,
    effective batch size).
    """

    supports_budget = True

    def __init__(
        self,
        config: Config,
        teacher_model: nn.Module,
        train_data: Any,
        *,
        data_collator: Callable | None = None,
        batch_size: int | None = None,
        optimizer: Mapping[str, Any] | None = None,
        seed: int | None = None,
        show_progress: bool = True,
        teacher_forward: TeacherForward | None = None,
        output_dir: str | os.PathLike | None = None,
        train_config: TrainConfig | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
    ):
        if config.auto_distillation is None:
            raise AutoKDError("auto_distillation: missing: the built-in train function runs its stages")
        self.flash_stages: list[Stage] = config.auto_distillation.flash_stages()
        self.regular_stages: list[Stage] = config.auto_distillation.regular_stages()
        if not self.flash_stages and not self.regular_stages:
            raise AutoKDError(
                "auto_distillation: neither flash_distillation nor regular_distillation is given, so the built-in "
                "train function has nothing to run; add e.g. regular_distillation: {train_steps: [500]}"
            )
        if train_data is None:
            raise AutoKDError(
                "the built-in train function needs training data (data.train, or the Trainer's train_dataset)"
            )
        self.train_config = train_config if train_config is not None else config.train
        self.engine = Engine(self.train_config)  # refuses what this machine cannot run, before any training
        self.train_data = train_data
        self.data_collator = data_collator
        self.batch_size = batch_size or self.train_config.batch_size
        self.optimizer = dict(optimizer or self.train_config.optimizer)
        self.seed = seed
        self.show_progress = show_progress
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.output_dir = None if output_dir is None else os.fspath(output_dir)
        self.last_stages: list[dict] = []  # the stages' losses of the last call
        self._progress: weakref.WeakKeyDictionary[nn.Module, _Progress] = weakref.WeakKeyDictionary()
        stages = self.flash_stages + self.regular_stages
        self.has_templates = any(is_template(s) for s in stages)
        if self.has_templates:
            # every teacher layer a template can name ({t} over all the teacher's layers)
            model = teacher_model if teacher_model is not None else getattr(teacher_forward, "teacher_model", None)
            n_teacher = model_dims(model, "teacher")[0]
            stages = expand_stage_templates(stages, range(n_teacher))
        specs, logits = teacher_feature_specs(stages), stages_need_logits(stages)
        if teacher_forward is None:
            self.teacher = TeacherForward(
                teacher_model,
                specs,
                logits=logits,
                cache=self.train_config.teacher_cache,
                output_dir=self.output_dir,
                write_files=is_main_process(),
            )
        else:
            if not isinstance(teacher_forward, TeacherForward):
                raise AutoKDError(
                    f"teacher_forward: expected an autokd_torch.TeacherForward, got {type(teacher_forward).__name__}"
                )
            if teacher_model is not None and teacher_model is not teacher_forward.teacher_model:
                raise AutoKDError(
                    "teacher_model and teacher_forward.teacher_model are different models: pass the shared "
                    "TeacherForward alone (teacher_model=None) or a TeacherForward of this teacher"
                )
            teacher_forward.require(specs, logits=logits)
            self.teacher = teacher_forward

    @property
    def teacher_model(self) -> nn.Module:
        return self.teacher.teacher_model

    @property
    def stages(self) -> list[Stage]:
        return self.flash_stages + self.regular_stages

    def _batches(self, accelerator=None):
        data = self.train_data
        if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
            data = make_dataloader(
                data,
                self.batch_size,
                collate_fn=self.data_collator,
                seed=self.seed,
                num_workers=self.num_workers,
                pin_memory=self.pin_memory,
                group_by_length=self.train_config.group_by_length,
            )
        if accelerator is not None:
            data = prepare_batches(accelerator, data)
        return repeat_batches(data)

    def stages_for(self, model: nn.Module) -> tuple[list[Stage], list[Stage]]:
        """The (flash, regular) stages of ``model``: each ``{i}``/``{t}`` template
        expanded to one stage per student layer, ``{t}`` the teacher layer
        ``init_from_teacher(layers='uniform')`` copies student layer ``i`` from, and
        attention-map mappings dropped where the head counts differ (both recorded in the
        trial's extras: ``teacher_layers``, ``attention_maps_not_distilled``)."""
        return self._expand(model)[0]

    def _expand(self, model: nn.Module) -> tuple[tuple[list[Stage], list[Stage]], dict]:
        """:meth:`stages_for` and the extras it records in every trial of ``model``."""
        if not self.has_templates:
            return (self.flash_stages, self.regular_stages), {}
        n_student, student_heads = model_dims(model, "student")
        n_teacher, teacher_heads = model_dims(self.teacher_model, "teacher")
        flash, extras = expand_for_student(self.flash_stages, n_student, n_teacher, student_heads, teacher_heads)
        return (flash, self.regular_stages), extras

    def distillers(
        self, accelerator=None, stages_of: tuple[list[Stage], list[Stage]] | None = None
    ) -> list[Distillation]:
        """One :class:`Distillation` per stage, flash stages first, each with its own
        stream of the seeded batch order (so a stage continued later sees the batches it
        would have seen in one go). ``stages_of``: the (flash, regular) stages of the
        student (:meth:`stages_for`), default the configured ones."""
        flash_stages, regular_stages = stages_of or (self.flash_stages, self.regular_stages)
        stages: list[tuple[str, Stage]] = []
        for i, stage in enumerate(flash_stages):
            where = f" {stage.block_name}" if stage.block_name else ""
            stages.append((f"flash {i + 1}/{len(flash_stages)}{where}", stage))
        for i, stage in enumerate(regular_stages):
            stages.append((f"regular {i + 1}/{len(regular_stages)}", stage))
        distillers = []
        for name, stage in stages:
            distiller = Distillation(
                criterion=stage_criterion(stage),
                train_steps=stage.train_steps,
                block_name=stage.block_name,
                teacher=self.teacher,
                name=name,
            )
            distiller.teacher_model = self.teacher_model
            distiller.train_dataloader = self._batches(accelerator)
            distiller.optimizer_config = self.optimizer
            distiller.show_progress = self.show_progress
            distiller.engine = self.engine
            distiller.schedule_steps = stage.train_steps
            distillers.append(distiller)
        return distillers

    def __getstate__(self) -> dict:
        # Sent to executor workers (``processes``, ``ray``): the students' progress stays
        # with the process that trained them (a weak dictionary cannot be pickled; a
        # candidate's later rungs go to the worker that holds it).
        state = dict(self.__dict__)
        state["_progress"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._progress = weakref.WeakKeyDictionary()

    def __call__(self, model: nn.Module, budget: float | Sequence[float] | None = None) -> nn.Module:
        progress = self._progress.get(model) if budget is not None else None
        stages_of, extras = self._expand(model) if progress is None else (progress.stages_of, progress.extras)
        for key, value in extras.items():
            record_extra(key, value)
        stages = stages_of[0] + stages_of[1]
        if budget is not None and self.has_templates:
            budget = expand_stage_budget(budget, self.stages, model_dims(model, "student")[0])
        fractions = None if budget is None else stage_fractions(budget, len(stages))
        accelerator = self.engine.accelerator()
        if progress is None:
            distillers = self.distillers(accelerator, stages_of)
            progress = _Progress(distillers, [0.0] * len(stages), stages_of=stages_of, extras=extras)
            initializer = basis_matcher_initializer(model)
            if initializer is not None:
                for distiller in distillers:
                    if isinstance(distiller.criterion, IntermediateLayersKnowledgeDistillationLoss):
                        distiller.criterion.matcher_initializer = initializer
            if budget is not None:
                self._progress[model] = progress
        distillers = progress.distillers
        to_run = []
        for i, (stage, distiller) in enumerate(zip(stages, distillers)):
            distiller.accelerator = accelerator
            if fractions is None:
                distiller.train_steps = stage.train_steps
            else:
                distiller.train_steps = stage_steps(stage.train_steps, progress.done[i], fractions[i])
                # a final distillation past the full budget: the schedule spans all its steps
                total = schedule_steps(stage.train_steps, progress.done[i], fractions[i])
                progress.done[i] += fractions[i]
                if total != distiller.schedule_steps:
                    distiller.schedule_steps = total
                    distiller.lr_scheduler = None
            if distiller.train_steps > 0:
                to_run.append(distiller)
        self.teacher.place(accelerator.device)
        with accelerator.autocast():
            self.teacher.prepare(
                self.train_data,
                data_collator=self.data_collator,
                batch_size=self.batch_size,
                output_dir=self.output_dir,
                show_progress=self.show_progress and accelerator.is_local_main_process,
            )
        trained = model
        try:
            with _rng(self.seed, progress):
                if to_run:
                    trained = Scheduler().combine(*to_run)(model)
        finally:
            record_extra("teacher_cache", self.teacher.finish())
            record_extra("train", self.engine.record(accelerator, self.batch_size))
            for distiller in distillers:
                # what a student's progress keeps must not keep the student (its weak key) alive
                distiller.student_model = distiller.accelerator = None
        self.last_distillers = to_run
        self.last_stages = [
            {
                "name": d.name,
                "steps": len(d.history),
                "first_loss": d.history[0],
                "last_loss": d.history[-1],
                **({"steps_done": d.steps_done} if budget is not None else {}),
            }
            for d in to_run
            if d.history
        ]
        record_extra("stages", self.last_stages)
        return trained


def model_dims(model: nn.Module | None, role: str) -> tuple[int, int | None]:
    """``(num_hidden_layers, num_attention_heads)`` of a model's Hugging Face config (its
    own ``config`` or the first submodule's), for expanding stage templates."""
    configs = [getattr(m, "config", None) for m in ([model] + list(model.modules()) if model is not None else [])]
    for config in configs:
        layers = getattr(config, "num_hidden_layers", None)
        if isinstance(layers, int):
            heads = getattr(config, "num_attention_heads", None)
            return layers, heads if isinstance(heads, int) else None
    raise AutoKDError(
        f"auto_distillation.flash_distillation: a {{i}}/{{t}} stage template is expanded per layer of the "
        f"{role}, but the {role} ({type(model).__name__}) has no config.num_hidden_layers (a Hugging Face "
        f"config); write the stages out per layer, or give the model such a config"
    )


@contextlib.contextmanager
def _rng(seed: int | None, progress: _Progress):
    """torch's global RNG seeded with ``seed`` for a student's first call, and where it
    stopped for a continuation (so dropout continues as in one call); restored after."""
    if seed is None and progress.rng_state is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        if progress.rng_state is not None:
            torch.set_rng_state(progress.rng_state)
        else:
            torch.manual_seed(int(seed))
        try:
            yield
        finally:
            progress.rng_state = torch.get_rng_state()
