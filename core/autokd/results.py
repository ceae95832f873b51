"""Trial records, the append-only result store, the Pareto front and the best-arch rule.

``<output_dir>/trials.jsonl`` holds one JSON object per finished trial, flushed and
fsynced before the next trial starts; ``summary.json`` holds the Pareto front and the
best architecture. Nothing here unpickles: records are JSON.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from .advisor import Objective
from .config import Constraint

__all__ = ["TrialRecord", "ResultStore", "pareto_front", "select_best", "dominates"]

log = logging.getLogger("autokd")

TRIALS_FILE = "trials.jsonl"
SUMMARY_FILE = "summary.json"


@attrs.frozen
class TrialRecord:
    """One finished trial."""

    trial: int
    arch: dict
    metrics: dict = attrs.field(factory=dict)
    status: str = "ok"
    error: str | None = None
    duration_s: float = 0.0
    extras: dict = attrs.field(factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def values(self, objectives: Sequence[Objective]) -> tuple[float, ...] | None:
        """The objective values in order, or None for a failed or incomplete trial."""
        if not self.ok:
            return None
        out = []
        for obj in objectives:
            v = self.metrics.get(obj.name)
            if not _is_finite_number(v):
                return None
            out.append(float(v))
        return tuple(out)

    def to_json(self) -> dict:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrialRecord:
        fields = {f.name for f in attrs.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})


def _is_finite_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _json_default(value: Any) -> Any:
    # numpy / torch scalars and arrays, paths
    for attr in ("item", "tolist"):
        fn = getattr(value, attr, None)
        if callable(fn):
            try:
                return fn()
            except (TypeError, ValueError):
                continue
    return str(value)


def dominates(a: Sequence[float], b: Sequence[float], objectives: Sequence[Objective]) -> bool:
    """True when values ``a`` are no worse than ``b`` in every objective and better in one."""
    strictly = False
    for x, y, obj in zip(a, b, objectives, strict=True):
        if obj.better(y, x):
            return False
        if obj.better(x, y):
            strictly = True
    return strictly


def pareto_front(records: Iterable[TrialRecord], objectives: Sequence[Objective]) -> list[TrialRecord]:
    """The successful trials that no other successful trial dominates, in trial order.

    Trials with identical values are all kept."""
    scored = [(r, r.values(objectives)) for r in records]
    scored = [(r, v) for r, v in scored if v is not None]
    front = [r for r, v in scored if not any(dominates(w, v, objectives) for _, w in scored)]
    return sorted(front, key=lambda r: r.trial)


def select_best(
    records: Iterable[TrialRecord], objectives: Sequence[Objective], constraints: Sequence[Constraint] = ()
) -> tuple[TrialRecord | None, bool]:
    """The best trial and whether it meets the constraints.

    Rule: among successful trials that meet every constraint, the best value of the
    first metric; ties are broken by the following metrics in order, then by the earlier
    trial. Metrics of different scales are never summed. With constraints only on
    objective metrics, the chosen trial is on the Pareto front. If no trial meets the
    constraints, the same rule picks among all successful trials and the second value is
    False.
    """
    scored = [(r, r.values(objectives)) for r in records]
    scored = [(r, v) for r, v in scored if v is not None]
    if not scored:
        return None, False

    def sort_key(item):
        record, values = item
        return tuple(-v if o.higher_is_better else v for v, o in zip(values, objectives, strict=True)) + (record.trial,)

    feasible = [(r, v) for r, v in scored if all(c.holds(r.metrics) for c in constraints)]
    if feasible:
        return min(feasible, key=sort_key)[0], True
    return min(scored, key=sort_key)[0], False


class ResultStore:
    """``trials.jsonl`` and ``summary.json`` under an output directory."""

    def __init__(self, output_dir: str | os.PathLike):
        self.output_dir = os.fspath(output_dir)
        self.trials_path = os.path.join(self.output_dir, TRIALS_FILE)
        self.summary_path = os.path.join(self.output_dir, SUMMARY_FILE)

    def exists(self) -> bool:
        return os.path.exists(self.trials_path) and os.path.getsize(self.trials_path) > 0

    def load(self) -> list[TrialRecord]:
        """Every recorded trial. A last line cut off by a crash is dropped (that trial
        runs again); any other unreadable line is an error."""
        if not os.path.exists(self.trials_path):
            return []
        with open(self.trials_path, encoding="utf-8") as fh:
            lines = fh.read().split("\n")
        records = []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                records.append(TrialRecord.from_json(json.loads(line)))
            except (json.JSONDecodeError, TypeError) as exc:
                if i == len(lines) - 1:
                    log.warning("%s: dropping a last line cut off mid-write; that trial runs again", self.trials_path)
                    self._truncate_to(lines[:i])
                    break
                raise ValueError(f"{self.trials_path}:{i + 1}: not a trial record: {exc}") from None
        return records

    def _truncate_to(self, lines: list[str]) -> None:
        with open(self.trials_path, "w", encoding="utf-8") as fh:
            fh.write("".join(line + "\n" for line in lines if line.strip()))
            fh.flush()
            os.fsync(fh.fileno())

    def append(self, record: TrialRecord) -> None:
        os.makedirs(self.output_dir, exist_ok=True)
        line = json.dumps(record.to_json(), default=_json_default, allow_nan=True)
        with open(self.trials_path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        os.makedirs(self.output_dir, exist_ok=True)
        tmp = self.summary_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=2, default=_json_default)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.summary_path)

    def read_summary(self) -> dict | None:
        if not os.path.exists(self.summary_path):
            return None
        with open(self.summary_path, encoding="utf-8") as fh:
            return json.load(fh)
