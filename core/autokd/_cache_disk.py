"""The disk tier of the teacher-output cache (:mod:`autokd.teacher_cache`): per output, a
raw ``.bin`` of rows read back through ``numpy.memmap`` and a ``.npy`` index, with a JSON
manifest naming the fingerprint; nothing is unpickled."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
from typing import Any

log = logging.getLogger("autokd.teacher_cache")

_MB = 2**20
# Without a disk budget the disk tier stops while this much of the disk is still free, and
# checks the free space every _CHECK_EVERY bytes it writes.
_MIN_FREE = 2**30
_CHECK_EVERY = 64 * _MB


class DiskFile:
    """One output's rows, appended to a raw file and read back through ``np.memmap``."""

    def __init__(self, path: str, dtype: str):
        import numpy as np

        self.path = path
        self.np_dtype = np.dtype(dtype)
        self.entries: dict[int, tuple[int, tuple[int, ...]]] = {}
        self.bytes = 0
        self._handle = None
        self._map = None
        self._mapped = 0

    def load_index(self, index_path: str) -> None:
        import numpy as np

        table = np.load(index_path, allow_pickle=False)
        size = os.path.getsize(self.path) if os.path.exists(self.path) else 0
        for row in table.tolist():
            index, offset, shape = int(row[0]), int(row[1]), tuple(int(s) for s in row[2:])
            nbytes = math.prod(shape) * self.np_dtype.itemsize
            if offset + nbytes <= size:  # rows past a truncated file are dropped
                self.entries[index] = (offset, shape)
                self.bytes += nbytes

    def save_index(self, index_path: str) -> None:
        import numpy as np

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

    def append(self, index: int, row: Any) -> None:
        if self._handle is None:
            self._handle = open(self.path, "ab")  # noqa: SIM115 - kept open while the store lives
        offset = self._handle.seek(0, os.SEEK_END)
        data = row.tobytes()
        self._handle.write(data)
        old = self.entries.get(index)
        if old is not None:
            self.bytes -= math.prod(old[1]) * self.np_dtype.itemsize
        self.entries[index] = (offset, tuple(row.shape))
        self.bytes += len(data)

    def read(self, index: int) -> Any:
        import numpy as np

        entry = self.entries.get(index)
        if entry is None:
            return None
        offset, shape = entry
        nbytes = math.prod(shape) * self.np_dtype.itemsize
        if self._map is None or offset + nbytes > self._mapped:
            if self._handle is not None:
                self._handle.flush()
            self._map = np.memmap(self.path, dtype=np.uint8, mode="r")
            self._mapped = self._map.shape[0]
        return np.array(self._map[offset : offset + nbytes]).view(self.np_dtype).reshape(shape)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        self._map = None
        self._mapped = 0


class DiskTier:
    """``<root>/<digest>/``: a manifest, and per output a ``.bin`` of rows and a ``.npy``
    index of ``(example index, offset, shape...)``."""

    MANIFEST = "manifest.json"

    def __init__(self, path: str, fingerprint: Any, dtype: str, budget: int | None, logger: Any = None):
        self.path, self.fingerprint, self.dtype, self.budget = path, fingerprint, dtype, budget
        self.log = logger or log
        self.files: dict[str, DiskFile] = {}
        self.meta: dict[str, dict] = {}
        self.full = False
        self._unchecked = _CHECK_EVERY  # check the free space before the first write
        os.makedirs(path, exist_ok=True)

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files.values())

    def load(self) -> int:
        """Index the rows a former run left here; the number of rows."""
        with open(os.path.join(self.path, self.MANIFEST), encoding="utf-8") as fh:
            manifest = json.load(fh)
        for name, meta in (manifest.get("outputs") or {}).items():
            index_path = os.path.join(self.path, meta["file"] + ".npy")
            if not os.path.exists(index_path):
                continue
            file = DiskFile(os.path.join(self.path, meta["file"] + ".bin"), self.dtype)
            file.load_index(index_path)
            self.files[name], self.meta[name] = file, meta
        return sum(len(f.entries) for f in self.files.values())

    def stored_meta(self, name: str, token_dims: tuple[int, ...]) -> Any:
        """The layout a former run stored ``name`` with, if it had these per-token dims;
        rows stored otherwise are dropped (with a log line)."""
        stored = self.meta.get(name)
        if stored is None:
            return None
        if tuple(stored["token_dims"]) == tuple(token_dims):
            from .teacher_cache import KeyMeta

            return KeyMeta(tuple(token_dims), stored["out_dtype"])
        self.log.info(
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

    def put(self, name: str, meta: Any, index: int, row: Any) -> bool:
        if self.full:
            return False
        if self.budget is not None and self.bytes + row.nbytes > self.budget:
            self.log.info(
                "teacher cache: the disk budget (%.1f MB) is used up in %s; further outputs run the live teacher",
                self.budget / _MB,
                self.path,
            )
            self.full = True
            return False
        if self.budget is None:
            self._unchecked += row.nbytes
            if self._unchecked >= _CHECK_EVERY:
                self._unchecked = 0
                free = shutil.disk_usage(self.path).free
                if free < _MIN_FREE + _CHECK_EVERY:
                    self.log.warning(
                        "teacher cache: only %.0f MB free on the disk of %s; further outputs run the live "
                        "teacher (set train.teacher_cache.disk_budget_mb or directory)",
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
            stem = hashlib.sha256(name.encode()).hexdigest()[:16]
            file = self.files[name] = DiskFile(os.path.join(self.path, stem + ".bin"), self.dtype)
            self.meta[name] = {"file": stem, "token_dims": list(meta.token_dims), "out_dtype": meta.out_dtype}
        try:
            file.append(index, row)
        except OSError as exc:  # e.g. the disk is full: what does not fit runs live
            self.log.warning(
                "teacher cache: cannot write to %s (%s); further outputs run the live teacher", self.path, exc
            )
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
        tmp = os.path.join(self.path, self.MANIFEST + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"fingerprint": self.fingerprint.as_dict(), "outputs": self.meta}, fh, indent=1, sort_keys=True)
        os.replace(tmp, os.path.join(self.path, self.MANIFEST))

    def close(self) -> None:
        for file in self.files.values():
            file.close()
