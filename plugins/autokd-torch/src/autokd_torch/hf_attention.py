"""Hugging Face helpers of the teacher and student models: switching a transformers model
to eager attention, which returns the attention maps that sdpa does not."""

from __future__ import annotations

import logging

from torch import nn

__all__ = ["quiet_transformers", "use_eager_attention"]

log = logging.getLogger("autokd.torch")


def use_eager_attention(model: nn.Module, role: str) -> None:
    """Switch a Hugging Face model to eager attention where it can be: sdpa returns no
    attention maps. (transformers 4 models that cannot switch fall back to eager by
    themselves when called with ``output_attentions=True``.)"""
    config = getattr(model, "config", None)
    current = getattr(config, "_attn_implementation", None)
    if current in (None, "eager") or not hasattr(model, "set_attn_implementation"):
        return
    with quiet_transformers():
        try:
            model.set_attn_implementation("eager")
        except (ValueError, NotImplementedError):
            return
    if getattr(model.config, "_attn_implementation", None) == "eager":
        log.info("switched the %s from %s to eager attention: its attention maps are distilled", role, current)


class quiet_transformers:
    """Silence transformers' warning that a model cannot switch attention at run time."""

    def __enter__(self):
        import transformers

        self._logger = transformers.logging.get_logger("transformers.modeling_utils")
        self._level = self._logger.level
        self._logger.setLevel("ERROR")

    def __exit__(self, *exc):
        self._logger.setLevel(self._level)
