"""Distillation criteria for Keras models, with the PyTorch plugin's semantics.

``KnowledgeDistillationLoss`` (output distillation, Hinton et al. 2015,
arXiv:1503.02531) works on logits::

    teacher_student = T**2 * D(student_logits / T, teacher_logits / T)
    total = w0 * student_targets + w1 * teacher_student

with ``D`` the registered loss ``loss_types[1]``: ``CE`` (soft-target cross entropy
``-sum p_t log softmax(s)``, mean over the batch), ``KL`` (``batchmean`` KL(teacher ||
student)), ``MSE`` (mean squared error of the softened logits) or another plugin's, and ``student_targets`` the sparse cross entropy of the
logits against the labels (``CE``) or their mean squared error (``MSE``). Everything is
computed from logits with ``log_softmax``; no log is taken of raw scores.

``IntermediateLayersKnowledgeDistillationLoss`` compares features of intermediate layers
(see :mod:`autokd_tensorflow.features`) with registered losses (``MSE``, ``KL``, ``L1``,
``CE``, or another plugin's), passing the student feature through a trainable Dense
*feature matcher* when its last dimension differs from the teacher's. The matchers are
trained with the student.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from autokd import ConfigError, Stage, registry, resolve_lazy
from autokd.distill import (
    DISTRIBUTION_LOSSES,
    DISTRIBUTION_TOLERANCE,
    LOG_FLOOR,
    TARGET_LOSS_TYPES,
    check_loss_types,
    check_loss_weights,
    check_temperature,
    normalize_layer_mappings,
)

from . import _tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from .features import FeatureExtractor, logits_of
from .padding import measure_token_dims, real_positions, token_mask

import tensorflow as tf  # noqa: E402

__all__ = [
    "KnowledgeDistillationLoss",
    "IntermediateLayersKnowledgeDistillationLoss",
    "task_loss",
    "get_loss",
    "make_criterion",
]

log = logging.getLogger(__name__)


def get_loss(name: str, field: str = "loss_types"):
    """The registered TensorFlow loss ``name`` (built-in or from another plugin)."""
    try:
        loss_fn = registry().losses.get(name, "tensorflow")
    except LookupError as exc:
        raise type(exc)(f"{field}: {exc}") from None
    # This plugin registers lazy stand-ins; training steps call the function itself.
    return resolve_lazy(loss_fn)


def _labels_like(labels, logits):
    labels = tf.convert_to_tensor(labels)
    if labels.shape.rank is not None and logits.shape.rank is not None and labels.shape.rank == logits.shape.rank - 1:
        if logits.shape[-1] == 1:  # regression head with labels of shape (batch,)
            labels = tf.expand_dims(labels, -1)
    return labels


def task_loss(logits, labels, loss_type: str | None = None):
    """The student's own loss against the labels: ``CE`` (sparse cross entropy from
    logits, or soft-target cross entropy when the labels have the logits' shape) or
    ``MSE``. ``None`` picks ``MSE`` for float labels with a 1-wide head, else ``CE``."""
    logits = tf.cast(logits, tf.float32)
    labels = tf.convert_to_tensor(labels)
    if loss_type is None:
        loss_type = "MSE" if labels.dtype.is_floating and logits.shape[-1] == 1 else "CE"
    if loss_type == "MSE":
        target = tf.cast(_labels_like(labels, logits), tf.float32)
        return tf.reduce_mean(tf.square(logits - target))
    if labels.shape.rank == logits.shape.rank:  # one-hot or soft labels
        return tf.reduce_mean(-tf.reduce_sum(tf.cast(labels, tf.float32) * tf.nn.log_softmax(logits, -1), -1))
    labels = tf.cast(labels, tf.int32)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


class _Criterion:
    """What the distiller needs of a criterion: feature specs, extractors bound to the
    models, and ``compute`` of the loss from both forward passes."""

    student_model: Any = None
    teacher_model: Any = None

    def student_specs(self) -> list[tuple[str, Any]]:
        return []

    def teacher_specs(self) -> list[tuple[str, Any]]:
        return []

    def attach(self, student_model=None, teacher_model=None) -> None:
        """Bind the models: layers named by the specs get their capture hooks."""
        self.detach()
        self.student_model = student_model if student_model is not None else self.student_model
        self.teacher_model = teacher_model if teacher_model is not None else self.teacher_model
        self._student_extractor = FeatureExtractor(self.student_model, self.student_specs(), "student")
        self._teacher_extractor = FeatureExtractor(self.teacher_model, self.teacher_specs(), "teacher")

    def detach(self) -> None:
        for name in ("_student_extractor", "_teacher_extractor"):
            extractor = self.__dict__.pop(name, None)
            if extractor is not None:
                extractor.close()

    def _extractor(self, role: str) -> FeatureExtractor:
        extractor = self.__dict__.get(f"_{role}_extractor")
        if extractor is None:
            if getattr(self, f"{role}_model") is None:
                raise ConfigError(f"{type(self).__name__}: no {role}_model: pass it or call attach(student, teacher)")
            self.attach()
            extractor = self.__dict__[f"_{role}_extractor"]
        return extractor

    #: per teacher feature, its dimensions that follow the padded length (None: not measured yet)
    token_dims: list[tuple[int, ...]] | None = None

    def prepare(self, inputs) -> None:
        """Measure, eagerly, which dimensions of each feature follow the padded length
        (:func:`autokd_tensorflow.padding.measure_token_dims`). :meth:`forward_teacher`
        does it on its first eager call; a training loop that only runs in a
        ``tf.function`` calls this once on a batch first."""
        if self.token_dims is None and self.teacher_specs():
            extractor = self._extractor("teacher")
            self.token_dims = measure_token_dims(lambda x: extractor(x, training=False)[1], inputs)

    def real_positions(self, inputs, features: Sequence) -> list:
        """``features`` (one per teacher spec, in order) at the real positions of the batch
        ``inputs`` (issue #20, :func:`autokd_tensorflow.padding.real_positions`): what every
        loss receives. Pooled features and inputs without a token mask are unchanged."""
        features = list(features)
        mask = token_mask(inputs)
        if mask is None or not features:
            return features
        if self.token_dims is None:
            if tf.executing_eagerly():
                self.prepare(inputs)
            if self.token_dims is None:
                if not getattr(self, "_warned_unmeasured", False):
                    log.warning(
                        "%s: per-token features are used with their padded positions: call criterion.prepare(batch) "
                        "eagerly before tracing the training step",
                        type(self).__name__,
                    )
                    self._warned_unmeasured = True
                return features
        return [real_positions(f, mask, dims) for f, dims in zip(features, self.token_dims, strict=True)]

    def raw_teacher_outputs(self, inputs):
        """The teacher's output and features on ``inputs`` as the model gives them
        (inference mode, no gradient; padded positions kept): what the teacher-output
        cache stores per example."""
        output, features = self._extractor("teacher")(inputs, training=False)
        return output, [tf.stop_gradient(f) for f in features]

    def forward_teacher(self, inputs):
        """The teacher's output and features on ``inputs`` (inference mode, no gradient);
        the features at the real positions of a padded batch only."""
        output, features = self.raw_teacher_outputs(inputs)
        return output, self.real_positions(inputs, features)

    def forward_student(self, inputs, training: bool = True):
        """The student's output and features on ``inputs``; the features at the real
        positions of a padded batch only (at the positions of the teacher's features)."""
        output, features = self._extractor("student")(inputs, training=training)
        return output, self.real_positions(inputs, list(features))

    @property
    def trainable_variables(self) -> list:
        """Variables trained with the student (the feature matchers)."""
        return []

    def build(self, student_features: Sequence, teacher_features: Sequence) -> None:
        """Create what depends on feature shapes; called once, eagerly, before training."""

    def compute(self, student_output, student_features, teacher_output, teacher_features, labels=None):
        raise NotImplementedError


class KnowledgeDistillationLoss(_Criterion):
    """Output distillation from the teacher's logits.

    :param temperature: ``T`` > 0 softening both distributions; the teacher-student term
        is multiplied by ``T**2``.
    :param loss_types: ``[student_vs_targets, student_vs_teacher]``: ``CE`` or ``MSE``,
        then ``CE``, ``KL`` or ``MSE``.
    :param loss_weights: ``[w0, w1]`` summing to 1. A weight of 0 drops its term (``w0 =
        0`` needs no labels).
    """

    STUDENT_TARGETS = TARGET_LOSS_TYPES

    def __init__(
        self,
        temperature: float = 1.0,
        loss_types: Sequence[str] = ("CE", "CE"),
        loss_weights: Sequence[float] = (0.5, 0.5),
        student_model=None,
        teacher_model=None,
        field: str = "",
    ):
        where = f"{field}." if field else ""
        self.temperature = check_temperature(temperature, f"{where}temperature")
        self.loss_types = check_loss_types(loss_types, f"{where}loss_types", output=True)
        self.loss_weights = check_loss_weights(loss_weights, f"{where}loss_weights", 2, sum_to_one=True)
        # D is a registered loss: CE, KL, MSE (see autokd_tensorflow.losses) or another plugin's.
        self.teacher_student_loss = get_loss(loss_types[1], f"{where}loss_types[1]")
        self.student_model = student_model
        self.teacher_model = teacher_model
        self.teacher_outputs = None

    def teacher_model_forward(self, inputs):
        """The teacher's logits on ``inputs`` (inference mode), kept as ``teacher_outputs``."""
        output, _ = self.forward_teacher(inputs)
        self.teacher_outputs = tf.stop_gradient(logits_of(output))
        return self.teacher_outputs

    def teacher_student_loss_cal(self, student_logits, teacher_logits):
        """``T**2 * D(student / T, teacher / T)``, D = ``loss_types[1]``."""
        t = self.temperature
        student = tf.cast(student_logits, tf.float32) / t
        teacher = tf.cast(teacher_logits, tf.float32) / t
        return (t * t) * tf.cast(self.teacher_student_loss(student, teacher), tf.float32)

    def student_targets_loss_cal(self, student_logits, targets):
        """The student's loss against the labels (``loss_types[0]``)."""
        return task_loss(student_logits, targets, self.loss_types[0])

    def loss_cal_sloss(self, student_logits, teacher_logits, student_loss):
        """``w0 * student_loss + w1 * teacher_student`` for a student loss computed
        elsewhere (e.g. by the model)."""
        w0, w1 = self.loss_weights
        total = tf.constant(0.0)
        if w0:
            total += w0 * tf.cast(student_loss, tf.float32)
        if w1:
            total += w1 * self.teacher_student_loss_cal(student_logits, teacher_logits)
        return total

    def loss_cal(self, student_logits, targets=None):
        """The total loss against the labels and the teacher logits kept by
        :meth:`teacher_model_forward`."""
        if self.teacher_outputs is None and self.loss_weights[1]:
            raise ConfigError("KnowledgeDistillationLoss: no teacher outputs: call teacher_model_forward(inputs) first")
        return self(student_logits, self.teacher_outputs, targets)

    # Plain names for the design's method names above (the same methods).
    distillation_loss = teacher_student_loss_cal
    targets_loss = student_targets_loss_cal
    combined_loss = loss_cal_sloss
    total_loss = loss_cal

    def __call__(self, student_logits, teacher_logits, targets=None):
        """The total loss from both models' logits and the labels."""
        w0 = self.loss_weights[0]
        if w0 and targets is None:
            raise ConfigError(
                "loss_weights: the student-vs-targets term has weight "
                f"{w0:g} but the batch has no labels: give the training data labels or set its weight to 0"
            )
        student_loss = self.student_targets_loss_cal(student_logits, targets) if w0 else 0.0
        return self.loss_cal_sloss(student_logits, teacher_logits, student_loss)

    def student_specs(self):
        # the logits as a feature: per-token logits then reach the loss at the real tokens only
        return [("logits", "")]

    def teacher_specs(self):
        return [("logits", "")]

    def compute(self, student_output, student_features, teacher_output, teacher_features, labels=None):
        w0 = self.loss_weights[0]
        if w0 and labels is None:
            raise ConfigError(
                "loss_weights: the student-vs-targets term has weight "
                f"{w0:g} but the batch has no labels: give the training data labels or set its weight to 0"
            )
        student_loss = self.student_targets_loss_cal(logits_of(student_output), labels) if w0 else 0.0
        if student_features and teacher_features:
            student_logits, teacher_logits = student_features[0], teacher_features[0]
        else:  # features of a criterion used without its specs: the whole logits
            student_logits, teacher_logits = logits_of(student_output), logits_of(teacher_output)
        return self.loss_cal_sloss(student_logits, teacher_logits, student_loss)


_DISTRIBUTION_LOSSES = DISTRIBUTION_LOSSES


def _as_logits(feature):
    """Probabilities (attention maps) as log-probabilities, other features as they are:
    the rule and its constants are the core's (:data:`autokd.distill.DISTRIBUTION_TOLERANCE`),
    the same as the PyTorch plugin's, so both backends give the same numbers."""
    feature = tf.cast(feature, tf.float32)
    rows = tf.reduce_sum(feature, axis=-1)
    ones = tf.abs(rows - 1.0) <= DISTRIBUTION_TOLERANCE
    is_distribution = tf.logical_and(
        tf.logical_and(tf.reduce_min(feature) >= 0.0, tf.reduce_max(feature) <= 1.0),
        tf.logical_and(tf.reduce_any(ones), tf.reduce_all(tf.logical_or(ones, tf.equal(rows, 0.0)))),
    )
    return tf.where(is_distribution, tf.math.log(tf.maximum(feature, LOG_FLOOR)), feature)


class IntermediateLayersKnowledgeDistillationLoss(_Criterion):
    """Distillation of intermediate-layer features.

    :param layer_mappings: one ``(student_layer, [student_process,] teacher_layer[,
        teacher_process])`` per feature pair (or :class:`autokd.LayerMapping`).
    :param loss_types: one registered loss name per mapping (default ``MSE``).
    :param loss_weights: one weight per mapping (default equal weights summing to 1).
    :param add_origin_loss: add the student's own loss against the labels
        (:func:`task_loss`).

    For ``KL`` and ``CE``, a feature that already is a probability distribution over its
    last dimension (attention maps) is passed to the loss as ``log p``
    (:func:`_as_logits`), as the PyTorch plugin does.
    """

    def __init__(
        self,
        layer_mappings: Sequence,
        loss_types: Sequence[str] | None = None,
        loss_weights: Sequence[float] | None = None,
        add_origin_loss: bool = False,
        student_model=None,
        teacher_model=None,
        field: str = "",
    ):
        where = f"{field}." if field else ""
        mappings, self.loss_types, self.loss_weights = normalize_layer_mappings(
            layer_mappings, loss_types, loss_weights, field, "layer_mappings_for_knowledge_transfer"
        )
        self.layer_mappings = tuple(mappings)
        self.layer_output_process = [(m.student_process, m.teacher_process) for m in self.layer_mappings]
        self.add_origin_loss = bool(add_origin_loss)
        self.student_model = student_model
        self.teacher_model = teacher_model
        self._field = where
        self.loss_funcs = self.init_loss_funcs()
        self.feature_matchers: list | None = None
        self.student_features: list = []
        self.teacher_features: list = []

    def student_specs(self):
        return [(m.student_layer, m.student_process) for m in self.layer_mappings]

    def teacher_specs(self):
        return [(m.teacher_layer, m.teacher_process) for m in self.layer_mappings]

    def init_loss_funcs(self) -> list:
        """The registered TensorFlow loss of each mapping."""
        return [get_loss(name, f"{self._field}loss_types") for name in self.loss_types]

    def init_feature_matcher(self, student_feature, teacher_feature, index: int = 0):
        """A Dense layer mapping the student feature's last dimension onto the teacher's,
        or None when they already agree."""
        s_shape, t_shape = tf.TensorShape(student_feature.shape), tf.TensorShape(teacher_feature.shape)
        mapping = self.layer_mappings[index]
        if s_shape.rank != t_shape.rank or s_shape[:-1] != t_shape[:-1]:
            raise ConfigError(
                f"{self._field}layer_mappings_for_knowledge_transfer[{index}]: student feature "
                f"{mapping.student_layer!r} has shape {s_shape.as_list()} and teacher feature "
                f"{mapping.teacher_layer!r} {t_shape.as_list()}; a feature matcher maps only the last dimension, "
                f"the others must agree"
            )
        if s_shape[-1] == t_shape[-1]:
            return None
        matcher = _tf.keras().layers.Dense(int(t_shape[-1]), name=f"feature_matcher_{index}")
        matcher.build(s_shape)
        return matcher

    def build(self, student_features, teacher_features) -> None:
        if self.feature_matchers is None:
            self.feature_matchers = [
                self.init_feature_matcher(s, t, i) for i, (s, t) in enumerate(zip(student_features, teacher_features))
            ]

    @property
    def trainable_variables(self) -> list:
        return [v for m in self.feature_matchers or [] if m is not None for v in m.trainable_variables]

    def teacher_model_forward(self, inputs):
        """The teacher's features on ``inputs``, kept as ``teacher_features``."""
        _, self.teacher_features = self.forward_teacher(inputs)
        return self.teacher_features

    def loss_cal(self, student_features=None, teacher_features=None):
        """``sum_i w_i * loss_i(matcher_i(student_i), teacher_i)`` over the mappings."""
        student_features = self.student_features if student_features is None else student_features
        teacher_features = self.teacher_features if teacher_features is None else teacher_features
        self.build(student_features, teacher_features)
        total = tf.constant(0.0)
        for i, (s, t) in enumerate(zip(student_features, teacher_features)):
            matcher = self.feature_matchers[i]
            if matcher is not None:
                s = matcher(tf.cast(s, tf.float32))
            if self.loss_types[i] in _DISTRIBUTION_LOSSES:
                s, t = _as_logits(s), _as_logits(t)
            total += self.loss_weights[i] * tf.cast(self.loss_funcs[i](s, t), tf.float32)
        return total

    # A plain name for the design's method name above (the same method).
    total_loss = loss_cal

    def compute(self, student_output, student_features, teacher_output, teacher_features, labels=None):
        if tf.executing_eagerly():  # kept for inspection; inside tf.function they would be graph tensors
            self.student_features, self.teacher_features = list(student_features), list(teacher_features)
        total = self.loss_cal(student_features, teacher_features)
        if self.add_origin_loss:
            if labels is None:
                raise ConfigError(
                    f"{self._field}add_origin_loss: true, but the batch has no labels: give the training data labels "
                    f"or set add_origin_loss to false"
                )
            total += task_loss(logits_of(student_output), labels)
        return total

    def __call__(self, student_features, teacher_features):
        return self.loss_cal(student_features, teacher_features)


def make_criterion(stage: Stage, field: str = ""):
    """The criterion of a stage: intermediate-layer distillation when it has layer
    mappings, output distillation otherwise."""
    if stage.layer_mappings:
        return IntermediateLayersKnowledgeDistillationLoss(
            stage.layer_mappings, stage.loss_types, stage.loss_weights, stage.add_origin_loss, field=field
        )
    return KnowledgeDistillationLoss(stage.temperature, stage.loss_types, stage.loss_weights, field=field)
