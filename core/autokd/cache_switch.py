"""Whether a backend's teacher-output cache (:mod:`autokd.teacher_cache`) serves a run,
and why not: the reasons both backends give, and a switch that records the cache turned
off for good (the teacher is not frozen) or for the current run only, logging each
reason once. Each backend adds its own reasons (autokd-torch: map-style data, random
collators, left padding; autokd-tensorflow: arrays, built-in criteria)."""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["DISABLED", "NOT_CONFIGURED", "WEIGHTS_CHANGED", "CacheSwitch", "run_record"]

NOT_CONFIGURED = "no teacher-output cache was configured"
DISABLED = "disabled by train.teacher_cache.enabled: false"
WEIGHTS_CHANGED = (
    "the teacher's weights changed since its outputs were stored: it is not frozen, so its outputs cannot be reused"
)


class CacheSwitch:
    """Why the cache is off: ``off`` for good, ``run_off`` for the current run."""

    def __init__(self, logger: logging.Logger):
        self.off: str | None = None
        self.run_off: str | None = None
        self.log = logger
        self._logged: set[str] = set()

    def reason(self, store: Any, unprepared: str | None) -> str | None:
        """Why ``store`` does not serve the run (None: it does); ``unprepared``: the
        backend's reason when the store is not bound to the run's data."""
        if store is None:
            return NOT_CONFIGURED
        if not store.enabled:
            return DISABLED
        return self.off or self.run_off or unprepared

    def turn_off(self, reason: str, for_good: bool, warn: bool) -> None:
        """Record ``reason`` and log it the first time (a warning with ``warn``)."""
        if for_good:
            self.off = reason
        else:
            self.run_off = reason
        if reason not in self._logged:
            self._logged.add(reason)
            (self.log.warning if warn else self.log.info)("teacher cache off: %s", reason)

    def new_run(self) -> None:
        self.run_off = None


def run_record(store: Any, reason: str | None, hits: int, misses: int, prefilled: int) -> dict:
    """A trial's ``extras.teacher_cache``: ``enabled``, ``hits`` and ``misses`` (in
    examples), ``reason`` when off, and with a store its bytes in memory and on disk, its
    dtype and directory (made reusable first: flushed) and ``prefilled``."""
    record: dict[str, Any] = {"enabled": reason is None, "hits": hits, "misses": misses}
    if reason is not None:
        record["reason"] = reason
    if store is not None:
        store.flush()
        record.update(store.stats())
        record["prefilled"] = prefilled
    return record
