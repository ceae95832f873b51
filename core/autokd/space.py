"""The search space: a read-only mapping from architecture parameter to its choices."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

__all__ = ["SearchSpace", "SearchSpaceError"]


class SearchSpaceError(ValueError):
    """A search space that cannot be searched (empty choices, non-list choices...)."""


def _hashable(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


class SearchSpace(Mapping[str, list]):
    """Categorical search space over architecture parameters.

    ``space['hidden_size'] == [128, 256]``; iteration follows the user's key order.
    Choices are kept as given (integers stay integers); advisors that need numbers use
    :meth:`encode` / :meth:`decode` (the index of each choice).
    """

    _choices: dict[str, tuple]

    def __init__(self, choices: Mapping[str, Sequence[Any]]):
        if isinstance(choices, SearchSpace):
            choices = choices._choices
        if not isinstance(choices, Mapping) or not choices:
            raise SearchSpaceError(
                "search_space must be a non-empty mapping of parameter name to a list "
                "of choices, e.g. {'hidden_size': [128, 256]}"
            )
        problems = []
        parsed: dict[str, tuple] = {}
        for name, values in choices.items():
            if not isinstance(name, str):
                problems.append(f"{name!r}: parameter names must be strings")
                continue
            if isinstance(values, str | bytes) or not isinstance(values, Sequence):
                problems.append(
                    f"{name}: choices must be a list, got {type(values).__name__} "
                    f"{values!r} (write [{values!r}] for a single choice)"
                )
                continue
            if len(values) == 0:
                problems.append(f"{name}: the list of choices is empty")
                continue
            keys = [_hashable(v) for v in values]
            if len(set(keys)) != len(keys):
                problems.append(f"{name}: choices repeat a value: {list(values)!r}")
                continue
            parsed[name] = tuple(values)
        if problems:
            raise SearchSpaceError("; ".join(problems))
        self._choices = parsed

    # Mapping protocol -----------------------------------------------------------------
    def __getitem__(self, name: str) -> list:
        return list(self._choices[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._choices)

    def __len__(self) -> int:
        return len(self._choices)

    def __repr__(self) -> str:
        return f"SearchSpace({ {k: list(v) for k, v in self._choices.items()}!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SearchSpace):
            return self._choices == other._choices
        if isinstance(other, Mapping):
            return self == SearchSpace(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    # Search-space operations -------------------------------------------------------------
    @property
    def size(self) -> int:
        """Number of distinct points."""
        n = 1
        for values in self._choices.values():
            n *= len(values)
        return n

    def points(self) -> Iterator[dict]:
        """Every point, in a fixed order (the last key varies fastest)."""
        names = list(self._choices)
        for combo in itertools.product(*self._choices.values()):
            yield dict(zip(names, combo, strict=True))

    def point_at(self, index: int) -> dict:
        """The ``index``-th point of :meth:`points` without enumerating the ones before
        it (a grid over 10^12 points needs no list of them)."""
        if not 0 <= index < self.size:
            raise IndexError(f"point {index} of a space of {self.size} points")
        out = {}
        for name, values in reversed(self._choices.items()):
            index, i = divmod(index, len(values))
            out[name] = values[i]
        return {name: out[name] for name in self._choices}

    def unevaluated_point(self, evaluated: set[str], rng) -> dict | None:
        """A point whose :meth:`key` is not in ``evaluated``, drawn with ``rng``; None
        when every point was evaluated. Large, mostly unexplored spaces are sampled,
        never enumerated."""
        if len(evaluated) >= self.size:
            return None
        if len(evaluated) < self.size // 2:
            while True:
                point = self.sample(rng)
                if self.key(point) not in evaluated:
                    return point
        remaining = [p for p in self.points() if self.key(p) not in evaluated]
        return remaining[rng.randrange(len(remaining))] if remaining else None

    def sample(self, rng) -> dict:
        """A uniformly random point drawn with ``rng`` (a :class:`random.Random`)."""
        return {name: values[rng.randrange(len(values))] for name, values in self._choices.items()}

    def encode(self, point: Mapping[str, Any]) -> tuple[int, ...]:
        """The index of each choice of ``point``, in key order."""
        self.validate(point)
        return tuple(
            [_hashable(v) for v in values].index(_hashable(point[name])) for name, values in self._choices.items()
        )

    def decode(self, indices: Sequence[int]) -> dict:
        """The point whose choice indices are ``indices`` (inverse of :meth:`encode`)."""
        if len(indices) != len(self._choices):
            raise SearchSpaceError(f"expected {len(self._choices)} indices, got {len(indices)}")
        return {name: values[int(i)] for (name, values), i in zip(self._choices.items(), indices, strict=True)}

    def key(self, point: Mapping[str, Any]) -> str:
        """Canonical, hashable key of a point: JSON of its values in key order."""
        return json.dumps([[name, point[name]] for name in self._choices], sort_keys=False)

    def validate(self, point: Mapping[str, Any]) -> dict:
        """Return ``point`` as a plain dict, or raise naming what is not in the space."""
        missing = [n for n in self._choices if n not in point]
        extra = [n for n in point if n not in self._choices]
        bad = [
            f"{n}={point[n]!r} (choices: {list(self._choices[n])!r})"
            for n in self._choices
            if n in point and _hashable(point[n]) not in [_hashable(v) for v in self._choices[n]]
        ]
        if missing or extra or bad:
            parts = []
            if missing:
                parts.append(f"missing {missing}")
            if extra:
                parts.append(f"not in the space {extra}")
            if bad:
                parts.append("not a choice: " + ", ".join(bad))
            raise SearchSpaceError(f"point {dict(point)!r} is not in the search space: " + "; ".join(parts))
        return {n: point[n] for n in self._choices}

    def to_dict(self) -> dict[str, list]:
        return {k: list(v) for k, v in self._choices.items()}
