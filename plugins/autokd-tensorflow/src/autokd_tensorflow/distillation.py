"""Flash and regular distillation of a Keras student, stage by stage.

A :class:`Distiller` trains one :class:`autokd.Stage`: its criterion
(``KnowledgeDistillationLoss`` when the stage has no layer mappings,
``IntermediateLayersKnowledgeDistillationLoss`` when it has), for its ``train_steps``
optimizer steps, in a ``tf.function`` training step that updates only the variables of
the stage's block (the whole student when the stage names none) and the feature
matchers. A :class:`Scheduler` runs distillers one after the other on the same student,
so the regular stage continues from the flash-distilled weights.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import attrs

from autokd import ConfigError, Stage
from autokd.distill import check_optimizer

from . import _tf
from .criteria import IntermediateLayersKnowledgeDistillationLoss, KnowledgeDistillationLoss
from .data import as_dataset, split_batch
from .features import resolve_layer

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

__all__ = ["Distiller", "Scheduler", "StageResult", "make_optimizer", "make_criterion", "distill", "weights_fingerprint"]

log = logging.getLogger("autokd.tensorflow")

@attrs.define
class StageResult:
    """What one stage did: its losses step by step and a fingerprint of the student's
    weights (sum of absolute values) before and after."""

    name: str
    block_name: str | None
    train_steps: int
    losses: list[float]
    trained_variables: int
    weights_before: float
    weights_after: float
    traces: int = 0  # Python runs of the step: 1 when a tf.function traced it once, one per step eagerly

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "block_name": self.block_name,
            "train_steps": self.train_steps,
            "first_loss": self.losses[0] if self.losses else None,
            "last_loss": self.losses[-1] if self.losses else None,
            "trained_variables": self.trained_variables,
        }


def weights_fingerprint(model: Any) -> float:
    """The sum of the absolute values of every weight: changes when any weight does."""
    return float(sum(np.abs(w.numpy()).astype(np.float64).sum() for w in model.weights))


def make_optimizer(spec: Any = None, learning_rate: float | None = None, field: str = "train.optimizer"):
    """A fresh tf-keras optimizer.

    :param spec: ``{name: {arguments}}`` as in the config (``{'SGD': {'learning_rate':
        0.001}}``), a tf-keras optimizer (a fresh copy of it is made: an optimizer is
        bound to the variables it first trains), or a callable returning one.
    :param learning_rate: overrides the spec's learning rate.
    """
    keras = _tf.keras()
    if spec is None:
        spec = {"Adam": {}}
    if isinstance(spec, keras.optimizers.Optimizer) or hasattr(spec, "get_config") and hasattr(spec, "apply_gradients"):
        config = spec.get_config()
        if learning_rate is not None:
            config["learning_rate"] = learning_rate
        return type(spec).from_config(config)
    if callable(spec):
        return spec()
    match, args = check_optimizer(spec, "tensorflow", field)  # the core's one table of names
    name = next(iter(spec))
    if "lr" in args:
        args["learning_rate"] = args.pop("lr")
    if learning_rate is not None:
        args["learning_rate"] = learning_rate
    try:
        return getattr(keras.optimizers, match)(**args)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{field}.{name}: {exc}") from None


def make_criterion(stage: Stage, field: str = ""):
    """The criterion of a stage: intermediate-layer distillation when it has layer
    mappings, output distillation otherwise."""
    if stage.layer_mappings:
        return IntermediateLayersKnowledgeDistillationLoss(
            stage.layer_mappings, stage.loss_types, stage.loss_weights, stage.add_origin_loss, field=field
        )
    return KnowledgeDistillationLoss(stage.temperature, stage.loss_types, stage.loss_weights, field=field)


class Distiller:
    """Trains ``student`` on one stage.

    :param student: the Keras student (trained in place).
    :param teacher: the frozen Keras teacher.
    :param stage: the :class:`autokd.Stage` (steps, block, mappings, losses).
    :param train_data: training data in any form :func:`~autokd_tensorflow.data.as_dataset`
        takes.
    :param optimizer: an optimizer spec for :func:`make_optimizer`; a fresh optimizer is
        made for the stage.
    :param criterion: a criterion to use instead of the stage's.
    :param name: the stage's name in errors and results (``flash_distillation[0]``).
    :param run_eagerly: run the training step eagerly instead of in a ``tf.function``
        (for debugging; tracing a transformers model takes seconds, then each step is
        far faster than in eager mode).
    """

    def __init__(
        self,
        student: Any,
        teacher: Any,
        stage: Stage,
        train_data: Any,
        optimizer: Any = None,
        criterion: Any = None,
        batch_size: int = 32,
        learning_rate: float | None = None,
        name: str = "stage",
        run_eagerly: bool = False,
    ):
        _tf.check_keras2_model(student, "student")
        _tf.check_keras2_model(teacher, "teacher")
        self.student = student
        self.teacher = teacher
        self.stage = stage
        self.name = name
        self.dataset = as_dataset(train_data, batch_size, "train_dataset")
        self.optimizer_spec = optimizer
        self.learning_rate = learning_rate
        self.criterion = criterion if criterion is not None else make_criterion(stage, name)
        self.run_eagerly = run_eagerly
        self.trace_count = 0

    def _block_variables(self) -> list:
        if self.stage.block_name is None:
            return list(self.student.trainable_variables)
        block = resolve_layer(self.student, self.stage.block_name)
        if block is None:
            raise ConfigError(
                f"{self.name}.block_names: block {self.stage.block_name!r} not found in the student "
                f"({type(self.student).__name__}); name a sublayer by attribute path or Keras layer name"
            )
        variables = list(block.trainable_variables)
        if not variables:
            raise ConfigError(f"{self.name}.block_names: block {self.stage.block_name!r} has no trainable variables")
        return variables

    def __call__(self) -> StageResult:
        criterion = self.criterion
        criterion.attach(self.student, self.teacher)
        try:
            return self._train(criterion)
        finally:
            criterion.detach()

    def _train(self, criterion) -> StageResult:
        batches = iter(self.dataset.repeat())
        first = next(batches, None)
        if first is None:
            raise ConfigError(f"{self.name}: the training data is empty")
        # One eager pass first: the feature matchers take their sizes from real features,
        # and a tf.function may create variables only on its first trace.
        inputs, _labels = split_batch(first)
        _t_out, t_feats = criterion.forward_teacher(inputs)
        _s_out, s_feats = criterion.forward_student(inputs, training=False)
        criterion.build(s_feats, t_feats)

        block_variables = self._block_variables()
        variables = block_variables + list(criterion.trainable_variables)
        optimizer = make_optimizer(self.optimizer_spec, self.learning_rate)
        # Slot variables made now, not on the first call: a tf.function that creates
        # variables is traced twice, and tracing dominates short stages.
        if hasattr(optimizer, "build"):
            optimizer.build(variables)
        name = self.name

        def train_step(inputs, labels):
            self.trace_count += 1  # Python side effect: counts traces under tf.function
            teacher_output, teacher_features = criterion.forward_teacher(inputs)
            with tf.GradientTape() as tape:
                student_output, student_features = criterion.forward_student(inputs, training=True)
                loss = criterion.compute(student_output, student_features, teacher_output, teacher_features, labels)
            gradients = tape.gradient(loss, variables)
            pairs = [(g, v) for g, v in zip(gradients, variables) if g is not None]
            if all(g is None for g in gradients[: len(block_variables)]):
                raise ConfigError(
                    f"{name}: no trained variable affects this stage's loss: the features it distils do not depend "
                    f"on block {self.stage.block_name!r}"
                )
            optimizer.apply_gradients(pairs)
            return loss

        if not self.run_eagerly:
            train_step = tf.function(train_step, reduce_retracing=True, autograph=False)

        before = weights_fingerprint(self.student)
        losses: list[float] = []
        batch = first
        for step in range(self.stage.train_steps):
            if step:
                batch = next(batches)
            inputs, labels = split_batch(batch)
            value = float(train_step(inputs, labels))
            if not math.isfinite(value):
                raise FloatingPointError(f"{name}: the loss is {value} at step {step}")
            losses.append(value)
        after = weights_fingerprint(self.student)
        log.debug("%s: %d steps, loss %.4g -> %.4g", name, len(losses), losses[0], losses[-1])
        return StageResult(
            name, self.stage.block_name, self.stage.train_steps, losses, len(variables), before, after,
            self.trace_count,
        )


class Scheduler:
    """Runs distillers in order on the same student (``combine(flash, regular)``)."""

    def __init__(self, distillers: Sequence[Distiller] = ()):
        self.distillers: list[Distiller] = list(distillers)
        self.results: list[StageResult] = []

    def combine(self, *distillers: Distiller) -> Scheduler:
        self.distillers.extend(distillers)
        return self

    def __call__(self):
        """Run every stage; returns the student."""
        self.results = [distiller() for distiller in self.distillers]
        return self.distillers[-1].student if self.distillers else None


def distill(
    student: Any,
    teacher: Any,
    flash_stages: Sequence[Stage],
    regular_stages: Sequence[Stage],
    train_data: Any,
    optimizer: Any = None,
    batch_size: int = 32,
    learning_rate: float | None = None,
    run_eagerly: bool = False,
) -> list[StageResult]:
    """Flash then regular distillation of ``student`` in place; the results per stage."""
    if not flash_stages and not regular_stages:
        raise ConfigError(
            "flash_distillation / regular_distillation: no stage configured; configure at least one, "
            "or pass your own train_func"
        )
    dataset = as_dataset(train_data, batch_size, "train_dataset")
    scheduler = Scheduler()
    for kind, stages in (("flash_distillation", flash_stages), ("regular_distillation", regular_stages)):
        for i, stage in enumerate(stages):
            scheduler.combine(
                Distiller(student, teacher, stage, dataset, optimizer, batch_size=batch_size,
                          learning_rate=learning_rate, name=f"{kind}[{i}]", run_eagerly=run_eagerly)
            )
    scheduler()
    return scheduler.results
