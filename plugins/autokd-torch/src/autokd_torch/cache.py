"""The teacher-output cache of autokd-torch (issue #8): the core's
:class:`autokd.teacher_cache.TeacherOutputStore` (keys, fingerprint, memory / disk budgets
and tiers, reuse of a store left on disk) keeping torch tensors in memory, and the
torch side of the fingerprint (the teacher's ``state_dict``, tensors in the data).

Outputs are keyed by the example's index in the training dataset and by what they are
(the teacher's logits, or one processed feature ``(layer, process)``), so shuffled
batches and other batch sizes hit the cache. Per-token features are stored trimmed to
the example's real tokens (:mod:`autokd_torch.padding`) and re-padded to any batch.

Storage tiers, in order: memory up to ``memory_budget_mb``; then memory-mapped files
under ``<directory>/<fingerprint>/`` (``directory`` defaults to
``<output_dir>/teacher_cache``) up to ``disk_budget_mb``; what fits nowhere is computed
by the live teacher at every use. A cache on disk is reused (``autokd run --resume``)
only by a run whose fingerprint is the same (the teacher's weights, the training data's
content, the collator, the storage dtype); :mod:`autokd.teacher_cache` has the rules.

:class:`TeacherOutputCache` is only storage; :class:`~autokd_torch.teacher.TeacherForward`
decides when the cache is valid (:mod:`autokd_torch.cache_policy`) and fills it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from autokd import teacher_cache as _core
from autokd.teacher_cache import (
    LOGITS,
    CacheFingerprint,
    KeyMeta,
    TeacherOutputStore,
    collator_fingerprint,
    output_key_name,
    update_array_bytes,
)

__all__ = [
    "LOGITS",
    "TeacherOutputCache",
    "CacheFingerprint",
    "KeyMeta",
    "teacher_fingerprint",
    "dataset_fingerprint",
    "collator_fingerprint",
    "output_key_name",
    "torch_dtype",
]

_STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype a :class:`~autokd.teacher_cache.KeyMeta` names (``'torch.float32'``)."""
    return getattr(torch, name.removeprefix("torch."))


# --- fingerprints: torch's leaves for the core's hashing ----------------------------------
def _update_tensor(h: Any, tensor: torch.Tensor) -> None:
    t = tensor.detach().cpu().contiguous()
    update_array_bytes(h, str(t.dtype), tuple(t.shape), t.reshape(-1).view(torch.uint8).numpy())


def _hash_leaf(h: Any, value: Any) -> bool:
    """Tensors (and numpy arrays, as tensors) for :func:`autokd.teacher_cache.update_value`."""
    if isinstance(value, torch.Tensor):
        h.update(b"T")
        _update_tensor(h, value)
        return True
    if isinstance(value, np.ndarray):
        h.update(b"N")
        _update_tensor(h, torch.from_numpy(np.ascontiguousarray(value)))
        return True
    return False


def teacher_fingerprint(model: nn.Module) -> str:
    """A hash of the teacher's class and its weights (``state_dict``: parameters and
    persistent buffers), names, dtypes and shapes included."""
    weights = ((name, value) for name, value in model.state_dict().items() if isinstance(value, torch.Tensor))
    return _core.weights_fingerprint(
        f"{type(model).__module__}.{type(model).__qualname__}", weights, update_array=_update_tensor
    )


def dataset_fingerprint(dataset: Any) -> str:
    """A hash of the training data (:func:`autokd.teacher_cache.dataset_fingerprint`:
    the dataset's declared fingerprint, or its length and every example's content)."""
    return _core.dataset_fingerprint(dataset, leaf=_hash_leaf)


# --- the cache ----------------------------------------------------------------------------
class TeacherOutputCache(TeacherOutputStore):
    """Storage of the teacher's per-example outputs as CPU tensors: memory, then disk,
    then nothing (:class:`autokd.teacher_cache.TeacherOutputStore`).

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

    LOGGER = "autokd.torch"

    def __init__(
        self,
        dtype: str = "float32",
        memory_budget_mb: float = 2048.0,
        directory: Any = None,
        disk_budget_mb: float | None = None,
        prefill: bool = False,
        enabled: bool = True,
    ):
        super().__init__(dtype, memory_budget_mb, directory, disk_budget_mb, prefill, enabled)
        self.storage_dtype = _STORAGE_DTYPES[self.dtype]
        # entries stay in host memory; pinned when they feed a CUDA device, so that the
        # per-batch copy to the device does not block (set by TeacherForward.place)
        self.pin_memory = False

    def to_row(self, row: torch.Tensor) -> torch.Tensor:
        return row.detach().to(device="cpu", dtype=self.storage_dtype, copy=True, memory_format=torch.contiguous_format)

    def row_nbytes(self, row: torch.Tensor) -> int:
        return row.numel() * row.element_size()

    def keep_in_memory(self, row: torch.Tensor) -> torch.Tensor:
        return row.pin_memory() if self.pin_memory else row

    def disk_row(self, row: torch.Tensor) -> np.ndarray:
        return row.numpy()

    def from_disk(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array)
