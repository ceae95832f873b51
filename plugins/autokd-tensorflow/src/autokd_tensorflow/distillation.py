"""Flash and regular distillation of a Keras student, stage by stage, trained by Keras.

A :class:`Distiller` trains one :class:`autokd.Stage`: its criterion
(``KnowledgeDistillationLoss`` when the stage has no layer mappings,
``IntermediateLayersKnowledgeDistillationLoss`` when it has), for its ``train_steps``
optimizer steps, through ``keras.Model.fit`` on a small Keras model whose custom
``train_step`` updates only the variables of the stage's block (the whole student when
the stage names none) and the feature matchers. Because a stage is a Keras ``fit``,
Keras callbacks (``TensorBoard``, ``EarlyStopping``, your own: each step's ``logs`` hold
the stage's ``loss``) and the student's ``tf.distribute`` strategy (build the student
and the teacher under ``MirroredStrategy().scope()``) apply. The engine settings
(:mod:`autokd_tensorflow.engine`: mixed precision, gradient accumulation, global-norm
clipping, learning-rate schedules) shape the optimizer and the step.

A :class:`Scheduler` runs distillers one after the other on the same student, so the
regular stage continues from the flash-distilled weights. :func:`distill` with a
``budget`` (multi-fidelity search, issue #15) trains each stage for its share of the
steps and keeps the stage's optimizer, step counter and data position per student
object (weakly), so the next budget continues where the last one stopped.
"""

from __future__ import annotations

import logging
import math
import re
import weakref
from collections.abc import Sequence
from typing import Any

from autokd import ConfigError, Stage, record_extra
from autokd import schedule_steps, stage_fractions, stage_steps

from . import _tf

# isort: split
import tensorflow as tf

from .criteria import make_criterion
from .data import as_dataset, split_batch
from .engine import EngineSettings, resize_schedule
from .features import resolve_layer
from .fitting import LossRecorder, StageResult, stage_model, weights_fingerprint
from .optimizers import make_optimizer

__all__ = [
    "Distiller",
    "Scheduler",
    "StageResult",
    "distill",
    "make_criterion",
    "make_optimizer",
    "weights_fingerprint",
]

log = logging.getLogger("autokd.tensorflow")


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
    :param callbacks: Keras callbacks given to the stage's ``fit``.
    :param settings: the engine settings (:func:`autokd_tensorflow.engine.engine_settings`).
    :param teacher_forward: a :class:`~autokd_tensorflow.teacher.TeacherForward` whose
        cache serves the teacher's outputs (prepared for ``train_data``), or None.

    Calling the distiller trains ``stage.train_steps`` steps, or ``steps`` more: a second
    call continues the same optimizer (its ``iterations``), learning-rate schedule and
    position in the data (:attr:`steps_done`). ``schedule_length`` is the steps the
    learning-rate schedule spans (default ``stage.train_steps``; more for a final
    distillation past them, :func:`autokd.schedule_steps`).
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
        callbacks: Sequence = (),
        settings: EngineSettings | None = None,
        teacher_forward: Any = None,
    ):
        _tf.check_keras2_model(student, "student")
        _tf.check_keras2_model(teacher, "teacher")
        self.student = student
        self.teacher = teacher
        self.stage = stage
        self.name = name
        self.dataset = as_dataset(train_data, batch_size, "train_dataset")
        self.batch_size = batch_size
        self.teacher_forward = teacher_forward
        self._cached_data = None  # batches(skip, k) with the teacher's stored outputs, when the cache serves
        self.optimizer_spec = optimizer
        self.learning_rate = learning_rate
        self.criterion = criterion if criterion is not None else make_criterion(stage, name)
        self.run_eagerly = run_eagerly
        self.callbacks = list(callbacks or ())
        self.settings = settings or EngineSettings()
        self.trace_count = 0
        self.steps_done = 0
        self.optimizer = None
        self._model = None
        self._variables: list = []
        self._block_count = 0
        self._schedule_length = stage.train_steps
        self._trace_error: Exception | None = None

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

    def bind(self, student: Any) -> None:
        """Train ``student`` (the same object as before) on the next call."""
        self.student = student

    def release(self) -> None:
        """Drop the references to the student between calls (the state kept per student
        object must not keep it alive)."""
        self.student = None
        self.criterion.student_model = None

    def __call__(self, steps: int | None = None, schedule_length: int | None = None) -> StageResult:
        steps = self.stage.train_steps if steps is None else int(steps)
        schedule_length = self.stage.train_steps if schedule_length is None else int(schedule_length)
        criterion = self.criterion
        criterion.attach(self.student, self.teacher)
        try:
            strategy = getattr(self.student, "distribute_strategy", None) or tf.distribute.get_strategy()
            with strategy.scope():
                if self._model is None:
                    self._setup(criterion, schedule_length)
                elif schedule_length != self._schedule_length:
                    resize_schedule(self.optimizer, self.settings, schedule_length)
                self._schedule_length = schedule_length
            return self._train(steps)
        finally:
            criterion.detach()

    def _setup(self, criterion, schedule_length: int) -> None:
        first = next(iter(self.dataset.take(1)), None)
        if first is None:
            raise ConfigError(f"{self.name}: the training data is empty")
        # One eager pass first: the feature matchers take their sizes from real features,
        # and a tf.function may create variables only on its first trace.
        inputs, _labels = split_batch(first)
        _t_out, t_feats = criterion.forward_teacher(inputs)
        _s_out, s_feats = criterion.forward_student(inputs, training=False)
        criterion.build(s_feats, t_feats)

        block_variables = self._block_variables()
        self._block_count = len(block_variables)
        self._variables = block_variables + list(criterion.trainable_variables)
        optimizer = make_optimizer(
            self.optimizer_spec, self.learning_rate, settings=self.settings, total_steps=schedule_length
        )
        # Slot variables made now, not on the first call: a tf.function that creates
        # variables is traced twice, and tracing dominates short stages.
        inner = getattr(optimizer, "inner_optimizer", optimizer)
        if hasattr(inner, "build"):
            inner.build(self._variables)
        self.optimizer = optimizer
        if self.teacher_forward is not None:
            self._cached_data = self.teacher_forward.stage_dataset(criterion, self.batch_size)
        model_name = re.sub(r"\W+", "_", self.name).strip("_") or "stage"
        self._model = stage_model(self._train_step, model_name)
        self._model.compile(optimizer=optimizer, run_eagerly=self.run_eagerly)

    def _train_step(self, data):
        self.trace_count += 1  # Python side effect: counts traces under tf.function
        criterion, variables, optimizer = self.criterion, self._variables, self.optimizer
        accumulation = self.settings.accumulation
        micro_batches = tuple(data) if accumulation > 1 else (data,)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        loss_scaled = hasattr(optimizer, "get_scaled_loss")
        summed = None
        total = tf.constant(0.0)
        for batch in micro_batches:
            if self._cached_data is not None:
                inputs, labels = batch["inputs"], batch.get("labels")
                teacher_output, teacher_features = self.teacher_forward.step_outputs(criterion, batch)
            else:
                inputs, labels = split_batch(batch)
                teacher_output, teacher_features = criterion.forward_teacher(inputs)
            with tf.GradientTape() as tape:
                student_output, student_features = criterion.forward_student(inputs, training=True)
                loss = tf.cast(
                    criterion.compute(student_output, student_features, teacher_output, teacher_features, labels),
                    tf.float32,
                )
                # Gradients of the mean over every micro-batch and replica: the optimizer
                # sums the replicas' gradients.
                scaled = loss / float(accumulation * replicas)
                if loss_scaled:
                    scaled = optimizer.get_scaled_loss(scaled)
            gradients = tape.gradient(scaled, variables)
            if loss_scaled:
                gradients = optimizer.get_unscaled_gradients(gradients)
            if all(g is None for g in gradients[: self._block_count]):
                # kept to be raised as it is: Keras' traced train function wraps it
                self._trace_error = ConfigError(
                    f"{self.name}: no trained variable affects this stage's loss: the features it distils do not "
                    f"depend on block {self.stage.block_name!r}"
                )
                raise self._trace_error
            if accumulation > 1:
                gradients = [None if g is None else tf.convert_to_tensor(g) for g in gradients]
            summed = (
                gradients
                if summed is None
                else [b if a is None else a if b is None else a + b for a, b in zip(summed, gradients)]
            )
            total += loss / float(accumulation)
        optimizer.apply_gradients([(g, v) for g, v in zip(summed, variables) if g is not None])
        return {"loss": total}

    def _fit_data(self):
        """The stage's batches from where the last call stopped; with gradient
        accumulation, ``k`` consecutive batches per optimizer step."""
        k = self.settings.accumulation
        if self._cached_data is not None:
            return self._cached_data(self.steps_done * k, k)
        data = self.dataset.repeat()
        if self.steps_done:
            data = data.skip(self.steps_done * k)
        if k > 1:
            data = tf.data.Dataset.zip(tuple(data.shard(k, i) for i in range(k)))
        return data

    def _train(self, steps: int) -> StageResult:
        before = weights_fingerprint(self.student)
        losses: list[float] = []
        if steps > 0:
            recorder = LossRecorder(self.name, self.steps_done)
            self._trace_error = None
            try:
                self._model.fit(
                    self._fit_data(), steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[recorder, *self.callbacks]
                )
            except Exception:
                if self._trace_error is not None:
                    raise self._trace_error from None
                raise
            losses = recorder.losses
        self.steps_done += len(losses)
        after = weights_fingerprint(self.student)
        if losses:
            log.debug("%s: %d steps, loss %.4g -> %.4g", self.name, len(losses), losses[0], losses[-1])
        return StageResult(
            self.name,
            self.stage.block_name,
            len(losses),
            losses,
            len(self._variables),
            before,
            after,
            self.trace_count,
            self.steps_done,
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


def _stages(flash_stages: Sequence[Stage], regular_stages: Sequence[Stage]) -> list[tuple[str, Stage]]:
    return [
        (f"{kind}[{i}]", stage)
        for kind, stages in (("flash_distillation", flash_stages), ("regular_distillation", regular_stages))
        for i, stage in enumerate(stages)
    ]


# Per student object: its distillers (optimizer, step counter, data position) by stage
# name, and the budget each has trained, so the next budget continues them.
_CONTINUED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


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
    *,
    budget: float | Sequence[float] | None = None,
    callbacks: Sequence = (),
    settings: EngineSettings | None = None,
    teacher_forward: Any = None,
) -> list[StageResult]:
    """Flash then regular distillation of ``student`` in place; the results per stage.

    :param budget: None: every stage trains its ``train_steps`` with a fresh optimizer.
        A fraction of every stage's ``train_steps`` (or one fraction per stage, flash
        then regular): each stage trains :func:`autokd.fidelity.stage_steps` more steps,
        continuing the optimizer, step counter and data position it reached on this
        student object in an earlier call (so 1/3 then 2/3 trains as 1 does).
    :param callbacks: Keras callbacks given to every stage's ``fit``.
    :param settings: engine settings (:func:`autokd_tensorflow.engine.engine_settings`).
    :param teacher_forward: a :class:`~autokd_tensorflow.teacher.TeacherForward` (the
        teacher-output cache) shared by the trials of a search; its record of this call
        goes to the trial's ``extras.teacher_cache``.
    """
    if teacher_forward is not None:
        teacher_forward.prepare(train_data)
    try:
        return _distill(
            student,
            teacher,
            flash_stages,
            regular_stages,
            train_data,
            optimizer,
            batch_size,
            learning_rate,
            run_eagerly,
            budget,
            callbacks,
            settings,
            teacher_forward,
        )
    finally:
        if teacher_forward is not None:
            record_extra("teacher_cache", teacher_forward.finish())


def _distill(
    student,
    teacher,
    flash_stages,
    regular_stages,
    train_data,
    optimizer,
    batch_size,
    learning_rate,
    run_eagerly,
    budget,
    callbacks,
    settings,
    teacher_forward,
) -> list[StageResult]:
    stages = _stages(flash_stages, regular_stages)
    if not stages:
        raise ConfigError(
            "flash_distillation / regular_distillation: no stage configured; configure at least one, "
            "or pass your own train_func"
        )
    dataset = as_dataset(train_data, batch_size, "train_dataset")

    def distiller(name: str, stage: Stage) -> Distiller:
        return Distiller(
            student,
            teacher,
            stage,
            dataset,
            optimizer,
            batch_size=batch_size,
            learning_rate=learning_rate,
            name=name,
            run_eagerly=run_eagerly,
            callbacks=callbacks,
            settings=settings,
            teacher_forward=teacher_forward,
        )

    if budget is None:
        scheduler = Scheduler([distiller(name, stage) for name, stage in stages])
        scheduler()
        return scheduler.results

    try:
        fractions = stage_fractions(budget, len(stages))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"budget: {exc}") from None
    if any(not math.isfinite(f) or f < 0 for f in fractions):
        raise ConfigError(f"budget: fractions of the configured steps must be >= 0, got {budget!r}")
    state = _CONTINUED.setdefault(student, {})
    results = []
    for (name, stage), fraction in zip(stages, fractions):
        entry = state.get(name)
        if entry is None or entry[0].stage != stage:
            # continued on the data of its first budget (a rung's data is a new object each call
            # when it is built per call; the examples are the same)
            entry = state[name] = [distiller(name, stage), 0.0]
        stage_distiller, done = entry[0], entry[1]
        stage_distiller.bind(student)
        stage_distiller.callbacks = list(callbacks or ())
        try:
            results.append(
                stage_distiller(
                    stage_steps(stage.train_steps, done, fraction), schedule_steps(stage.train_steps, done, fraction)
                )
            )
        finally:
            stage_distiller.release()
        entry[1] = done + fraction
    return results
