"""Exceptions that autokd raises for bad input; each names the field or plugin and the fix."""

from __future__ import annotations

__all__ = ["AutoKDError", "ConfigError", "PluginError", "UnknownNameError", "StoreError", "AdvisorError"]


class AutoKDError(Exception):
    """Base class of autokd's own errors."""


class ConfigError(AutoKDError, ValueError):
    """A configuration with one or more problems, each ``path: message``."""

    def __init__(self, problems, source: str | None = None):
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        if len(self.problems) == 1:
            text = f"invalid configuration{where}: {self.problems[0]}"
        else:
            text = f"invalid configuration{where} ({len(self.problems)} problems):\n" + "\n".join(
                f"  - {p}" for p in self.problems
            )
        super().__init__(text)


class PluginError(AutoKDError):
    """A plugin failed to load or registered something invalid."""


class UnknownNameError(AutoKDError, LookupError):
    """A name asked for (advisor, loss, evaluator...) that no loaded plugin provides."""

    def __str__(self) -> str:  # KeyError-style quoting would mangle the message
        return str(self.args[0]) if self.args else ""


class StoreError(AutoKDError):
    """An output directory that cannot be used as asked: an unreadable ``trials.jsonl``
    (``trials.jsonl:LINE: why``), another run holding it, a resume whose config no longer
    matches the records. ``autokd`` exits with status 2, as for a bad config."""


class AdvisorError(AutoKDError):
    """An advisor that proposed something outside the search space or raised; the
    message names the advisor, its plugin and its distribution."""
