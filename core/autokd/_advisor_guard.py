"""Calls into an advisor that name it when it misbehaves.

An advisor is third-party code: its ``ask`` may return something outside the space or
raise, its ``tell`` may raise. The search loop calls it only through these functions,
so every such failure is an :class:`AdvisorError` naming the advisor, the plugin and the
distribution it came from; a ``tell`` failing while recorded trials are replayed is a
warning, so a stored trial always stays resumable.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from .advisor import SearchExhausted, propose
from .errors import AdvisorError
from .space import SearchSpace, SearchSpaceError

__all__ = ["describe_advisor", "guarded_ask", "guarded_tell", "replay_tell"]

log = logging.getLogger("autokd")


def describe_advisor(advisor: Any, algorithm: str | None = None) -> str:
    """``advisor 'TPE' (plugin 'optuna', distribution 'autokd-optuna')``, from the
    registration of ``algorithm`` when it made ``advisor``, else the advisor's class."""
    if algorithm is not None:
        from .plugins import registry

        try:
            reg = registry().advisors.registration(algorithm)
        except LookupError:
            reg = None
        if reg is not None:
            dist = f", distribution {reg.distribution!r}" if reg.distribution else ""
            return f"advisor {reg.name!r} (plugin {reg.plugin!r}{dist})"
    cls = type(advisor)
    return f"advisor {cls.__qualname__} (module {cls.__module__!r})"


def guarded_ask(advisor: Any, space: SearchSpace, who: str, pending: Sequence[dict] | None = None) -> dict:
    """``advisor.ask()`` (``advisor.ask_pending(pending)`` while trials run) checked to
    be one point of ``space``."""
    try:
        point = propose(advisor, pending or ())
    except SearchExhausted:
        raise
    except Exception as exc:
        raise AdvisorError(f"{who} failed in ask(): {type(exc).__name__}: {exc}") from exc
    if not isinstance(point, Mapping):
        raise AdvisorError(
            f"{who} proposed {type(point).__name__} {point!r:.200} from ask(); an advisor must return a dict "
            f"of one choice per parameter of the search space {list(space)}"
        )
    try:
        return space.validate(point)
    except SearchSpaceError as exc:
        raise AdvisorError(f"{who} proposed a point outside the search space: {exc}") from None


def _tell(advisor: Any, arch: dict, values: Sequence[float] | None, fidelity: Mapping[str, Any]) -> None:
    if fidelity:  # a multi-fidelity evaluation: budget and rung
        advisor.tell_budget(arch, values, **fidelity)
    else:
        advisor.tell(arch, values)


def guarded_tell(advisor: Any, arch: dict, values: Sequence[float] | None, who: str, **fidelity: Any) -> None:
    """``advisor.tell(arch, values)`` (``tell_budget`` given ``budget`` and ``rung``)
    after a trial (already stored) finished."""
    try:
        _tell(advisor, arch, values, fidelity)
    except Exception as exc:
        raise AdvisorError(
            f"{who} failed in tell() for {arch}: {type(exc).__name__}: {exc}. The trial is recorded; "
            f"fix or replace the advisor and resume (--resume)"
        ) from exc


def replay_tell(advisor: Any, arch: dict, values: Sequence[float] | None, who: str, **fidelity: Any) -> None:
    """``advisor.tell`` (or ``tell_budget``) of a recorded trial on resume: a failure is a
    warning, never a reason the stored trials cannot be resumed."""
    try:
        _tell(advisor, arch, values, fidelity)
    except Exception as exc:
        log.warning(
            "%s failed in tell() replaying %s: %s: %s; it goes on without that trial",
            who,
            arch,
            type(exc).__name__,
            exc,
        )
