"""The one place where the teacher's outputs for a batch are computed.

Every built-in training path (flash and regular stages, :class:`Distillation`,
``Trainer.autodistillation``) asks a :class:`TeacherForward` for the teacher's logits and
the processed intermediate features of a batch, passing the dataset indices of the
batch's examples. The frozen teacher's outputs depend only on the example, so a cache
keyed by those indices can stand in for it (issue #8) without touching the criteria:
what comes out is already processed by each mapping's ``teacher_process``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import torch
from torch import nn

from autokd import AutoKDError

from .data import call_model, logits_of
from .features import FeatureCapture, FeatureSpec, uses_attention_maps

__all__ = ["TeacherOutputs", "TeacherForward", "use_eager_attention"]

log = logging.getLogger("autokd.torch")


@attrs.frozen
class TeacherOutputs:
    """The teacher's logits and processed features (keyed by ``(layer, process)``) for
    one batch, in batch order."""

    logits: torch.Tensor | None
    features: Mapping[FeatureSpec, torch.Tensor] = attrs.field(factory=dict)


def use_eager_attention(model: nn.Module, role: str) -> None:
    """Switch a Hugging Face model to eager attention where it can be: sdpa returns no
    attention maps. (transformers 4 models that cannot switch fall back to eager by
    themselves when called with ``output_attentions=True``.)"""
    config = getattr(model, "config", None)
    current = getattr(config, "_attn_implementation", None)
    if current in (None, "eager") or not hasattr(model, "set_attn_implementation"):
        return
    with _quiet_transformers():
        try:
            model.set_attn_implementation("eager")
        except (ValueError, NotImplementedError):
            return
    if getattr(model.config, "_attn_implementation", None) == "eager":
        log.info("switched the %s from %s to eager attention: its attention maps are distilled", role, current)


class _quiet_transformers:
    """Silence transformers' warning that a model cannot switch attention at run time."""

    def __enter__(self):
        import transformers

        self._logger = transformers.logging.get_logger("transformers.modeling_utils")
        self._level = self._logger.level
        self._logger.setLevel("ERROR")

    def __exit__(self, *exc):
        self._logger.setLevel(self._level)


class TeacherForward:
    """Runs the frozen teacher (eval mode, no grad) and returns :class:`TeacherOutputs`.

    :param teacher_model: the teacher.
    :param feature_specs: every ``(teacher_layer, teacher_process)`` pair the configured
        layer mappings need (all stages of a search).
    """

    def __init__(self, teacher_model: nn.Module, feature_specs: Iterable[FeatureSpec] = ()):
        if teacher_model is None:
            raise AutoKDError("no teacher model: set teacher_model before distilling")
        self.teacher_model = teacher_model
        self.feature_specs: list[FeatureSpec] = list(dict.fromkeys(feature_specs))
        self._attention_specs = {spec for spec in self.feature_specs if uses_attention_maps(teacher_model, [spec[0]])}
        if self._attention_specs:
            use_eager_attention(teacher_model, "teacher")

    def __call__(
        self, inputs: Any, indices: torch.Tensor | None = None, features: Iterable[FeatureSpec] | None = None
    ) -> TeacherOutputs:
        """The teacher's outputs for ``inputs`` (a batch without labels).

        :param indices: the dataset indices of the batch's examples (None when the data
            carries none).
        :param features: the specs this step needs (default: all ``feature_specs``); a
            flash stage asks only for its own block's features.
        """
        specs = self.feature_specs if features is None else list(dict.fromkeys(features))
        unknown = [s for s in specs if s not in self.feature_specs]
        if unknown:
            raise AutoKDError(f"the teacher was not set up for the features {unknown}")
        kwargs = {"output_attentions": True} if self._attention_specs.intersection(specs) else {}
        teacher = self.teacher_model
        if teacher.training:
            teacher.eval()
        with torch.no_grad(), FeatureCapture(teacher, specs, "teacher", detach=True) as capture:
            outputs = call_model(teacher, inputs, **kwargs)
        missing = capture.missing()
        if missing:
            raise AutoKDError(
                f"the teacher's modules {[layer for layer, _ in missing]} did not run in its forward pass: "
                f"map layers that the forward pass uses"
            )
        return TeacherOutputs(logits_of(outputs).detach(), dict(capture.features))
