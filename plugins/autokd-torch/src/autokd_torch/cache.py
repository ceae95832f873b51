"""The teacher-output cache (issue #8): each training example's teacher outputs, stored
once and reused by every later step, stage and trial of a search.

Outputs are keyed by the example's index in the training dataset and by what they are
(the teacher's logits, or one processed feature ``(layer, process)``), so shuffled
batches and other batch sizes hit the cache. Per-token features are stored trimmed to
the example's real tokens (:mod:`autokd_torch.padding`) and re-padded to any batch.

Storage tiers, in order: memory up to ``memory_budget_mb``; then memory-mapped files
under ``<directory>/<fingerprint>/`` (``directory`` defaults to
``<output_dir>/teacher_cache``) up to ``disk_budget_mb`` (without one, while more than
1 GB of the disk stays free); what fits nowhere is computed by the live teacher at every
use. Files are raw arrays (``numpy.memmap``) with a JSON
manifest and ``.npy`` indices loaded with ``allow_pickle=False``: nothing is unpickled.

A cache on disk is reused (``autokd run --resume``) only by a run whose fingerprint is
the same: the teacher's weights, the training data's content, the collator and the
storage dtype; each stored feature also records which dimensions are per-token and the
dtype it is rebuilt in. Any other cache found under ``directory`` is refused, and the
log says what differs.

:class:`TeacherOutputCache` is only storage; :class:`~autokd_torch.teacher.TeacherForward`
decides when the cache is valid and fills it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import numpy as np
import torch

from autokd import ConfigError
from autokd.config import TeacherCacheConfig

__all__ = [
    "LOGITS",
    "TeacherOutputCache",
    "CacheFingerprint",
    "teacher_fingerprint",
    "dataset_fingerprint",
    "collator_fingerprint",
    "output_key_name",
]

log = logging.getLogger("autokd.torch")

# The key of the teacher's logits among its cached outputs (features are keyed by their
# (layer, process) spec).
LOGITS = "logits"

FORMAT_VERSION = 1
_DTYPES = {"float32": torch.float32, "float16": torch.float16}
_MB = 2**20
# Without a disk budget the disk tier stops while this much of the disk is still free, and
# checks the free space every _CHECK_EVERY bytes it writes.
_MIN_FREE = 2**30
_CHECK_EVERY = 64 * _MB


# --------------------------------------------------------------------------------------
# Fingerprints
# --------------------------------------------------------------------------------------


def _update_tensor(h: Any, tensor: torch.Tensor) -> None:
    t = tensor.detach().cpu().contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy())


def teacher_fingerprint(model: torch.nn.Module) -> str:
    """A hash of the teacher's class and its weights (``state_dict``: parameters and
    persistent buffers), names, dtypes and shapes included."""
    h = hashlib.sha256(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    for name, value in model.state_dict().items():
        h.update(name.encode())
        if isinstance(value, torch.Tensor):
            _update_tensor(h, value)
    return h.hexdigest()[:32]


def _update_value(h: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        h.update(b"T")
        _update_tensor(h, value)
    elif isinstance(value, np.ndarray):
        h.update(b"N")
        _update_tensor(h, torch.from_numpy(np.ascontiguousarray(value)))
    elif isinstance(value, Mapping):
        h.update(b"{")
        for key in sorted(value, key=repr):
            h.update(repr(key).encode())
            _update_value(h, value[key])
        h.update(b"}")
    elif isinstance(value, tuple | list):
        h.update(b"[")
        for item in value:
            _update_value(h, item)
        h.update(b"]")
    else:
        # str, numbers, None; anything else by its repr (an unstable repr only means the
        # cache is not reused by a later run)
        h.update(f"{type(value).__name__}:{value!r}".encode())


def dataset_fingerprint(dataset: Any) -> str:
    """A hash of the training data: the dataset's own ``cache_fingerprint`` attribute
    when it declares one (a string that changes whenever its content does), a
    Hugging Face ``datasets.Dataset``'s ``_fingerprint``, or else the content of every
    example."""
    declared = getattr(dataset, "cache_fingerprint", None)
    if isinstance(declared, str) and declared:
        return "declared:" + declared
    hf = getattr(dataset, "_fingerprint", None)
    if isinstance(hf, str) and hf:
        return "datasets:" + hf
    h = hashlib.sha256(f"{len(dataset)}".encode())
    for i in range(len(dataset)):
        _update_value(h, dataset[i])
    return h.hexdigest()[:32]


def collator_fingerprint(collate_fn: Any) -> str:
    """What the collator is: its qualified name, the keywords of a ``functools.partial``,
    and the simple settings of a dataclass collator (Hugging Face's, e.g.
    ``max_length``)."""
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

    _WHAT = {
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


def output_key_name(key: Any) -> str | None:
    """The stable name of a cached output (``logits`` or ``feature:<layer>[<process>]``);
    None for a feature whose process is a Python callable: it is cached in memory only."""
    if key == LOGITS:
        return LOGITS
    layer, process = key
    if callable(process):
        return None
    return f"feature:{layer}[{'' if process is None else process}]"


# --------------------------------------------------------------------------------------
# The disk tier
# --------------------------------------------------------------------------------------


@attrs.define
class _KeyMeta:
    """How one cached output is laid out: its per-token dimensions (in the batch
    tensor) and the dtype it is rebuilt in."""

    token_dims: tuple[int, ...]
    out_dtype: torch.dtype


class _DiskFile:
    """One output's rows, appended to a raw file and read back through ``np.memmap``."""

    def __init__(self, path: str, dtype: torch.dtype):
        self.path = path
        self.dtype = dtype
        self.itemsize = torch.empty((), dtype=dtype).element_size()
        self.np_dtype = np.float16 if dtype == torch.float16 else np.float32
        self.entries: dict[int, tuple[int, tuple[int, ...]]] = {}
        self.bytes = 0
        self._handle = None
        self._map: np.memmap | None = None
        self._mapped = 0

    def size(self) -> int:
        return os.path.getsize(self.path) if os.path.exists(self.path) else 0

    def load_index(self, index_path: str) -> None:
        table = np.load(index_path, allow_pickle=False)
        size = self.size()
        for row in table.tolist():
            index, offset, shape = int(row[0]), int(row[1]), tuple(int(s) for s in row[2:])
            nbytes = math.prod(shape) * self.itemsize
            if offset + nbytes <= size:  # rows past a truncated file are dropped
                self.entries[index] = (offset, shape)
                self.bytes += nbytes

    def save_index(self, index_path: str) -> None:
        if not self.entries:
            return
        ndim = len(next(iter(self.entries.values()))[1])
        table = np.zeros((len(self.entries), 2 + ndim), dtype=np.int64)
        for i, (index, (offset, shape)) in enumerate(self.entries.items()):
            table[i, 0], table[i, 1] = index, offset
            table[i, 2:] = shape
        tmp = index_path + ".tmp.npy"
        np.save(tmp, table, allow_pickle=False)
        os.replace(tmp, index_path)

    def append(self, index: int, row: torch.Tensor) -> None:
        if self._handle is None:
            self._handle = open(self.path, "ab")  # noqa: SIM115 - kept open while the cache lives
        offset = self._handle.seek(0, os.SEEK_END)
        data = row.contiguous().reshape(-1).view(torch.uint8).numpy()
        self._handle.write(data.tobytes())
        old = self.entries.get(index)
        if old is not None:
            self.bytes -= math.prod(old[1]) * self.itemsize
        self.entries[index] = (offset, tuple(row.shape))
        self.bytes += data.nbytes

    def read(self, index: int) -> torch.Tensor | None:
        entry = self.entries.get(index)
        if entry is None:
            return None
        offset, shape = entry
        nbytes = math.prod(shape) * self.itemsize
        if self._map is None or offset + nbytes > self._mapped:
            if self._handle is not None:
                self._handle.flush()
            self._map = np.memmap(self.path, dtype=np.uint8, mode="r")
            self._mapped = self._map.shape[0]
        raw = np.array(self._map[offset : offset + nbytes])
        return torch.from_numpy(raw.view(self.np_dtype).reshape(shape))

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        self._map = None
        self._mapped = 0


class _DiskTier:
    """``<root>/<fingerprint digest>/``: a manifest, and per output a ``.bin`` of rows and
    a ``.npy`` index of ``(example index, offset, shape...)``."""

    MANIFEST = "manifest.json"

    def __init__(self, path: str, fingerprint: CacheFingerprint, dtype: torch.dtype, budget: int | None):
        self.path = path
        self.fingerprint = fingerprint
        self.dtype = dtype
        self.budget = budget
        self.files: dict[str, _DiskFile] = {}
        self.meta: dict[str, dict] = {}
        self.full = False
        self._unchecked = _CHECK_EVERY  # check the free space before the first write
        os.makedirs(path, exist_ok=True)

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files.values())

    def _file_stem(self, name: str) -> str:
        return hashlib.sha256(name.encode()).hexdigest()[:16]

    def load(self) -> int:
        """Index the rows a former run left here; the number of rows."""
        with open(os.path.join(self.path, self.MANIFEST), encoding="utf-8") as fh:
            manifest = json.load(fh)
        for name, meta in (manifest.get("outputs") or {}).items():
            stem = meta["file"]
            index_path = os.path.join(self.path, stem + ".npy")
            if not os.path.exists(index_path):
                continue
            file = _DiskFile(os.path.join(self.path, stem + ".bin"), self.dtype)
            file.load_index(index_path)
            self.files[name] = file
            self.meta[name] = meta
        return sum(len(f.entries) for f in self.files.values())

    def stored_meta(self, name: str, token_dims: tuple[int, ...]) -> _KeyMeta | None:
        """The layout of the rows a former run stored under ``name``, if they were stored
        with these per-token dims; rows stored otherwise are dropped (with a log line)."""
        stored = self.meta.get(name)
        if stored is None:
            return None
        if tuple(stored["token_dims"]) == tuple(token_dims):
            return _KeyMeta(tuple(token_dims), getattr(torch, stored["out_dtype"].removeprefix("torch.")))
        log.info(
            "teacher cache: dropping the stored rows of %s in %s: stored with per-token dims %s, now %s",
            name,
            self.path,
            tuple(stored["token_dims"]),
            tuple(token_dims),
        )
        file = self.files.pop(name, None)
        if file is not None:
            file.close()
            for suffix in (".bin", ".npy"):
                path = os.path.join(self.path, stored["file"] + suffix)
                if os.path.exists(path):
                    os.remove(path)
        del self.meta[name]
        return None

    def get(self, name: str, index: int) -> torch.Tensor | None:
        file = self.files.get(name)
        return None if file is None else file.read(index)

    def put(self, name: str, meta: _KeyMeta, index: int, row: torch.Tensor) -> bool:
        nbytes = row.numel() * row.element_size()
        if self.full:
            return False
        if self.budget is not None and self.bytes + nbytes > self.budget:
            log.info(
                "teacher cache: the disk budget (%.1f MB) is used up in %s; further outputs run the live teacher",
                self.budget / _MB,
                self.path,
            )
            self.full = True
            return False
        if self.budget is None:
            self._unchecked += nbytes
            if self._unchecked >= _CHECK_EVERY:
                self._unchecked = 0
                free = shutil.disk_usage(self.path).free
                if free < _MIN_FREE + _CHECK_EVERY:
                    log.warning(
                        "teacher cache: only %.0f MB free on the disk of %s; further outputs run the live teacher "
                        "(set train.teacher_cache.disk_budget_mb or directory)",
                        free / _MB,
                        self.path,
                    )
                    self.full = True
                    return False
        stored = self.meta.get(name)
        if stored is not None and tuple(stored["token_dims"]) != meta.token_dims:
            self.stored_meta(name, meta.token_dims)  # rows of another layout: dropped
        file = self.files.get(name)
        if file is None:
            stem = self._file_stem(name)
            file = self.files[name] = _DiskFile(os.path.join(self.path, stem + ".bin"), self.dtype)
            self.meta[name] = {"file": stem, "token_dims": list(meta.token_dims), "out_dtype": str(meta.out_dtype)}
        try:
            file.append(index, row)
        except OSError as exc:  # e.g. the disk is full: what does not fit runs live
            log.warning("teacher cache: cannot write to %s (%s); further outputs run the live teacher", self.path, exc)
            self.full = True
            return False
        return True

    def flush(self) -> None:
        """Write the indices and the manifest (atomically): a later run can reuse what is
        indexed."""
        for name, file in self.files.items():
            if file._handle is not None:
                file._handle.flush()
            file.save_index(os.path.join(self.path, self.meta[name]["file"] + ".npy"))
        manifest = {"fingerprint": self.fingerprint.as_dict(), "outputs": self.meta}
        tmp = os.path.join(self.path, self.MANIFEST + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=1, sort_keys=True)
        os.replace(tmp, os.path.join(self.path, self.MANIFEST))

    def close(self) -> None:
        for file in self.files.values():
            file.close()


# --------------------------------------------------------------------------------------
# The cache
# --------------------------------------------------------------------------------------


class TeacherOutputCache:
    """Storage of the teacher's per-example outputs: memory, then disk, then nothing.

    :param dtype: ``'float32'`` (rebuilt outputs equal the live teacher's exactly) or
        ``'float16'`` (half the memory; outputs rounded to float16: losses stay within
        1e-3 relative of the live teacher's, 4e-5 measured in
        tests/torch/test_teacher_cache.py).
    :param memory_budget_mb: bytes of stored outputs kept in memory.
    :param directory: where outputs beyond the memory budget go
        (``<directory>/<fingerprint>/``); default ``<output_dir>/teacher_cache`` of the
        search; without either, nothing goes to disk.
    :param disk_budget_mb: bytes of stored outputs on disk (None: while more than 1 GB of
        the disk stays free).
    :param prefill: run the teacher over the whole training set when the cache is first
        used, and whenever a trial asks for outputs not yet stored, so that trial times
        are comparable.
    :param enabled: False turns the cache off (the built-in training then runs the
        teacher at every step).

    Share one cache across train functions by sharing its
    :class:`~autokd_torch.teacher.TeacherForward`.
    """

    def __init__(
        self,
        dtype: str = "float32",
        memory_budget_mb: float = 2048.0,
        directory: str | os.PathLike | None = None,
        disk_budget_mb: float | None = None,
        prefill: bool = False,
        enabled: bool = True,
    ):
        if dtype not in _DTYPES:
            raise ConfigError(f"train.teacher_cache.dtype: 'float32' or 'float16', got {dtype!r}")
        for field, value in (("memory_budget_mb", memory_budget_mb), ("disk_budget_mb", disk_budget_mb)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
                raise ConfigError(f"train.teacher_cache.{field}: a number of megabytes >= 0, got {value!r}")
        self.dtype = dtype
        self.storage_dtype = _DTYPES[dtype]
        self.memory_budget = int(memory_budget_mb * _MB)
        self.directory = None if directory is None else os.fspath(directory)
        self.disk_budget = None if disk_budget_mb is None else int(disk_budget_mb * _MB)
        self.prefill = bool(prefill)
        self.enabled = bool(enabled)
        self.meta: dict[Any, _KeyMeta] = {}
        self._memory: dict[Any, dict[int, torch.Tensor]] = {}
        self.memory_bytes = 0
        self._disk: _DiskTier | None = None
        self._root: str | None = None
        self._fingerprint_fn: Callable[[], CacheFingerprint] | None = None
        self._fingerprint: CacheFingerprint | None = None
        self._disk_unavailable_logged = False
        # In an executor's worker the files are shared with concurrent trials: mapped,
        # never appended to (autokd_torch.teacher.TeacherForward.begin sets it).
        self.disk_read_only = False

    @classmethod
    def from_config(cls, config: TeacherCacheConfig | Mapping[str, Any]) -> TeacherOutputCache:
        """A cache from ``train.teacher_cache``."""
        if isinstance(config, Mapping):
            known = {f.name for f in attrs.fields(TeacherCacheConfig)}
            unknown = sorted(set(config) - known)
            if unknown:
                raise ConfigError(f"train.teacher_cache: unknown keys {unknown} (known: {', '.join(sorted(known))})")
            config = TeacherCacheConfig(**config)
        return cls(
            dtype=config.dtype,
            memory_budget_mb=config.memory_budget_mb,
            directory=config.directory,
            disk_budget_mb=config.disk_budget_mb,
            prefill=config.prefill,
            enabled=config.enabled,
        )

    # --- binding to a teacher and a dataset ---------------------------------------------
    def bind(self, fingerprint: Callable[[], CacheFingerprint], root: str | None) -> None:
        """Start storing for a new teacher / dataset: forget what is stored.
        ``fingerprint`` is computed only when the disk is first needed."""
        self.clear()
        self._fingerprint_fn = fingerprint
        self._fingerprint = None
        self._root = self.directory or root
        self._disk_unavailable_logged = False

    @property
    def root(self) -> str | None:
        """The directory the cache's files go under (``<root>/<fingerprint>/``), if any."""
        return self._root

    def set_root(self, root: str | None) -> None:
        """The default directory (``<output_dir>/teacher_cache``) once it is known."""
        if self.directory is None and self._disk is None and root is not None:
            self._root = root

    def clear(self) -> None:
        """Forget every stored output (files on disk stay, for a later run)."""
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
        """The directory of this cache's files, once there is one."""
        return None if self._disk is None else self._disk.path

    def reuse_from_disk(self) -> int:
        """Open a cache a former run left under the directory if its fingerprint
        matches; log why any other found there is refused. The number of rows reused."""
        root = self._root
        if root is None or not os.path.isdir(root):
            return 0
        fingerprint = self.fingerprint
        digest = fingerprint.digest()
        reused = 0
        for entry in sorted(os.listdir(root)):
            manifest_path = os.path.join(root, entry, _DiskTier.MANIFEST)
            if not os.path.isfile(manifest_path):
                continue
            try:
                with open(manifest_path, encoding="utf-8") as fh:
                    stored = json.load(fh).get("fingerprint") or {}
            except (OSError, ValueError) as exc:
                log.warning("teacher cache: not reusing %s: unreadable manifest (%s)", os.path.join(root, entry), exc)
                continue
            differences = fingerprint.differences(stored)
            if entry == digest and not differences and self._disk is None:
                self._disk = _DiskTier(os.path.join(root, entry), fingerprint, self.storage_dtype, self.disk_budget)
                reused = self._disk.load()
                log.info("teacher cache: reusing %d stored outputs from %s", reused, self._disk.path)
            elif differences:
                log.warning(
                    "teacher cache: refusing the stale cache in %s: %s differ%s from this run's (it is left on disk; "
                    "delete it to free the space)",
                    os.path.join(root, entry),
                    " and ".join(differences),
                    "s" if len(differences) == 1 else "",
                )
        return reused

    def _open_disk(self) -> _DiskTier | None:
        if self._disk is not None:
            return self._disk
        if self.disk_read_only:
            return None
        if self._root is None:
            if not self._disk_unavailable_logged:
                log.info(
                    "teacher cache: the memory budget (%.0f MB) is used up and there is no directory for the rest: "
                    "set train.teacher_cache.directory (or give the search an output directory); the remaining "
                    "examples run the live teacher",
                    self.memory_budget / _MB,
                )
                self._disk_unavailable_logged = True
            return None
        fingerprint = self.fingerprint
        path = os.path.join(self._root, fingerprint.digest())
        try:
            self._disk = _DiskTier(path, fingerprint, self.storage_dtype, self.disk_budget)
            if os.path.isfile(os.path.join(path, _DiskTier.MANIFEST)):
                self._disk.load()
            self._disk.flush()
        except OSError as exc:
            log.warning("teacher cache: cannot use %s (%s); the remaining examples run the live teacher", path, exc)
            self._root = None
            self._disk = None
            return None
        log.info("teacher cache: memory budget used up; further outputs go to %s", path)
        return self._disk

    # --- rows ---------------------------------------------------------------------------
    def layout(self, key: Any, token_dims: tuple[int, ...]) -> _KeyMeta | None:
        """How ``key``'s rows are laid out: known from this run, or from the rows a former
        run left on disk if they have these per-token dims; None before its first row."""
        meta = self.meta.get(key)
        if meta is None and self._disk is not None:
            name = output_key_name(key)
            meta = None if name is None else self._disk.stored_meta(name, token_dims)
            if meta is not None:
                self.meta[key] = meta
        return meta

    def describe(self, key: Any, meta: _KeyMeta) -> None:
        """Record how ``key`` is laid out before its first row is stored."""
        self.meta[key] = meta

    def get(self, key: Any, index: int) -> torch.Tensor | None:
        """The stored row of example ``index`` (in the storage dtype), or None."""
        rows = self._memory.get(key)
        if rows is not None:
            row = rows.get(index)
            if row is not None:
                return row
        if self._disk is not None:
            name = output_key_name(key)
            if name is not None:
                return self._disk.get(name, index)
        return None

    def put(self, key: Any, index: int, row: torch.Tensor) -> torch.Tensor | None:
        """Store example ``index``'s row (memory first, then disk); the stored row, or
        None when it fits nowhere."""
        stored = row.detach().to(
            device="cpu", dtype=self.storage_dtype, copy=True, memory_format=torch.contiguous_format
        )
        nbytes = stored.numel() * stored.element_size()
        if self.memory_bytes + nbytes <= self.memory_budget:
            rows = self._memory.setdefault(key, {})
            old = rows.get(index)
            if old is not None:
                self.memory_bytes -= old.numel() * old.element_size()
            rows[index] = stored
            self.memory_bytes += nbytes
            return stored
        name = output_key_name(key)
        if name is None:
            return None
        disk = self._open_disk()
        if disk is None or self.disk_read_only or not disk.put(name, self.meta[key], index, stored):
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
        """Make what is on disk reusable by a later run (called at the end of a trial)."""
        if self._disk is not None and not self.disk_read_only:
            self._disk.flush()

    def close(self) -> None:
        self.clear()

    def stats(self) -> dict:
        return {
            "dtype": self.dtype,
            "bytes_in_memory": self.memory_bytes,
            "bytes_on_disk": self.disk_bytes,
            "directory": self.path,
        }
