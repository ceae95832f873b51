"""The plan of :func:`~autokd_torch.init_from_teacher.initialize_from_teacher`: the
student's new parameter values (numpy, float64), computed in full before any is written,
where each came from and why any could not be; the basis applied to the teacher's
parameters; and the message of a strict failure."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from autokd import AutoKDError
from autokd.init_basis import Projector

from .init_report import WidthBasis
from .teacher_basis import core_basis, describe

__all__ = ["Plan", "PlanProjector", "TeacherTensors", "strict_message"]


class Plan:
    """New values for the student's parameters, computed in full before any is written so that a
    strict failure leaves the student untouched; every parameter ends up in ``values`` or
    ``missing``."""

    def __init__(self, student: nn.Module):
        self.params: dict[str, nn.Parameter] = dict(student.named_parameters())
        self.values: dict[str, np.ndarray] = {}
        self.sources: dict[str, str] = {}
        self.missing: dict[str, str] = {}

    def current(self, name: str) -> np.ndarray:
        return self.params[name].detach().to("cpu", torch.float64).numpy().copy()

    def set(self, name: str, value: np.ndarray, source: str) -> None:
        param = self.params[name]
        if tuple(value.shape) != tuple(param.shape):  # a mapping bug, not bad input
            raise AutoKDError(
                f"init_from_teacher computed a {tuple(value.shape)} value for {name} of shape "
                f"{tuple(param.shape)}; please report this with both models' configs"
            )
        self.values[name] = value
        self.sources[name] = source

    def cannot(self, name: str, reason: str) -> None:
        self.missing[name] = reason

    def cover_rest(self, reason: str) -> None:
        for name in self.params:
            if name not in self.values and name not in self.missing:
                self.missing[name] = reason

    def apply(self) -> None:
        for name, value in self.values.items():
            param = self.params[name]
            param.copy_(torch.from_numpy(value).to(device=param.device, dtype=param.dtype))


def strict_message(plan: Plan, student, teacher) -> str:
    by_reason: dict[str, list[str]] = {}
    for name, reason in plan.missing.items():
        by_reason.setdefault(reason, []).append(name)
    lines = [f"cannot fully initialise the student {describe(student)} from the teacher {describe(teacher)}."]
    if plan.values:
        lines.append(
            f"Can initialise {len(plan.values)} of {len(plan.params)} parameters, e.g. "
            + ", ".join(_patterns(list(plan.values))[:6])
            + "."
        )
    else:
        lines.append("Can initialise nothing.")
    lines.append("Cannot initialise:")
    for reason, names in by_reason.items():
        lines.append(f"  - {', '.join(_patterns(names))}: {reason}")
    lines.append(
        "Pass strict=False to initialise what can be and leave the rest at the student's own "
        "initialisation (listed in the report's not_initialised)."
    )
    return "\n".join(lines)


class PlanProjector(Projector):
    """The core's projector (:class:`autokd.init_basis.Projector`) on the reported basis,
    and how the report names what it made."""

    def __init__(self, basis: WidthBasis):
        super().__init__(core_basis(basis))

    def describe(self, teacher_name: str, *, left: bool = False, right: bool = False, layer_norm: bool = False) -> str:
        if self.identity:
            return teacher_name
        if layer_norm:
            return f"s * diag(P^T diag({teacher_name}) P)"
        return f"{'P^T @ ' if left else ''}{teacher_name}{' @ P' if right else ''}"


class TeacherTensors(Mapping):
    """Teacher parameters by dotted name (tied weights resolve through the module tree), as
    float64 numpy copies; a mapping, as the core's per-block functions read them."""

    def __init__(self, teacher: nn.Module):
        self.teacher = teacher

    def __call__(self, name: str) -> np.ndarray:
        module_name, _, leaf = name.rpartition(".")
        module = self.teacher.get_submodule(module_name) if module_name else self.teacher
        return getattr(module, leaf).detach().to("cpu", torch.float64).numpy()

    __getitem__ = __call__

    def __iter__(self):
        return (name for name, _ in self.teacher.named_parameters())

    def __len__(self) -> int:
        return sum(1 for _ in self.teacher.named_parameters())


def _patterns(names: Sequence[str]) -> list[str]:
    """Parameter names with layer numbers folded: 'encoder.layer.*.output.dense.weight'."""
    seen: dict[str, None] = {}
    for name in names:
        seen.setdefault(re.sub(r"\.(\d+)\.", ".*.", name), None)
    return list(seen)
