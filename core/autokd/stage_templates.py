"""Per-layer stage templates: a flash stage whose names contain ``{i}`` (a student layer)
and ``{t}`` (the teacher layer that student layer is initialised from and distilled
against) stands for one stage per layer of each student. The one home of that rule:
which stages are templates, what a template may say (checked at config load), how it is
expanded for a student, how a per-stage budget follows the expansion, and which
attention-map mappings are dropped when the student's head count differs from the
teacher's. Backends call these (re-exported by :mod:`autokd.distill`); nothing here
imports torch or TensorFlow.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import attrs

from .config.schema import LayerMapping, Stage

__all__ = [
    "PLACEHOLDERS",
    "drop_attention_maps",
    "expand_stage_budget",
    "expand_for_student",
    "expand_stage_templates",
    "has_templates",
    "is_template",
    "template_problems",
    "template_teacher_layers",
]

#: placeholder -> what it stands for
PLACEHOLDERS = {"i": "the student layer", "t": "the teacher layer of student layer {i}"}
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def _names(stage: Stage) -> list[str]:
    names = [stage.block_name or ""]
    for m in stage.layer_mappings:
        names += [m.student_layer, m.teacher_layer]
    return names


def is_template(stage: Stage) -> bool:
    """Whether ``stage``'s block name or a mapping's layer name holds a ``{...}`` placeholder."""
    return any(_PLACEHOLDER.search(name) for name in _names(stage))


def has_templates(stages: Sequence[Stage]) -> bool:
    return any(is_template(s) for s in stages)


def template_problems(stages: Sequence[Stage], path: str, flash: bool) -> list[str]:
    """What is wrong with the templates among ``stages`` (``path``: their config section;
    ``flash``: whether they are flash stages), as ``path: message`` lines.

    Rules: only flash stages are templates (a regular stage trains the whole student at
    once); the placeholders are ``{i}`` and ``{t}``; a template's ``block_names`` entry
    holds ``{i}`` (each expanded stage trains its own student layer); ``{i}`` appears only
    in student names (block, ``student_layer``) and ``{t}`` only in ``teacher_layer``.
    A template may sit among other flash stages: it expands in place."""
    problems: list[str] = []
    for n, stage in enumerate(stages):
        where = f"[{n}]" if len(stages) > 1 else ""
        if not is_template(stage):
            continue
        if not flash:
            problems.append(
                f"{path}.layer_mappings_for_knowledge_transfer{where}: {{i}}/{{t}} stage templates are "
                f"flash stages only (a regular stage trains the whole student at once); write the layer "
                f"names out, or move the stage to flash_distillation"
            )
            continue
        fields = [("block_names", stage.block_name or "", ("i",))]
        for k, m in enumerate(stage.layer_mappings):
            field = f"layer_mappings_for_knowledge_transfer{where}[{k}]"
            fields += [(field, m.student_layer, ("i",)), (field, m.teacher_layer, ("t",))]
        for field, name, allowed in fields:
            fpath = f"{path}.{field}" + (where if field == "block_names" else "")
            for found in _PLACEHOLDER.findall(name):
                if found not in PLACEHOLDERS:
                    problems.append(
                        f"{fpath}: unknown placeholder {{{found}}} in {name!r}; stage templates know "
                        f"{{i}} (the student layer) and {{t}} (its teacher layer)"
                    )
                elif found not in allowed:
                    what = "student" if found == "i" else "teacher"
                    problems.append(
                        f"{fpath}: {{{found}}} in {name!r} names a {what} layer, here a "
                        f"{'teacher' if what == 'student' else 'student'} module is named; use "
                        f"{{{allowed[0]}}}"
                    )
        if "{i}" not in (stage.block_name or ""):
            problems.append(
                f"{path}.block_names{where}: a stage template trains one student layer per stage, so its "
                f"block name needs {{i}}, e.g. 'bert.encoder.layer.{{i}}' (got {stage.block_name!r})"
            )
    return problems


def _fill(text: str, i: int, t: int) -> str:
    return text.replace("{i}", str(i)).replace("{t}", str(t))


def expand_stage_templates(stages: Sequence[Stage], teacher_layers: Sequence[int]) -> list[Stage]:
    """``stages`` with every template replaced, in place, by one stage per student layer:
    stage ``i`` has ``{i}`` -> ``i`` and ``{t}`` -> ``teacher_layers[i]`` (student layer
    ``i``'s teacher layer) and the template's loss types, weights, steps and temperature.
    Other stages are kept as they are."""
    out: list[Stage] = []
    for stage in stages:
        if not is_template(stage):
            out.append(stage)
            continue
        for i, t in enumerate(teacher_layers):
            out.append(
                attrs.evolve(
                    stage,
                    block_name=None if stage.block_name is None else _fill(stage.block_name, i, t),
                    layer_mappings=tuple(
                        attrs.evolve(
                            m, student_layer=_fill(m.student_layer, i, t), teacher_layer=_fill(m.teacher_layer, i, t)
                        )
                        for m in stage.layer_mappings
                    ),
                )
            )
    return out


def template_teacher_layers(student_layers: int, teacher_layers: int) -> list[int]:
    """The teacher layer of each student layer: the uniform choice that
    ``init_from_teacher(layers='uniform')`` copies the student's layers from, so
    distillation pairs the layers the student was initialised from."""
    from .init_basis import select_teacher_layers

    return select_teacher_layers(student_layers, teacher_layers, "uniform")


def expand_stage_budget(
    budget: float | Sequence[float], stages: Sequence[Stage], student_layers: int
) -> float | list[float]:
    """A train function's ``budget`` for the expanded stages: one fraction stays one; a
    list with one fraction per configured stage (flash, then regular) gives each
    template's fraction to every stage it expands into."""
    if isinstance(budget, int | float) and not isinstance(budget, bool):
        return float(budget)
    fractions = [float(b) for b in budget]
    if len(fractions) != len(stages):
        raise ValueError(f"budget has {len(fractions)} fractions for {len(stages)} configured stages")
    out: list[float] = []
    for fraction, stage in zip(fractions, stages, strict=True):
        out += [fraction] * (student_layers if is_template(stage) else 1)
    return out


def _is_attention_map(mapping: LayerMapping) -> bool:
    return mapping.student_process == "1" and "attention" in mapping.student_layer


def drop_attention_maps(
    stages: Sequence[Stage], student_heads: int | None, teacher_heads: int | None
) -> tuple[list[Stage], dict[str, Any] | None]:
    """Attention maps (process ``'1'`` of an attention module: ``(batch, heads, seq,
    seq)``) only match between models with the same number of heads. With different head
    counts, those mappings (and their loss types and weights) are dropped from stages that
    keep another mapping; returns the stages and, if any were dropped, ``{"reason",
    "layers"}`` for the trial's extras (``attention_maps_not_distilled``)."""
    if student_heads is None or teacher_heads is None or student_heads == teacher_heads:
        return list(stages), None
    out, dropped = [], []
    for stage in stages:
        keep = [k for k, m in enumerate(stage.layer_mappings) if not _is_attention_map(m)]
        if len(keep) in (0, len(stage.layer_mappings)):
            out.append(stage)
            continue
        dropped += [m.student_layer for k, m in enumerate(stage.layer_mappings) if k not in keep]
        out.append(
            attrs.evolve(
                stage,
                layer_mappings=tuple(stage.layer_mappings[k] for k in keep),
                loss_types=tuple(stage.loss_types[k] for k in keep),
                loss_weights=tuple(stage.loss_weights[k] for k in keep),
            )
        )
    if not dropped:
        return out, None
    return out, {"reason": f"student has {student_heads} heads, teacher {teacher_heads}", "layers": dropped}


def expand_for_student(
    stages: Sequence[Stage],
    student_layers: int,
    teacher_layers: int,
    student_heads: int | None = None,
    teacher_heads: int | None = None,
) -> tuple[list[Stage], dict[str, Any]]:
    """The flash ``stages`` of one student (``student_layers`` layers of
    ``student_heads`` heads; the teacher's ``teacher_layers`` of ``teacher_heads``): each
    template expanded against :func:`template_teacher_layers`, its attention maps dropped
    where the head counts differ (:func:`drop_attention_maps`). Also returns what the trial
    records in its extras: ``teacher_layers`` and, if any were dropped,
    ``attention_maps_not_distilled``; nothing without templates."""
    if not has_templates(stages):
        return list(stages), {}
    layers = template_teacher_layers(student_layers, teacher_layers)
    out: list[Stage] = []
    dropped: list[str] = []
    reason = None
    for stage in stages:
        if not is_template(stage):
            out.append(stage)
            continue
        kept, drop = drop_attention_maps(expand_stage_templates([stage], layers), student_heads, teacher_heads)
        out += kept
        if drop is not None:
            dropped += drop["layers"]
            reason = drop["reason"]
    extras: dict[str, Any] = {"teacher_layers": layers}
    if dropped:
        extras["attention_maps_not_distilled"] = {"reason": reason, "layers": dropped}
    return out, extras
