"""The fingerprint of a teacher-output cache (:mod:`autokd.teacher_cache`): hashes of the
teacher's weights, the training data and the collator, for every backend; a store on disk
is reused only by a run whose :class:`CacheFingerprint` is the same.

A backend hashes its own tensors through :func:`update_array_bytes` with its own dtype
names (the ``update_array`` of :func:`weights_fingerprint`, the ``leaf`` of
:func:`update_value` and :func:`dataset_fingerprint`). numpy is imported inside the
functions that need it: ``import autokd`` stays light.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import attrs

__all__ = [
    "FORMAT_VERSION",
    "CacheFingerprint",
    "LeafHasher",
    "collator_fingerprint",
    "content_fingerprint",
    "dataset_fingerprint",
    "declared_fingerprint",
    "update_array_bytes",
    "update_value",
    "weights_fingerprint",
]

FORMAT_VERSION = 1


def update_array_bytes(h: Any, dtype_name: str, shape: tuple[int, ...], data: Any) -> None:
    """Hash one array into ``h``: its dtype's name, its shape, then its raw bytes
    (``data``: bytes or a buffer). A backend hashes its own tensors through this with its
    own dtype names (autokd-torch: ``torch.float32``), so its fingerprints stay its own."""
    h.update(f"{dtype_name}{tuple(shape)}".encode())
    h.update(data)


def _update_array(h: Any, array: Any) -> None:
    import numpy as np

    a = np.ascontiguousarray(array)
    update_array_bytes(h, str(a.dtype), tuple(a.shape), a.reshape(-1).view(np.uint8).tobytes())


# A backend's hook for its own leaves (tensors): hashes ``value`` into ``h`` and returns
# True, or returns False to leave ``value`` to :func:`update_value`.
LeafHasher = Callable[[Any, Any], bool]


def update_value(h: Any, value: Any, leaf: LeafHasher | None = None) -> None:
    """Hash a nested value of numpy arrays (or objects with ``__array__``), mappings,
    sequences and plain scalars into ``h``; ``leaf`` hashes a backend's own leaves first."""
    import numpy as np

    if leaf is not None and leaf(h, value):
        return
    if isinstance(value, np.ndarray) or (hasattr(value, "__array__") and not isinstance(value, str | bytes)):
        h.update(b"N")
        _update_array(h, np.asarray(value))
    elif isinstance(value, Mapping):
        h.update(b"{")
        for key in sorted(value, key=repr):
            h.update(repr(key).encode())
            update_value(h, value[key], leaf)
        h.update(b"}")
    elif isinstance(value, tuple | list):
        h.update(b"[")
        for item in value:
            update_value(h, item, leaf)
        h.update(b"]")
    else:
        # str, numbers, None; anything else by its repr (an unstable repr only means the
        # cache is not reused by a later run)
        h.update(f"{type(value).__name__}:{value!r}".encode())


def weights_fingerprint(
    model_type: str, named_weights: Iterable[tuple[str, Any]], update_array: Callable[[Any, Any], None] | None = None
) -> str:
    """A hash of a teacher: its class and each named weight (numpy arrays, or a backend's
    tensors hashed by ``update_array(h, tensor)``)."""
    update_array = update_array or _update_array
    h = hashlib.sha256(model_type.encode())
    for name, value in named_weights:
        h.update(name.encode())
        update_array(h, value)
    return h.hexdigest()[:32]


def content_fingerprint(value: Any) -> str:
    """A hash of training data given as (nested) arrays."""
    h = hashlib.sha256()
    update_value(h, value)
    return h.hexdigest()[:32]


def declared_fingerprint(dataset: Any) -> str | None:
    """The dataset's own ``cache_fingerprint`` (a string that changes whenever its
    content does), or a Hugging Face ``datasets.Dataset``'s ``_fingerprint``; None."""
    declared = getattr(dataset, "cache_fingerprint", None)
    if isinstance(declared, str) and declared:
        return "declared:" + declared
    hf = getattr(dataset, "_fingerprint", None)
    if isinstance(hf, str) and hf:
        return "datasets:" + hf
    return None


def dataset_fingerprint(dataset: Any, leaf: LeafHasher | None = None) -> str:
    """A hash of a map-style dataset (``len`` and ``[i]``): its
    :func:`declared_fingerprint` when it has one, or else its length and the content of
    every example (``leaf`` hashes a backend's tensors)."""
    declared = declared_fingerprint(dataset)
    if declared is not None:
        return declared
    h = hashlib.sha256(f"{len(dataset)}".encode())
    for i in range(len(dataset)):
        update_value(h, dataset[i], leaf)
    return h.hexdigest()[:32]


def collator_fingerprint(collate_fn: Any) -> str:
    """What a data collator is: its qualified name, the keywords of a
    ``functools.partial``, and the simple settings of a dataclass collator (Hugging
    Face's, e.g. ``max_length``); ``'default'`` for None."""
    if collate_fn is None:
        return "default"
    target = getattr(collate_fn, "func", collate_fn) if hasattr(collate_fn, "keywords") else collate_fn
    named = target if hasattr(target, "__qualname__") else type(target)
    name = f"{getattr(named, '__module__', '?')}.{named.__qualname__}"
    settings: dict[str, Any] = {}
    if dataclasses.is_dataclass(collate_fn) and not isinstance(collate_fn, type):
        for field in dataclasses.fields(collate_fn):
            value = getattr(collate_fn, field.name, None)
            if value is None or isinstance(value, bool | int | float | str):
                settings[field.name] = value
    if hasattr(collate_fn, "keywords"):
        settings.update({k: repr(v) for k, v in (collate_fn.keywords or {}).items()})
    return name + (json.dumps(settings, sort_keys=True) if settings else "")


@attrs.frozen
class CacheFingerprint:
    """What a cache on disk was made from; its :meth:`digest` names its directory."""

    teacher: str
    data: str
    collator: str
    dtype: str
    format: int = FORMAT_VERSION

    _WHAT: ClassVar[dict[str, str]] = {
        "teacher": "the teacher's weights",
        "data": "the training data",
        "collator": "the data collator",
        "dtype": "the storage dtype",
        "format": "the cache format",
    }

    def as_dict(self) -> dict:
        return attrs.asdict(self)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def differences(self, other: Mapping[str, Any]) -> list[str]:
        """What differs from a fingerprint read from a manifest, in words."""
        mine = self.as_dict()
        return [self._WHAT[key] for key in mine if other.get(key) != mine[key]]
