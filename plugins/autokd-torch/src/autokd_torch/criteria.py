"""Distillation criteria: ``KnowledgeDistillationLoss`` (output logits, Hinton et al. 2015)
and ``IntermediateLayersKnowledgeDistillationLoss`` (intermediate features, as flash
distillation trains one block at a time).

Both follow the AutoDistillation design's method names and are what the built-in
training runs. A third-party criterion registered with ``register_criteria`` subclasses
:class:`DistillationCriterion` and implements :meth:`~DistillationCriterion.compute_loss`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from autokd import AutoKDError, ConfigError, LayerMapping
from autokd.distill import (
    DISTRIBUTION_LOSSES,
    DISTRIBUTION_TOLERANCE,
    LOG_FLOOR,
    check_loss_types,
    check_loss_weights,
    check_temperature,
)
from autokd.distill import normalize_layer_mappings as _normalize_layer_mappings

from .cache import LOGITS
from .data import logits_of
from .features import FeatureCapture, FeatureSpec, uses_attention_maps
from .hf_attention import use_eager_attention
from .losses import get_loss
from .padding import real_positions, zero_padded
from .teacher import TeacherForward, TeacherOutputs

__all__ = [
    "DistillationCriterion",
    "KnowledgeDistillationLoss",
    "IntermediateLayersKnowledgeDistillationLoss",
    "normalize_layer_mappings",
    "origin_loss",
]

_MODEL_ATTRS = ("student_model", "teacher_model")


class DistillationCriterion(nn.Module):
    """Base of the criteria the built-in training runs.

    The training loop, per step: ``set_teacher_outputs(teacher(batch))``, then the
    student's forward pass (called with :attr:`student_forward_kwargs`), then
    ``compute_loss(student_outputs, targets)``. Parameters of the criterion itself (e.g.
    feature matchers) are trained with the student.

    ``student_model`` and ``teacher_model`` are plain attributes, not submodules: the
    criterion's ``parameters()`` are its own.

    :cvar needs_teacher_logits: whether :meth:`set_teacher_outputs` reads the teacher's
        logits (the built-in training asks the teacher, or its cache, only for what the
        criterion reads).
    """

    needs_teacher_logits = True

    def __init__(self, student_model: nn.Module | None = None, teacher_model: nn.Module | None = None):
        super().__init__()
        self.student_forward_kwargs: dict[str, Any] = {}
        self.student_model = student_model
        self.teacher_model = teacher_model

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _MODEL_ATTRS:
            object.__setattr__(self, name, value)
            if name == "student_model":
                self._on_student(value)
            return
        super().__setattr__(name, value)

    def _on_student(self, model: nn.Module | None) -> None:
        """Called when ``student_model`` is set (hooks go on the new student here)."""

    def teacher_feature_specs(self) -> list[FeatureSpec]:
        """The ``(teacher_layer, teacher_process)`` features this criterion needs."""
        return []

    def set_teacher_outputs(self, outputs: TeacherOutputs) -> None:
        raise NotImplementedError

    def compute_loss(self, student_outputs: Any, targets: Any) -> torch.Tensor:
        raise NotImplementedError

    def detach(self) -> None:
        """Remove anything attached to the student (hooks)."""

    def teacher_model_forward(self, inputs: Any) -> Any:
        """Run the teacher (eval mode, no grad) on ``inputs`` and keep its outputs."""
        outputs = TeacherForward(self.teacher_model, self.teacher_feature_specs())(inputs)
        self.set_teacher_outputs(outputs)
        return outputs


def real_pair(
    padding: TeacherOutputs | None, key: Any, student: torch.Tensor, teacher: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """A student feature and the teacher output ``key`` it is compared with, at the real
    positions of a padded batch only (:func:`autokd_torch.padding.real_positions`): what
    every loss receives, built-in or registered by a plugin. Pooled features and
    unpadded batches are returned as they are."""
    if padding is None or padding.token_mask is None or tuple(student.shape) != tuple(teacher.shape):
        return student, teacher
    dims = padding.token_dims.get(key)
    if not dims:
        return student, teacher
    mask = padding.token_mask
    student, teacher = zero_padded(student, mask, dims), zero_padded(teacher, mask, dims)
    return real_positions(student, mask, dims), real_positions(teacher, mask, dims)


def origin_loss(student_outputs: Any, targets: Any, owner: str) -> torch.Tensor:
    """The student's own task loss: the ``loss`` a Hugging Face model computed from the
    batch's labels, else cross entropy of its logits against the targets."""
    loss = student_outputs.get("loss") if hasattr(student_outputs, "get") else None
    if loss is not None:
        return loss
    if targets is None:
        raise AutoKDError(
            f"{owner}: add_origin_loss needs the student's own loss, but the batch has no labels; "
            f"give the data labels or set add_origin_loss: false"
        )
    return _targets_loss("CE", logits_of(student_outputs), targets, owner)


def _targets_loss(loss_type: str, logits: torch.Tensor, targets: torch.Tensor, owner: str) -> torch.Tensor:
    if loss_type == "CE":
        if targets.is_floating_point():
            raise AutoKDError(
                f"{owner}: the student-vs-targets loss 'CE' needs class indices as labels, got float labels; "
                f"use 'MSE' for regression targets"
            )
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).long(), ignore_index=-100)
    if loss_type == "MSE":
        if logits.dim() == targets.dim() + 1 and logits.shape[-1] == 1:
            logits = logits.squeeze(-1)
        return F.mse_loss(logits, targets.to(logits.dtype))
    raise ConfigError(
        f"{owner}.loss_types[0]: the student-vs-targets loss is 'CE' (class labels) or 'MSE' (regression), "
        f"got {loss_type!r}"
    )


class KnowledgeDistillationLoss(DistillationCriterion):
    """Output distillation: ``w0 * L(student, targets) + w1 * T^2 * D(student/T, teacher/T)``.

    :param temperature: ``T``, softens both distributions (default 1.0).
    :param loss_types: ``[student-vs-targets, student-vs-teacher]``. The first is ``CE``
        (cross entropy against class labels, ``ignore_index=-100``) or ``MSE``
        (regression); the second any registered loss: ``CE`` (soft-target cross entropy),
        ``KL`` (KL(teacher || student) of the softened distributions, averaged over
        positions: ``batchmean``) or ``MSE``.
    :param loss_weights: ``[w0, w1]``, non-negative and summing to 1. A term of weight 0
        is not computed (``[0, 1]`` distils without labels).

    The teacher term is multiplied by ``T^2`` so its gradients keep their scale as ``T``
    changes (Hinton et al. 2015, section 2).
    """

    def __init__(
        self,
        temperature: float = 1.0,
        loss_types: Sequence[str] = ("CE", "CE"),
        loss_weights: Sequence[float] = (0.5, 0.5),
        student_model: nn.Module | None = None,
        teacher_model: nn.Module | None = None,
    ):
        super().__init__(student_model, teacher_model)
        owner = type(self).__name__
        self.temperature = check_temperature(temperature, f"{owner}.temperature")
        loss_types = check_loss_types(loss_types, f"{owner}.loss_types", output=True)
        loss_weights = check_loss_weights(loss_weights, f"{owner}.loss_weights", 2, sum_to_one=True)
        self.loss_types = loss_types
        self.loss_weights = loss_weights
        self.teacher_student_loss = get_loss(loss_types[1], f"{owner}.loss_types[1]")
        self.teacher_outputs: torch.Tensor | None = None
        self._teacher_padding: TeacherOutputs | None = None

    # --- the design's methods ----------------------------------------------------------
    def teacher_model_forward(self, inputs: Any) -> torch.Tensor:
        """The teacher's logits for ``inputs`` (eval mode, no grad), kept as
        ``teacher_outputs``."""
        super().teacher_model_forward(inputs)
        return self.teacher_outputs

    def teacher_student_loss_cal(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """``T^2 * D(student_logits / T, teacher_logits / T)``, D = ``loss_types[1]``."""
        t = self.temperature
        return t * t * self.teacher_student_loss(student_logits / t, teacher_logits / t)

    def student_targets_loss_cal(self, student_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``loss_types[0]`` of the student's logits against the labels."""
        if targets is None:
            raise AutoKDError(
                f"{type(self).__name__}: loss_weights[0] = {self.loss_weights[0]:g} weighs the "
                f"student-vs-targets loss, but the batch has no labels; give labels or set loss_weights: [0, 1]"
            )
        return _targets_loss(self.loss_types[0], student_logits, targets, type(self).__name__)

    def loss_cal_sloss(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, student_loss: torch.Tensor | float
    ) -> torch.Tensor:
        """``w0 * student_loss + w1 * teacher_student_loss_cal(student, teacher)``."""
        w0, w1 = self.loss_weights
        loss = w0 * student_loss if w0 else student_logits.new_zeros(())
        if w1:
            if teacher_logits is None:
                raise AutoKDError("no teacher outputs: call teacher_model_forward(inputs) first")
            loss = loss + w1 * self.teacher_student_loss_cal(student_logits, teacher_logits)
        return loss

    def loss_cal(self, student_logits: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        """The whole loss against the labels and the teacher outputs kept by
        :meth:`teacher_model_forward`."""
        student_loss = self.student_targets_loss_cal(student_logits, targets) if self.loss_weights[0] else 0.0
        return self.loss_cal_sloss(student_logits, self.teacher_outputs, student_loss)

    # Plain names for the design's method names above (the same methods).
    distillation_loss = teacher_student_loss_cal
    targets_loss = student_targets_loss_cal
    combined_loss = loss_cal_sloss
    total_loss = loss_cal

    # --- the training loop's protocol --------------------------------------------------
    def set_teacher_outputs(self, outputs: TeacherOutputs) -> None:
        self.teacher_outputs = outputs.logits
        self._teacher_padding = outputs

    def compute_loss(self, student_outputs: Any, targets: Any) -> torch.Tensor:
        student_logits = logits_of(student_outputs)
        student_loss = self.student_targets_loss_cal(student_logits, targets) if self.loss_weights[0] else 0.0
        teacher_logits = self.teacher_outputs
        if teacher_logits is not None:
            # per-token logits: compared at the real tokens of a padded batch only (issue #20)
            student_logits, teacher_logits = real_pair(self._teacher_padding, LOGITS, student_logits, teacher_logits)
        return self.loss_cal_sloss(student_logits, teacher_logits, student_loss)


def normalize_layer_mappings(layer_mappings: Any, loss_types: Any = None, loss_weights: Any = None):
    """Flat ``(mappings, loss_types, loss_weights)``: :func:`autokd.distill.normalize_layer_mappings`."""
    owner = "IntermediateLayersKnowledgeDistillationLoss"
    return _normalize_layer_mappings(layer_mappings, loss_types, loss_weights, owner)


_DISTRIBUTION_LOSSES = DISTRIBUTION_LOSSES
_LOG_FLOOR = LOG_FLOOR


def _is_distribution(feature: torch.Tensor) -> bool:
    """Whether ``feature`` already holds probabilities over its last dimension: values in
    [0, 1], rows summing to 1 or all zero (the core's rule,
    :data:`autokd.distill.DISTRIBUTION_TOLERANCE`)."""
    with torch.no_grad():
        if not feature.is_floating_point() or feature.numel() == 0 or feature.min() < 0 or feature.max() > 1:
            return False
        sums = feature.sum(-1)
        ones = (sums - 1).abs() <= DISTRIBUTION_TOLERANCE
        return bool(ones.any() and (ones | (sums == 0)).all())


def _as_logits(feature: torch.Tensor) -> torch.Tensor:
    """Probabilities (attention maps) as log-probabilities, other features as they are.

    ``KL`` and ``CE`` apply a softmax to their inputs. The softmax of probabilities in
    [0, 1] is nearly uniform: between the attention maps of two differently initialised
    tiny BERTs (tests/torch/test_intermediate.py) it turns a KL of 0.497 into 0.0087,
    57 times less signal. Since
    ``softmax(log p) = p``, passing ``log p`` makes the loss compare the maps themselves.
    """
    if _is_distribution(feature):
        return torch.log(feature.clamp_min(_LOG_FLOOR))
    return feature


class IntermediateLayersKnowledgeDistillationLoss(DistillationCriterion):
    """Intermediate-layer distillation: ``sum_i w_i * loss_i(m_i(student_i), teacher_i)``
    (``+ the student's own loss`` with ``add_origin_loss``).

    :param layer_mappings: ``(student_layer, student_process, teacher_layer,
        teacher_process)`` or ``(student_layer, teacher_layer)`` items (or the flash
        config's grouped form). Layers are dotted module names (``''`` is the model);
        processes pick a tuple item (``'1'``), a dict / ``ModelOutput`` key, or (Python
        API) are callables.
    :param loss_types: one registered loss name per mapping (default ``MSE``).
    :param loss_weights: one weight per mapping (default equal weights summing to 1).
    :param add_origin_loss: add the student's own task loss.

    For ``KL`` and ``CE``, a feature that already is a probability distribution over its
    last dimension (non-negative, rows summing to 1: attention maps) is passed to the loss
    as ``log p``, so the loss's softmax gives back ``p`` and the loss compares the
    distributions themselves; other features are read as logits.

    Features are captured by forward hooks on the student (set when ``student_model`` is
    assigned). Where a student feature's last dimension differs from the teacher's, the
    feature matcher ``m_i`` is an ``nn.Linear(student_dim, teacher_dim)`` created when the
    shapes are first seen; it is part of :meth:`parameters` and trained with the student.
    ``matcher_initializer(mapping, linear)``, if set, initialises new matchers.

    On a padded batch every loss receives the per-token features at the real positions
    only (:func:`real_pair`, :mod:`autokd_torch.padding`): hidden states ``(N_real, D)``,
    attention maps ``(N_real, H, L_longest)`` (real query rows; keys past an example's
    end are zero on both sides and read as ``log`` of the floor, adding nothing to
    ``KL``), so a loss that averages over positions averages over the real ones.
    """

    needs_teacher_logits = False

    def __init__(
        self,
        layer_mappings: Any,
        loss_types: Sequence[str] | None = None,
        loss_weights: Sequence[float] | None = None,
        add_origin_loss: bool = False,
        student_model: nn.Module | None = None,
        teacher_model: nn.Module | None = None,
    ):
        self._capture: FeatureCapture | None = None
        mappings, types, weights = normalize_layer_mappings(layer_mappings, loss_types, loss_weights)
        self.layer_mappings: list[LayerMapping] = mappings
        self.layer_output_process = [(m.student_process, m.teacher_process) for m in mappings]
        self.loss_types = types
        self.loss_weights = weights
        self.add_origin_loss = bool(add_origin_loss)
        self.matcher_initializer: Callable[[LayerMapping, nn.Linear], None] | None = None
        super().__init__(None, teacher_model)
        self.feature_matchers = nn.ModuleDict()
        self.student_features: dict[FeatureSpec, torch.Tensor] = {}
        self.teacher_features: dict[FeatureSpec, torch.Tensor] = {}
        self._teacher_padding: TeacherOutputs | None = None
        self.loss_funcs = self.init_loss_funcs()
        self.student_model = student_model

    @staticmethod
    def _student_spec(m: LayerMapping) -> FeatureSpec:
        return (m.student_layer, m.student_process)

    @staticmethod
    def _teacher_spec(m: LayerMapping) -> FeatureSpec:
        return (m.teacher_layer, m.teacher_process)

    # --- the design's methods ----------------------------------------------------------
    def init_loss_funcs(self) -> list[Callable]:
        """The loss function of each mapping, from the loss registry."""
        owner = type(self).__name__
        return [get_loss(t, f"{owner}.loss_types[{i}]") for i, t in enumerate(self.loss_types)]

    def init_feature_matcher(self, student_feature: torch.Tensor, teacher_feature: torch.Tensor) -> nn.Linear:
        """A linear map from the student feature's last dimension to the teacher's."""
        return nn.Linear(student_feature.shape[-1], teacher_feature.shape[-1]).to(
            device=student_feature.device, dtype=student_feature.dtype
        )

    def teacher_model_forward(self, inputs: Any) -> dict[FeatureSpec, torch.Tensor]:
        """Run the teacher on ``inputs``; its processed features go to ``teacher_features``."""
        super().teacher_model_forward(inputs)
        return self.teacher_features

    def init_feature_matchers(self, inputs: Any) -> list[nn.Linear]:
        """Run teacher and student once on ``inputs`` (no grad) so the feature matchers
        exist before an optimizer is built over :meth:`parameters`. The built-in training
        does not need this: it adds matchers to its optimizer when they appear."""
        from .data import call_model, split_batch

        student_inputs, teacher_inputs, _ = split_batch(inputs)
        self.teacher_model_forward(teacher_inputs)
        with torch.no_grad():
            call_model(self.student_model, student_inputs, **self.student_forward_kwargs)
            for i, mapping in enumerate(self.layer_mappings):
                self._feature_pair(i, mapping)
        return list(self.feature_matchers.values())

    def loss_cal(self) -> torch.Tensor:
        """The weighted sum of the mappings' losses on the latest captured features."""
        total = None
        for i, (mapping, loss_fn, weight) in enumerate(
            zip(self.layer_mappings, self.loss_funcs, self.loss_weights, strict=True)
        ):
            student, teacher = self._feature_pair(i, mapping)
            student, teacher = real_pair(self._teacher_padding, self._teacher_spec(mapping), student, teacher)
            if self.loss_types[i] in _DISTRIBUTION_LOSSES:
                student, teacher = _as_logits(student), _as_logits(teacher)
            term = weight * loss_fn(student, teacher)
            total = term if total is None else total + term
        return total

    def loss_cal_sloss(self, student_outputs: Any, teacher_outputs: Any, student_loss: Any) -> torch.Tensor:
        """:meth:`loss_cal`, plus ``student_loss`` when ``add_origin_loss``."""
        loss = self.loss_cal()
        if self.add_origin_loss:
            loss = loss + student_loss
        return loss

    # Plain names for the design's method names above (the same methods).
    total_loss = loss_cal
    combined_loss = loss_cal_sloss

    # --- features ----------------------------------------------------------------------
    def _feature_pair(self, index: int, mapping: LayerMapping) -> tuple[torch.Tensor, torch.Tensor]:
        s_spec, t_spec = self._student_spec(mapping), self._teacher_spec(mapping)
        if s_spec not in self.student_features:
            raise AutoKDError(
                f"no student feature for {mapping.student_layer!r}: set student_model and run the student's "
                f"forward pass first (did that module run?)"
            )
        if t_spec not in self.teacher_features:
            raise AutoKDError(
                f"no teacher feature for {mapping.teacher_layer!r}: call teacher_model_forward(inputs) first"
            )
        student, teacher = self.student_features[s_spec], self.teacher_features[t_spec]
        if student.shape == teacher.shape:
            return student, teacher
        if student.shape[:-1] != teacher.shape[:-1]:
            raise AutoKDError(
                f"layer mapping {index} ({mapping.student_layer!r} -> {mapping.teacher_layer!r}): student feature "
                f"{tuple(student.shape)} and teacher feature {tuple(teacher.shape)} differ outside the last "
                f"dimension; a feature matcher maps only the last dimension (e.g. attention maps need as many "
                f"heads in the student as in the teacher)"
            )
        key = str(index)
        if key not in self.feature_matchers:
            matcher = self.init_feature_matcher(student, teacher)
            if self.matcher_initializer is not None:
                self.matcher_initializer(mapping, matcher)
            self.feature_matchers[key] = matcher
        return self.feature_matchers[key](student), teacher

    def teacher_feature_specs(self) -> list[FeatureSpec]:
        return list(dict.fromkeys(self._teacher_spec(m) for m in self.layer_mappings))

    def _on_student(self, model: nn.Module | None) -> None:
        self.detach()
        self.student_forward_kwargs = {}
        if model is None:
            return
        specs = [self._student_spec(m) for m in self.layer_mappings]
        self._capture = FeatureCapture(model, specs, "student")
        self.student_features = self._capture.features
        if uses_attention_maps(model, [layer for layer, _ in specs]):
            use_eager_attention(model, "student")
            self.student_forward_kwargs["output_attentions"] = True

    def detach(self) -> None:
        if self._capture is not None:
            self._capture.remove()
            self._capture = None

    def set_teacher_outputs(self, outputs: TeacherOutputs) -> None:
        self.teacher_features = dict(outputs.features)
        self._teacher_padding = outputs

    def compute_loss(self, student_outputs: Any, targets: Any) -> torch.Tensor:
        origin = origin_loss(student_outputs, targets, type(self).__name__) if self.add_origin_loss else None
        return self.loss_cal_sloss(student_outputs, None, origin)
