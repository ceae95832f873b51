"""What :func:`~autokd_torch.init_from_teacher.initialize_from_teacher` reports: the width
basis it used, where each student layer came from, what it initialised and what it could
not (docs/init_from_teacher.md has the rules)."""

from __future__ import annotations

from typing import Any

import attrs
import torch

from autokd.init_basis import InitError

__all__ = ["HiddenStateGram", "InitFromTeacherError", "InitReport", "LayerInit", "WidthBasis"]

# The core's error (autokd.init_basis): the student cannot be (fully) initialised from the
# teacher, or an argument is invalid; one class for the maths and the torch glue.
InitFromTeacherError = InitError


@attrs.frozen
class HiddenStateGram:
    """``X^T X`` over every hidden state of a teacher on some data (padding excluded), from
    :func:`hidden_state_gram`. Pass it as ``data=`` to build many students' hidden-state
    bases from one teacher pass instead of one per student (same teacher only)."""

    gram: torch.Tensor = attrs.field(repr=False, eq=False)  # float64, teacher_dim x teacher_dim
    n_states: int  # layer outputs per token (embeddings included)
    n_tokens: int
    source: str = "data"  # what the states were computed on


@attrs.frozen
class WidthBasis:
    """An orthonormal basis ``projection`` (``teacher_dim x student_dim``) of the teacher's
    hidden space: a teacher hidden vector ``x`` is ``projection.T @ x`` in the student."""

    projection: torch.Tensor = attrs.field(repr=False, eq=False)
    kind: str  # 'identity' | 'pca_embeddings' | 'pca_hidden' | 'slice'
    source: str  # what the basis was computed from
    explained_variance: float  # fraction of the basis data's energy kept by the basis
    embedding_explained_variance: float  # the same, of the teacher's word embeddings
    layer_norm_scale: float  # s in gamma -> s * diag(P^T diag(gamma) P)

    @property
    def teacher_dim(self) -> int:
        return int(self.projection.shape[0])

    @property
    def student_dim(self) -> int:
        return int(self.projection.shape[1])


@attrs.frozen
class LayerInit:
    """Where student layer ``student_layer`` came from."""

    student_layer: int
    teacher_layer: int
    teacher_heads: tuple[int | None, ...]  # teacher head of each student head (None: a new head)
    head_scores: tuple[float, ...]  # importance of each teacher head
    teacher_neurons: tuple[int | None, ...]  # teacher neuron of each student neuron

    def to_dict(self) -> dict[str, Any]:
        return {
            "student_layer": self.student_layer,
            "teacher_layer": self.teacher_layer,
            "teacher_heads": list(self.teacher_heads),
            "head_scores": [round(s, 6) for s in self.head_scores],
            "teacher_neurons": list(self.teacher_neurons),
        }


@attrs.frozen
class InitReport:
    """What :func:`initialize_from_teacher` initialised from what, and what it could not."""

    student: str
    teacher: str
    layer_rule: str  # 'uniform' | 'explicit' | 'none'
    teacher_layers: tuple[int, ...]  # teacher layer of each student layer
    width: str  # basis kind: 'identity' | 'pca_embeddings' | 'pca_hidden' | 'slice' | 'none'
    teacher_hidden: int
    student_hidden: int
    basis_source: str
    explained_variance: float | None
    embedding_explained_variance: float | None
    layer_norm_scale: float | None
    head_score: str
    neuron_score: str
    head_dim: str  # how heads were mapped: 'sliced', 'projected 32 -> 16', 'padded 16 -> 32'
    layers: tuple[LayerInit, ...]
    initialised: tuple[tuple[str, str], ...]  # (student parameter, its source)
    not_initialised: tuple[tuple[str, str], ...]  # (student parameter, why not)
    notes: tuple[str, ...]
    basis: torch.Tensor | None = attrs.field(default=None, repr=False, eq=False)

    @property
    def complete(self) -> bool:
        """Whether every parameter of the student was initialised from the teacher."""
        return not self.not_initialised

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary (the basis itself is left out)."""
        missing: dict[str, list[str]] = {}
        for name, reason in self.not_initialised:
            missing.setdefault(reason, []).append(name)

        def _float(value: float | None) -> float | None:
            return None if value is None else round(float(value), 6)

        return {
            "student": self.student,
            "teacher": self.teacher,
            "layers": {"rule": self.layer_rule, "teacher_layers": list(self.teacher_layers)},
            "width": {
                "kind": self.width,
                "teacher_hidden": self.teacher_hidden,
                "student_hidden": self.student_hidden,
                "basis_source": self.basis_source,
                "explained_variance": _float(self.explained_variance),
                "embedding_explained_variance": _float(self.embedding_explained_variance),
                "layer_norm_scale": _float(self.layer_norm_scale),
            },
            "heads": {"score": self.head_score, "head_dim": self.head_dim},
            "neurons": {"score": self.neuron_score},
            "per_layer": [layer.to_dict() for layer in self.layers],
            "initialised": dict(self.initialised),
            "not_initialised": [{"reason": r, "parameters": names} for r, names in missing.items()],
            "notes": list(self.notes),
        }
