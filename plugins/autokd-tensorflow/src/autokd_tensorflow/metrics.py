"""``metrics.Metric``: a metric of the search and its direction, as in
``metrics=[metrics.Metric(name="eval_loss", greater_is_better=False)]``."""

from __future__ import annotations

import attrs

__all__ = ["Metric"]


@attrs.define
class Metric:
    """A metric to optimise.

    :param name: a key of what the eval function returns (``eval_loss``, ``accuracy``) or
        a registered evaluator (``latency``).
    :param greater_is_better: the direction; None takes the metric's known direction
        (``eval_loss`` lower, ``accuracy`` higher).
    """

    name: str
    greater_is_better: bool | None = None

    def to_autokd_config(self) -> dict:
        return {"name": self.name, "higher_is_better": self.greater_is_better}
