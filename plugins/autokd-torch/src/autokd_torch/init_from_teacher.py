"""Start a student transformer from its teacher's weights instead of random numbers (issue #9):
:func:`initialize_from_teacher` maps a BERT-like teacher (``config.model_type == 'bert'``:
``BertModel``, ``BertFor*``, MiniLM) onto a smaller BERT-like student, in place: layer
selection, one width basis for the residual stream, heads and feed-forward neurons kept by
weight norm; :func:`feature_matcher_init` starts the feature matchers of intermediate-layer
distillation from the same basis. The rules and their measurements: docs/init_from_teacher.md.

This module is the public entry point; the work is split by job: the report types
(:mod:`autokd_torch.init_report`), the width basis (:mod:`autokd_torch.teacher_basis`, on
the core's numpy maths :mod:`autokd.init_basis`) and the BERT plan
(:mod:`autokd_torch.bert_init`).
"""

from __future__ import annotations

from autokd.init_basis import SCORE_KINDS, WIDTH_KINDS, select_teacher_layers

from .bert_init import initialize_from_teacher
from .init_report import HiddenStateGram, InitFromTeacherError, InitReport, LayerInit, WidthBasis
from .teacher_basis import feature_matcher_init, hidden_state_gram, width_basis

__all__ = [
    "HEAD_SCORES",
    "NEURON_SCORES",
    "WIDTH_KINDS",
    "HiddenStateGram",
    "InitFromTeacherError",
    "InitReport",
    "LayerInit",
    "WidthBasis",
    "feature_matcher_init",
    "hidden_state_gram",
    "initialize_from_teacher",
    "select_teacher_layers",
    "width_basis",
]

HEAD_SCORES = SCORE_KINDS
NEURON_SCORES = SCORE_KINDS
