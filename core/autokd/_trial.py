"""The running trial's context: builders, train and eval functions may read which trial
runs (``autokd.current_trial()``: its candidate, budget, checkpoint directory) and add
facts (e.g. how the student was initialised) that end up in the trial's ``extras``."""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from typing import Any

import attrs

_current: contextvars.ContextVar[dict | None] = contextvars.ContextVar("autokd_trial_extras", default=None)
_context: contextvars.ContextVar[TrialContext | None] = contextvars.ContextVar("autokd_trial_context", default=None)


@attrs.frozen
class TrialContext:
    """What a train function may want to know about the evaluation it runs.

    :ivar trial: the record's trial number.
    :ivar candidate: the architecture's candidate number.
    :ivar budget: what ``train_func`` is told to train now (None without fidelity).
    :ivar done: the fraction of the full budget the model already holds (0 for a model
        built for this evaluation, even on a rung above the first: see
        :class:`autokd.runner.TrialRunner`).
    :ivar rung: the multi-fidelity rung (None without fidelity).
    :ivar phase: ``"search"`` or ``"final"``.
    :ivar checkpoint_dir: a directory (not created) where the train function may keep
        this candidate's checkpoints; autokd deletes it when the candidate is dropped.
    """

    trial: int
    candidate: int
    budget: float | Sequence[float] | None
    done: float
    rung: int | None
    phase: str
    checkpoint_dir: str | None


def record_extra(key: str, value: Any) -> None:
    """Record ``key: value`` in the running trial's ``extras`` (no-op outside a trial)."""
    extras = _current.get()
    if extras is not None:
        extras[key] = value


def current_extras() -> dict | None:
    return _current.get()


def current_trial() -> TrialContext | None:
    """The running evaluation's :class:`TrialContext`, or None outside a trial."""
    return _context.get()
