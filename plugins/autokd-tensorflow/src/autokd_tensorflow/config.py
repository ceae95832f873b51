"""The config objects of ``TFOptimization.autodistill``.

They hold what the design's TensorFlow example passes and map onto the core's document
layout with ``to_autokd_config()``, so :func:`autokd.load_config` validates them like a
YAML file (every problem at once, each with its path)::

    AutoDistillationConfig(
        search_space={'hidden_size': [120, 240], 'intermediate_size': [256, 512]},
        search_algorithm='BO', max_trials=10,
        metrics=[metrics.Metric(name="eval_loss", greater_is_better=False)],
        knowledge_transfer=TFDistillationConfig(train_steps=[3], loss_types=['CE', 'CE'],
                                                loss_weights=[0.5, 0.5], temperature=1.0),
        regular_distillation=TFDistillationConfig(...),
    )

``knowledge_transfer`` is the flash-distillation section, ``regular_distillation`` the
regular one. A :class:`TFDistillationConfig` without ``layer_mappings`` is an output
distillation stage: ``loss_types`` = [student-vs-targets, student-vs-teacher].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from autokd import ConfigError, known_direction

from .metrics import Metric

__all__ = ["AutoDistillationConfig", "TFDistillationConfig"]


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@attrs.define
class TFDistillationConfig:
    """One distillation section (flash or regular).

    :param train_steps: optimizer steps, one per stage (``[3]``).
    :param loss_types: output distillation: ``[student_vs_targets, student_vs_teacher]``;
        with ``layer_mappings``: one loss name per mapping (per stage).
    :param loss_weights: one weight per loss type; output distillation weights sum to 1.
    :param temperature: softening temperature of output distillation.
    :param layer_mappings: intermediate-layer mappings
        (``layer_mappings_for_knowledge_transfer``): feature pairs, one list per stage.
    :param block_names: per stage, the student block trained in that stage.
    :param add_origin_loss: add the student's own loss against the labels.
    """

    train_steps: int | Sequence[int] | None = None
    loss_types: Sequence | None = None
    loss_weights: Sequence | None = None
    temperature: float | Sequence[float] = 1.0
    layer_mappings: Sequence | None = None
    block_names: Sequence[str] | None = None
    add_origin_loss: bool | Sequence[bool] | None = None

    def to_autokd_config(self) -> dict:
        """The section in the core's ``flash_distillation`` / ``regular_distillation``
        layout."""
        section = {
            "train_steps": self.train_steps,
            "loss_types": self.loss_types,
            "loss_weights": self.loss_weights,
            "temperature": self.temperature,
            "layer_mappings_for_knowledge_transfer": self.layer_mappings,
            "block_names": self.block_names,
            "add_origin_loss": self.add_origin_loss,
        }
        return {key: _plain(value) for key, value in section.items() if value is not None}


def _section(value: Any, name: str) -> dict | None:
    if value is None:
        return None
    if hasattr(value, "to_autokd_config"):
        return value.to_autokd_config()
    if isinstance(value, Mapping):
        return dict(value)
    raise ConfigError(f"{name}: expected a TFDistillationConfig or a dict, got {type(value).__name__}")


@attrs.define
class AutoDistillationConfig:
    """The search and the distillation of each candidate.

    :param search_space: ``{parameter: [choices]}``.
    :param search_algorithm: a registered advisor (``'BO'``, ``'random'``, ``'grid'``...).
    :param max_trials: number of trials.
    :param seed: seed of the advisor's randomness.
    :param metrics: :class:`~autokd_tensorflow.metrics.Metric` objects or metric names;
        the first is the one ``best_model_arch`` is best at.
    :param knowledge_transfer: the flash-distillation section.
    :param regular_distillation: the regular-distillation section.
    :param constraints: e.g. ``['latency <= 5']``.
    :param advisor_options: options of the advisor.
    """

    search_space: Mapping[str, Sequence]
    search_algorithm: str = "BO"
    max_trials: int = 10
    seed: int | None = None
    metrics: Sequence[Metric | str] = attrs.field(factory=lambda: [Metric("eval_loss", greater_is_better=False)])
    knowledge_transfer: TFDistillationConfig | Mapping | None = None
    regular_distillation: TFDistillationConfig | Mapping | None = None
    constraints: Sequence[str] = ()
    advisor_options: Mapping = attrs.field(factory=dict)

    def _metric_fields(self) -> tuple[list[str], list[bool] | None]:
        metrics = [m if isinstance(m, Metric) else Metric(m) if isinstance(m, str) else m for m in self.metrics]
        for i, m in enumerate(metrics):
            if not isinstance(m, Metric):
                raise ConfigError(
                    f"metrics[{i}]: expected metrics.Metric(name, greater_is_better) or a name, got {m!r}"
                )
        names = [m.name for m in metrics]
        if all(m.greater_is_better is None for m in metrics):
            return names, None  # the core resolves known directions and reports unknown ones
        directions = []
        for i, m in enumerate(metrics):
            direction = m.greater_is_better if m.greater_is_better is not None else known_direction(m.name)
            if direction is None:
                raise ConfigError(
                    f"metrics[{i}]: the direction of {m.name!r} is not known: "
                    f"metrics.Metric(name={m.name!r}, greater_is_better=True or False)"
                )
            directions.append(bool(direction))
        return names, directions

    def to_autokd_config(self) -> dict:
        """The whole document in the core's layout (``model.framework: tensorflow``)."""
        names, directions = self._metric_fields()
        search: dict[str, Any] = {
            "search_space": {
                k: _plain(list(v)) if isinstance(v, Sequence) and not isinstance(v, str) else v
                for k, v in dict(self.search_space).items()
            },
            "search_algorithm": self.search_algorithm,
            "max_trials": self.max_trials,
            "seed": self.seed,
            "metrics": names,
        }
        if directions is not None:
            search["higher_is_better"] = directions
        if self.constraints:
            search["constraints"] = list(self.constraints)
        if self.advisor_options:
            search["advisor_options"] = dict(self.advisor_options)
        auto: dict[str, Any] = {"search": search}
        flash = _section(self.knowledge_transfer, "knowledge_transfer")
        regular = _section(self.regular_distillation, "regular_distillation")
        if flash is not None:
            auto["flash_distillation"] = flash
        if regular is not None:
            auto["regular_distillation"] = regular
        return {"model": {"framework": "tensorflow"}, "auto_distillation": auto}
