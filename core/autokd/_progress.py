"""The search's progress bar (tqdm), or nothing when it is off."""

from __future__ import annotations

from collections.abc import Mapping


def short(arch: Mapping) -> str:
    return ", ".join(f"{k}={v}" for k, v in arch.items())


class NoProgress:
    def update(self, n=1): ...
    def set_description(self, text): ...
    def set_postfix_str(self, text): ...
    def close(self): ...


def progress_bar(total: int, done: int, enabled: bool):
    if not enabled:
        return NoProgress()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return NoProgress()
    return tqdm(total=total, initial=done, unit="trial", dynamic_ncols=True, leave=True)
