"""The framework-neutral parts of the teacher-output cache (issue #8): keys, fingerprints,
budgets and the memory / disk store of numpy rows, for every backend.

A backend runs its frozen teacher, turns each example's outputs into numpy rows and
stores them in a :class:`TeacherOutputStore` keyed by what they are (``logits``, or one
processed feature ``(layer, process)``) and by the example's index in the training data.

Storage tiers, in order: memory up to ``memory_budget_mb``; then raw files read through
``numpy.memmap`` under ``<directory>/<fingerprint digest>/`` up to ``disk_budget_mb``
(without one, while more than 1 GB of the disk stays free); what fits nowhere is computed
by the live teacher at every use (``put`` returns None). Files are raw arrays with a JSON
manifest and ``.npy`` indices loaded with ``allow_pickle=False``: nothing is unpickled.

A store on disk is reused (``--resume``) only by a run with the same
:class:`CacheFingerprint` (the teacher's weights, the training data, the collator, the
storage dtype, the format: :mod:`autokd.cache_fingerprint`); any other found under
``directory`` is refused and the log says what differs. ``float32`` rows rebuild the live outputs exactly; ``float16`` rows
are rounded (half the memory).

numpy is imported inside the functions that need it: ``import autokd`` stays light.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ._cache_disk import DiskTier
from .cache_fingerprint import (
    FORMAT_VERSION,
    CacheFingerprint,
    LeafHasher,
    collator_fingerprint,
    content_fingerprint,
    dataset_fingerprint,
    declared_fingerprint,
    update_array_bytes,
    update_value,
    weights_fingerprint,
)
from .config import TeacherCacheConfig
from .errors import AutoKDError, ConfigError

__all__ = [
    "FORMAT_VERSION",
    "LOGITS",
    "CacheFingerprint",
    "KeyMeta",
    "LeafHasher",
    "TeacherOutputStore",
    "collator_fingerprint",
    "content_fingerprint",
    "dataset_fingerprint",
    "declared_fingerprint",
    "output_key_name",
    "update_array_bytes",
    "update_value",
    "weights_fingerprint",
]

log = logging.getLogger("autokd.teacher_cache")

LOGITS = "logits"  # the key of the teacher's logits; features are keyed by (layer, process)
DTYPES = ("float32", "float16")
_MB = 2**20


def output_key_name(key: Any) -> str | None:
    """The stable name of a cached output (``logits`` or ``feature:<layer>[<process>]``);
    None for a feature whose process is a Python callable: it is kept in memory only."""
    if key == LOGITS:
        return LOGITS
    layer, process = key
    if callable(process):
        return None
    return f"feature:{layer}[{'' if process is None else process}]"


@attrs.define
class KeyMeta:
    """How one output's rows are laid out: the dimensions that follow the padded length
    (in the batch tensor) and the dtype (its name) the rows are rebuilt in."""

    token_dims: tuple[int, ...]
    out_dtype: str


# --- the store ---------------------------------------------------------------------------


class TeacherOutputStore:
    """Rows of the teacher's per-example outputs (numpy): memory, then disk, then nothing.

    :param dtype: ``'float32'`` (rows equal the live outputs exactly) or ``'float16'``.
    :param memory_budget_mb: bytes of rows kept in memory.
    :param directory: where rows beyond the memory budget go
        (``<directory>/<fingerprint digest>/``); default the root given to :meth:`bind`
        (``<output_dir>/teacher_cache``); without either, nothing goes to disk.
    :param disk_budget_mb: bytes of rows on disk (None: while more than 1 GB of the disk
        stays free).
    :param prefill: the backend runs the teacher over the whole training set first.
    :param enabled: False turns the cache off.

    Rows are numpy arrays; a backend that keeps its own tensors in memory (autokd-torch)
    overrides :meth:`to_row`, :meth:`row_nbytes`, :meth:`disk_row` and :meth:`from_disk`,
    and nothing else. With ``disk_read_only`` (set by a backend in an executor's worker,
    whose files other trials share) the files are read, never written.
    """

    LOGGER = "autokd.teacher_cache"  # a backend's store logs under its backend's name

    def __init__(
        self,
        dtype: str = "float32",
        memory_budget_mb: float = 2048.0,
        directory: str | os.PathLike | None = None,
        disk_budget_mb: float | None = None,
        prefill: bool = False,
        enabled: bool = True,
    ):
        if dtype not in DTYPES:
            raise ConfigError(f"train.teacher_cache.dtype: 'float32' or 'float16', got {dtype!r}")
        for field, value in (("memory_budget_mb", memory_budget_mb), ("disk_budget_mb", disk_budget_mb)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
                raise ConfigError(f"train.teacher_cache.{field}: a number of megabytes >= 0, got {value!r}")
        self.dtype = dtype
        self.memory_budget = int(memory_budget_mb * _MB)
        self.directory = None if directory is None else os.fspath(directory)
        self.disk_budget = None if disk_budget_mb is None else int(disk_budget_mb * _MB)
        self.prefill = bool(prefill)
        self.enabled = bool(enabled)
        self.meta: dict[Any, KeyMeta] = {}
        self._memory: dict[Any, dict[int, Any]] = {}
        self.memory_bytes = 0
        self._disk: DiskTier | None = None
        self._root: str | None = None
        self._fingerprint_fn: Callable[[], CacheFingerprint] | None = None
        self._fingerprint: CacheFingerprint | None = None
        self._disk_unavailable_logged = False
        self.disk_read_only = False
        self.log = logging.getLogger(self.LOGGER)

    @classmethod
    def from_config(cls, config: TeacherCacheConfig | Mapping[str, Any]) -> TeacherOutputStore:
        """A store from ``train.teacher_cache``."""
        if isinstance(config, Mapping):
            known = {f.name for f in attrs.fields(TeacherCacheConfig)}
            unknown = sorted(set(config) - known)
            if unknown:
                raise ConfigError(f"train.teacher_cache: unknown keys {unknown} (known: {', '.join(sorted(known))})")
            config = TeacherCacheConfig(**config)
        return cls(
            config.dtype,
            config.memory_budget_mb,
            config.directory,
            config.disk_budget_mb,
            config.prefill,
            config.enabled,
        )

    @classmethod
    def coerce(cls, cache: Any) -> TeacherOutputStore | None:
        """The store a backend's ``cache=`` argument names: None or False (no cache), True
        (the defaults), a store of this class, or ``train.teacher_cache`` (a
        ``TeacherCacheConfig`` or its dict)."""
        if cache is None or cache is False:
            return None
        if cache is True:
            return cls()
        if isinstance(cache, cls):
            return cache
        if isinstance(cache, TeacherCacheConfig | Mapping):
            return cls.from_config(cache)
        raise AutoKDError(
            f"cache: expected a {cls.__name__}, a train.teacher_cache config, True or None, got {type(cache).__name__}"
        )

    # --- binding to a teacher and a dataset ---------------------------------------------
    def bind(self, fingerprint: Callable[[], CacheFingerprint], root: str | None) -> None:
        """Start storing for a new teacher / dataset: forget what is stored.
        ``fingerprint`` is computed only when the disk is first needed."""
        self.clear()
        self._fingerprint_fn, self._fingerprint = fingerprint, None
        self._root = self.directory or root
        self._disk_unavailable_logged = False

    @property
    def root(self) -> str | None:
        """The directory the store's files go under (``<root>/<digest>/``), if any."""
        return self._root

    def set_root(self, root: str | None) -> None:
        """The default directory (``<output_dir>/teacher_cache``) once it is known."""
        if self.directory is None and self._disk is None and root is not None:
            self._root = root

    def clear(self) -> None:
        """Forget every stored row (files on disk stay, for a later run)."""
        if self._disk is not None:
            if not self.disk_read_only:
                self._disk.flush()
            self._disk.close()
            self._disk = None
        self._memory.clear()
        self.meta.clear()
        self.memory_bytes = 0

    @property
    def fingerprint(self) -> CacheFingerprint | None:
        if self._fingerprint is None and self._fingerprint_fn is not None:
            self._fingerprint = self._fingerprint_fn()
        return self._fingerprint

    @property
    def path(self) -> str | None:
        """The directory of this store's files, once there is one."""
        return None if self._disk is None else self._disk.path

    def reuse_from_disk(self) -> int:
        """Open a store a former run left under the directory if its fingerprint
        matches; log why any other found there is refused. The number of rows reused."""
        root = self._root
        if root is None or not os.path.isdir(root):
            return 0
        fingerprint = self.fingerprint
        reused = 0
        for entry in sorted(os.listdir(root)):
            manifest_path = os.path.join(root, entry, DiskTier.MANIFEST)
            if not os.path.isfile(manifest_path):
                continue
            try:
                with open(manifest_path, encoding="utf-8") as fh:
                    stored = json.load(fh).get("fingerprint") or {}
            except (OSError, ValueError) as exc:
                self.log.warning(
                    "teacher cache: not reusing %s: unreadable manifest (%s)", os.path.join(root, entry), exc
                )
                continue
            differences = fingerprint.differences(stored)
            if entry == fingerprint.digest() and not differences and self._disk is None:
                self._disk = DiskTier(os.path.join(root, entry), fingerprint, self.dtype, self.disk_budget, self.log)
                reused = self._disk.load()
                self.log.info("teacher cache: reusing %d stored outputs from %s", reused, self._disk.path)
            elif differences:
                self.log.warning(
                    "teacher cache: refusing the stale cache in %s: %s differ%s from this run's (it is left "
                    "on disk; delete it to free the space)",
                    os.path.join(root, entry),
                    " and ".join(differences),
                    "s" if len(differences) == 1 else "",
                )
        return reused

    def _open_disk(self) -> DiskTier | None:
        if self._disk is not None:
            return self._disk
        if self.disk_read_only:
            return None
        if self._root is None:
            if not self._disk_unavailable_logged:
                self.log.info(
                    "teacher cache: the memory budget (%.0f MB) is used up and there is no directory for the "
                    "rest: set train.teacher_cache.directory (or give the search an output directory); the "
                    "remaining examples run the live teacher",
                    self.memory_budget / _MB,
                )
                self._disk_unavailable_logged = True
            return None
        fingerprint = self.fingerprint
        path = os.path.join(self._root, fingerprint.digest())
        try:
            self._disk = DiskTier(path, fingerprint, self.dtype, self.disk_budget, self.log)
            if os.path.isfile(os.path.join(path, DiskTier.MANIFEST)):
                self._disk.load()
            self._disk.flush()
        except OSError as exc:
            self.log.warning(
                "teacher cache: cannot use %s (%s); the remaining examples run the live teacher", path, exc
            )
            self._root, self._disk = None, None
            return None
        self.log.info("teacher cache: memory budget used up; further outputs go to %s", path)
        return self._disk

    # --- rows: what a backend keeps in memory ---------------------------------------------
    def to_row(self, row: Any) -> Any:
        """A copy of ``row`` in the storage dtype, as kept in memory."""
        import numpy as np

        return np.array(row, dtype=self.dtype, copy=True, order="C")

    def row_nbytes(self, row: Any) -> int:
        """The bytes of a stored row."""
        return int(row.nbytes)

    def keep_in_memory(self, row: Any) -> Any:
        """A stored row as it stays in memory (autokd-torch pins it for a CUDA device)."""
        return row

    def disk_row(self, row: Any) -> Any:
        """A stored row as the numpy array written to disk."""
        return row

    def from_disk(self, array: Any) -> Any:
        """A row read from disk (numpy, the storage dtype) as :meth:`get` returns it."""
        return array

    # --- rows ---------------------------------------------------------------------------
    def layout(self, key: Any, token_dims: tuple[int, ...]) -> KeyMeta | None:
        """How ``key``'s rows are laid out: known from this run, or from the rows a former
        run left on disk with these per-token dims; None before its first row."""
        meta = self.meta.get(key)
        if meta is None and self._disk is not None:
            name = output_key_name(key)
            meta = None if name is None else self._disk.stored_meta(name, token_dims)
            if meta is not None:
                self.meta[key] = meta
        return meta

    def describe(self, key: Any, meta: KeyMeta) -> None:
        """Record how ``key`` is laid out before its first row is stored."""
        self.meta[key] = meta

    def get(self, key: Any, index: int) -> Any:
        """The stored row of example ``index`` (in the storage dtype), or None."""
        row = self._memory.get(key, {}).get(index)
        if row is not None:
            return row
        name = output_key_name(key) if self._disk is not None else None
        file = None if name is None else self._disk.files.get(name)
        array = None if file is None else file.read(index)
        return None if array is None else self.from_disk(array)

    def put(self, key: Any, index: int, row: Any) -> Any:
        """Store example ``index``'s row (memory first, then disk); the stored row, or
        None when it fits nowhere (the teacher then runs live for it)."""
        stored = self.to_row(row)
        nbytes = self.row_nbytes(stored)
        if self.memory_bytes + nbytes <= self.memory_budget:
            stored = self.keep_in_memory(stored)
            rows = self._memory.setdefault(key, {})
            old = rows.get(index)
            if old is not None:
                self.memory_bytes -= self.row_nbytes(old)
            rows[index] = stored
            self.memory_bytes += nbytes
            return stored
        name = output_key_name(key)
        disk = None if name is None else self._open_disk()
        if disk is None or self.disk_read_only or not disk.put(name, self.meta[key], index, self.disk_row(stored)):
            return None
        return stored

    def contains(self, key: Any, index: int) -> bool:
        """Whether example ``index``'s row of ``key`` is stored (without reading it)."""
        if index in self._memory.get(key, ()):
            return True
        name = output_key_name(key) if self._disk is not None else None
        file = None if name is None else self._disk.files.get(name)
        return file is not None and index in file.entries

    @property
    def disk_bytes(self) -> int:
        return 0 if self._disk is None else self._disk.bytes

    def flush(self) -> None:
        """Make what is on disk reusable by a later run (at the end of a trial)."""
        if self._disk is not None and not self.disk_read_only:
            self._disk.flush()

    def close(self) -> None:
        self.clear()

    def stats(self) -> dict:
        """The store's part of a trial's ``extras.teacher_cache`` record."""
        return {
            "dtype": self.dtype,
            "bytes_in_memory": self.memory_bytes,
            "bytes_on_disk": self.disk_bytes,
            "directory": self.path,
        }
