"""Stages from a flash or regular distillation section of the config, whatever its
layout: the one home of that rule (re-exported as :func:`autokd.distill.normalize_stages`
beside the layer-mapping rules it uses)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..distill import is_single_mapping, loss_type_problems, loss_weight_problems
from .schema import DistillationStagesConfig, LayerMapping, Stage
from .structuring import type_hint, type_name

__all__ = ["normalize_stages"]


def _is_flat(values: Any) -> bool:
    return (
        isinstance(values, Sequence)
        and not isinstance(values, str)
        and all(not isinstance(v, list | tuple) for v in values)
    )


def _per_stage(value: Any, n: int, path: str, problems: list[str], what: str) -> list:
    """Broadcast a scalar to ``n`` stages, or check a list has ``n`` entries."""
    if isinstance(value, list | tuple):
        if len(value) != n:
            problems.append(f"{path}: {len(value)} values for {n} {what}")
            return [None] * n
        return list(value)
    return [value] * n


def normalize_stages(cfg: DistillationStagesConfig | None, path: str, problems: list[str]) -> list[Stage]:
    """The stages of a flash or regular distillation section (``DistillationStagesConfig``),
    whatever its layout: one stage per block name (or mapping group, or ``train_steps``
    entry), each with its layer mappings, loss types and weights, origin loss, steps and
    temperature. Every problem goes to ``problems`` as ``path: message``; the stages are
    returned with defaults where a value was bad, so one load reports all problems.

    A stage without layer mappings is output distillation: two loss types
    ``[student-vs-targets, student-vs-teacher]`` whose weights sum to 1."""
    if cfg is None:
        return []
    regular = path.endswith("regular_distillation")
    default_steps = 500

    groups: list[list] | None = None
    raw_maps = cfg.layer_mappings_for_knowledge_transfer
    if raw_maps is not None:
        if len(raw_maps) == 0:
            problems.append(f"{path}.layer_mappings_for_knowledge_transfer: empty list")
            raw_maps = None
        elif is_single_mapping(raw_maps[0]):
            groups = [list(raw_maps)]
        else:
            groups = [list(g) if isinstance(g, list | tuple) else g for g in raw_maps]

    if cfg.block_names is not None:
        n = len(cfg.block_names)
        if n == 0:
            problems.append(f"{path}.block_names: empty list")
            return []
        block_names: list[str | None] = list(cfg.block_names)
        what = "block_names"
    else:
        if groups is not None:
            n = len(groups)
            what = "mapping groups"
        elif isinstance(cfg.train_steps, list):
            n = max(len(cfg.train_steps), 1)
            what = "stages"
        else:
            n = 1
            what = "stages"
        block_names = [None] * n

    parsed_groups: list[tuple[LayerMapping, ...]] = [()] * n
    if groups is not None:
        if len(groups) != n:
            problems.append(
                f"{path}.layer_mappings_for_knowledge_transfer: {len(groups)} mapping groups for {n} {what}"
            )
        else:
            parsed_groups = []
            for i, group in enumerate(groups):
                if not isinstance(group, list) or not group:
                    problems.append(
                        f"{path}.layer_mappings_for_knowledge_transfer[{i}]: expected a non-empty list of mappings"
                    )
                    parsed_groups.append(())
                    continue
                maps = []
                for j, item in enumerate(group):
                    try:
                        maps.append(LayerMapping.parse(item))
                    except ValueError as exc:
                        problems.append(f"{path}.layer_mappings_for_knowledge_transfer[{i}][{j}]: {exc}")
                parsed_groups.append(tuple(maps))

    def per_stage_lists(values, field, default_for):
        """loss_types / loss_weights: a list per stage, or one flat list for all."""
        fpath = f"{path}.{field}"
        if values is None:
            return [default_for(i) for i in range(n)]
        if not isinstance(values, list | tuple):
            problems.append(f"{fpath}: expected a list, got {type_name(values)} {values!r}{type_hint(values)}")
            return [default_for(i) for i in range(n)]
        if _is_flat(values):
            if n == 1 or groups is None:
                return [list(values)] * n
            problems.append(f"{fpath}: expected one list per stage ({n} {what}), got a flat list {list(values)!r}")
            return [default_for(i) for i in range(n)]
        if len(values) != n:
            problems.append(f"{fpath}: {len(values)} lists for {n} {what}")
            return [default_for(i) for i in range(n)]
        return [list(v) if isinstance(v, list | tuple) else [v] for v in values]

    def default_types(i):
        return ["MSE"] * len(parsed_groups[i]) if groups is not None else ["CE", "CE"]

    loss_types = per_stage_lists(cfg.loss_types, "loss_types", default_types)

    def default_weights(i):
        k = len(loss_types[i]) or 1
        return [1.0 / k] * len(loss_types[i])

    loss_weights = per_stage_lists(cfg.loss_weights, "loss_weights", default_weights)

    for i in range(n):
        sp = f"[{i}]" if n > 1 or not _is_flat(cfg.loss_types or []) else ""
        output = groups is None
        count = len(parsed_groups[i]) if groups is not None and parsed_groups[i] else None
        type_problems = loss_type_problems(loss_types[i], f"{path}.loss_types{sp}", count, output)
        problems.extend(type_problems)
        weights_count = len(loss_types[i]) if not type_problems else None
        problems.extend(
            loss_weight_problems(loss_weights[i], f"{path}.loss_weights{sp}", weights_count, sum_to_one=output)
        )

    add_origin = _per_stage(
        cfg.add_origin_loss if cfg.add_origin_loss is not None else regular,
        n,
        f"{path}.add_origin_loss",
        problems,
        what,
    )
    steps = _per_stage(
        cfg.train_steps if cfg.train_steps is not None else default_steps, n, f"{path}.train_steps", problems, what
    )
    for i, s in enumerate(steps):
        if isinstance(s, int) and s <= 0:
            where = f"[{i}]" if isinstance(cfg.train_steps, list) else ""
            problems.append(f"{path}.train_steps{where}: must be a positive number of steps, got {s}")
    temps = _per_stage(cfg.temperature, n, f"{path}.temperature", problems, what)
    for t in temps:
        if isinstance(t, int | float) and not isinstance(t, bool) and not t > 0:
            problems.append(f"{path}.temperature: must be positive, got {t}")
            break
    for i, b in enumerate(block_names):
        if b is not None and not isinstance(b, str):
            problems.append(f"{path}.block_names[{i}]: expected a module name, got {b!r}")

    return [
        Stage(
            block_names[i],
            parsed_groups[i],
            tuple(loss_types[i]),
            tuple(float(w) for w in loss_weights[i] if isinstance(w, int | float)),
            bool(add_origin[i]),
            int(steps[i]) if isinstance(steps[i], int) else default_steps,
            float(temps[i]) if isinstance(temps[i], int | float) else 1.0,
        )
        for i in range(n)
    ]
