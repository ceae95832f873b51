"""The running trial's side record: builders, train and eval functions may add facts
(e.g. how the student was initialised) that end up in the trial's ``extras``."""

from __future__ import annotations

import contextvars
from typing import Any

_current: contextvars.ContextVar[dict | None] = contextvars.ContextVar("autokd_trial_extras", default=None)


def record_extra(key: str, value: Any) -> None:
    """Record ``key: value`` in the running trial's ``extras`` (no-op outside a trial)."""
    extras = _current.get()
    if extras is not None:
        extras[key] = value


def current_extras() -> dict | None:
    return _current.get()
