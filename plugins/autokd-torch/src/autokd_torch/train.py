"""The built-in train function of a search: flash distillation stages, then regular ones.

Flash stage ``i`` trains only the parameters under ``block_names[i]`` with
``IntermediateLayersKnowledgeDistillationLoss`` on that stage's layer mappings, loss
types and weights, for ``train_steps[i]`` optimizer steps. Regular stages then train the
whole student: with layer mappings (the design's ``[('cls', '0', 'cls', '0')]``) by
intermediate-layer distillation plus, with ``add_origin_loss``, the student's own loss;
without mappings by ``KnowledgeDistillationLoss`` (``loss_types`` = [student-vs-targets,
student-vs-teacher], ``temperature``), whose student-vs-targets term already is the
student's own loss, so ``add_origin_loss`` adds nothing there.

All stages of a trial draw from one stream of batches, and all trials of a search share
one :class:`~autokd_torch.teacher.TeacherForward`: the place a teacher-output cache goes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from torch import nn

from autokd import AutoKDError, Config, Stage, record_extra

from .criteria import DistillationCriterion, IntermediateLayersKnowledgeDistillationLoss, KnowledgeDistillationLoss
from .data import make_dataloader, repeat_batches
from .distillation import Distillation, Scheduler, seeded
from .features import FeatureSpec
from .teacher import TeacherForward

__all__ = ["FlashDistillationTrainFunc", "stage_criterion", "teacher_feature_specs"]

log = logging.getLogger("autokd.torch")


def stage_criterion(stage: Stage) -> DistillationCriterion:
    """The criterion of one normalised stage."""
    if stage.layer_mappings:
        return IntermediateLayersKnowledgeDistillationLoss(
            stage.layer_mappings, stage.loss_types, stage.loss_weights, stage.add_origin_loss
        )
    return KnowledgeDistillationLoss(stage.temperature, stage.loss_types, stage.loss_weights)


def teacher_feature_specs(stages: Iterable[Stage]) -> list[FeatureSpec]:
    """Every ``(teacher_layer, teacher_process)`` the stages' mappings need."""
    return list(dict.fromkeys((m.teacher_layer, m.teacher_process) for s in stages for m in s.layer_mappings))


class FlashDistillationTrainFunc:
    """``train_func(model) -> model`` running the config's flash and regular stages.

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
    """

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
        self.train_data = train_data
        self.data_collator = data_collator
        self.batch_size = batch_size or config.train.batch_size
        self.optimizer = dict(optimizer or config.train.optimizer)
        self.seed = seed
        self.show_progress = show_progress
        self.teacher = TeacherForward(teacher_model, teacher_feature_specs(self.flash_stages + self.regular_stages))

    @property
    def teacher_model(self) -> nn.Module:
        return self.teacher.teacher_model

    def _batches(self):
        data = self.train_data
        if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
            data = make_dataloader(data, self.batch_size, collate_fn=self.data_collator, seed=self.seed)
        return repeat_batches(data)

    def distillers(self) -> list[Distillation]:
        """One :class:`Distillation` per stage, flash stages first, sharing the batches."""
        batches = self._batches()
        stages: list[tuple[str, Stage]] = []
        for i, stage in enumerate(self.flash_stages):
            where = f" {stage.block_name}" if stage.block_name else ""
            stages.append((f"flash {i + 1}/{len(self.flash_stages)}{where}", stage))
        for i, stage in enumerate(self.regular_stages):
            stages.append((f"regular {i + 1}/{len(self.regular_stages)}", stage))
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
            distiller.train_dataloader = batches
            distiller.optimizer_config = self.optimizer
            distiller.show_progress = self.show_progress
            distillers.append(distiller)
        return distillers

    def __call__(self, model: nn.Module) -> nn.Module:
        distillers = self.distillers()
        with seeded(self.seed):
            trained = Scheduler().combine(*distillers)(model)
        record_extra(
            "stages",
            [
                {"name": d.name, "steps": len(d.history), "first_loss": d.history[0], "last_loss": d.history[-1]}
                for d in distillers
                if d.history
            ],
        )
        return trained
