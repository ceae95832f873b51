"""When autokd-torch's teacher-output cache serves a run, and why not: the validity checks
and the cache's life in a run (binding it to a dataset, reusing a store left on disk,
sharing it with an executor's other workers, the trial's ``extras.teacher_cache``
record), for :class:`~autokd_torch.teacher.TeacherForward`.

The cache is used only while it is valid; otherwise it is off, the log says why, and
each trial's record (``extras['teacher_cache']``) says so too:

- ``train.teacher_cache.enabled: false``;
- the teacher was in training mode when handed to the built-in functions, or its
  weights changed between trials (it is then not frozen: checked at each trial start);
- the training data is not a map-style dataset (an iterable of batches, or a
  ``DataLoader`` of your own, carries no example indices);
- the dataset declares ``random_augmentation = True`` (set this attribute on a dataset
  whose ``__getitem__`` draws random augmentations), or the data collator does (or is a
  masking language-modelling collator of transformers);
- the batches are padded on the left (:class:`~autokd_torch.teacher.TeacherForward`
  turns the cache off for the run when it sees such a batch).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from torch import nn

from autokd.cache_switch import DISABLED, WEIGHTS_CHANGED, CacheSwitch, run_record
from autokd.worker import in_executor_worker

from .cache import CacheFingerprint, TeacherOutputCache, collator_fingerprint, dataset_fingerprint, teacher_fingerprint

__all__ = ["CachePolicy", "make_cache", "random_collator", "weight_versions"]

log = logging.getLogger("autokd.torch")


# Collators of transformers that mask tokens at random: the teacher's inputs change at
# every use, so its outputs cannot be cached.
_RANDOM_COLLATORS = ("DataCollatorForWholeWordMask", "DataCollatorForPermutationLanguageModeling")


def random_collator(collate_fn: Any) -> bool:
    if collate_fn is None:
        return False
    if getattr(collate_fn, "random_augmentation", False):
        return True
    names = {cls.__name__ for cls in type(collate_fn).__mro__}
    if names.intersection(_RANDOM_COLLATORS):
        return True
    return "DataCollatorForLanguageModeling" in names and bool(getattr(collate_fn, "mlm", True))


def weight_versions(model: nn.Module) -> tuple:
    """Which tensors hold the teacher's weights and their in-place version counters: any
    optimizer step or ``load_state_dict`` changes them (a cheap check before hashing)."""
    return tuple((name, id(t), t._version) for name, t in model.state_dict(keep_vars=True).items())


def make_cache(cache: Any) -> TeacherOutputCache | None:
    """The cache a ``cache=`` argument names (:meth:`autokd.teacher_cache.TeacherOutputStore.coerce`)."""
    return TeacherOutputCache.coerce(cache)


class CachePolicy:
    """The cache side of :class:`~autokd_torch.teacher.TeacherForward`: whether its
    ``cache`` serves the current run, and the run's start and end. The forward pass
    (``_prefill``) is the subclass's."""

    def _init_policy(self, teacher_model: nn.Module, cache: Any, output_dir: Any, write_files: bool) -> None:
        self.cache = make_cache(cache)
        self.output_dir = None if output_dir is None else os.fspath(output_dir)
        # only the main one of several processes writes the cache's files
        self.write_files = bool(write_files)
        # a teacher in training mode when handed over is being trained, not frozen
        self._handed_in_training = bool(teacher_model.training)
        self._switch = CacheSwitch(log)  # why the cache is off, for good or for the current run
        self._weights_hash: str | None = None
        self._weight_versions: tuple | None = None
        self._data: Any = None
        self._collate_fn: Any = None
        self._bound = False
        self._prefilled = 0
        self.hits = 0
        self.misses = 0
        self._run_start = (0, 0)

    # --- validity -------------------------------------------------------------------------
    @property
    def cache_enabled(self) -> bool:
        """Whether the cache serves the current run."""
        return self.cache_off_reason is None

    @property
    def cache_off_reason(self) -> str | None:
        unprepared = None if self._bound else "not prepared for a training dataset (TeacherForward.prepare)"
        return self._switch.reason(self.cache, unprepared)

    def _turn_off(self, reason: str, for_good: bool, warn: bool = False) -> None:
        if for_good:
            if self.cache is not None:
                self.cache.clear()
            self._bound = False
            self._data = None
        self._switch.turn_off(reason, for_good, warn)

    def _check_teacher(self) -> None:
        if self._switch.off is not None:
            return
        teacher = self.teacher_model
        if self._handed_in_training or teacher.training:
            self._turn_off(
                "the teacher was in training mode when handed to autokd: a teacher being trained is not frozen, "
                "so its outputs cannot be reused (call teacher.eval() before handing it over)",
                for_good=True,
                warn=True,
            )
            return
        versions = weight_versions(teacher)
        if self._weights_hash is None:
            self._weights_hash = teacher_fingerprint(teacher)
        elif versions != self._weight_versions and teacher_fingerprint(teacher) != self._weights_hash:
            self._turn_off(WEIGHTS_CHANGED, for_good=True, warn=True)
            return
        self._weight_versions = versions

    def _check_data(self, train_data: Any, collate_fn: Any) -> str | None:
        if train_data is None or not (hasattr(train_data, "__getitem__") and hasattr(train_data, "__len__")):
            return (
                f"the training data ({type(train_data).__name__}) is not a map-style dataset, so its batches carry "
                f"no example indices to key the cache by; pass the dataset itself (len() and [i])"
            )
        if getattr(train_data, "random_augmentation", False):
            return (
                f"the training dataset ({type(train_data).__name__}) declares random_augmentation = True: "
                f"the teacher's inputs differ at every use"
            )
        if random_collator(collate_fn):
            return (
                f"the data collator ({type(collate_fn).__name__}) changes the inputs at random (masking or "
                f"random_augmentation = True): the teacher's inputs differ at every use"
            )
        return None

    def prepare(
        self,
        train_data: Any,
        *,
        data_collator: Any = None,
        batch_size: int = 32,
        output_dir: str | os.PathLike | None = None,
        show_progress: bool = True,
    ) -> None:
        """Start a run (a trial) on ``train_data``: check that the cache is valid (the
        teacher is still frozen, the data is indexed and not randomly augmented), bind
        the cache to this dataset (reusing a matching cache left on disk), and with
        ``prefill`` run the teacher over every example not stored yet."""
        self._run_start = (self.hits, self.misses)
        self._switch.new_run()
        if output_dir is not None:
            self.output_dir = os.fspath(output_dir)
        cache = self.cache
        if cache is None:
            return
        if not cache.enabled:
            self._turn_off(DISABLED, for_good=False)
            return
        self._check_teacher()
        if self._switch.off is not None:
            return
        reason = self._check_data(train_data, data_collator)
        if reason is not None:
            self._turn_off(reason, for_good=False)
            return
        root = (
            None if self.output_dir is None or not self.write_files else os.path.join(self.output_dir, "teacher_cache")
        )
        if not self._bound or train_data is not self._data or data_collator is not self._collate_fn:
            self._data, self._collate_fn = train_data, data_collator
            teacher_hash, dtype = self._weights_hash, cache.dtype

            def fingerprint() -> CacheFingerprint:
                return CacheFingerprint(
                    teacher_hash, dataset_fingerprint(train_data), collator_fingerprint(data_collator), dtype
                )

            cache.bind(fingerprint, root)
            self._bound = True
            if in_executor_worker():
                self._begin_in_worker(train_data, data_collator, batch_size, show_progress)
                return
            cache.reuse_from_disk()
        else:
            cache.set_root(root)
        if cache.prefill and not cache.disk_read_only:
            self._prefill(train_data, data_collator, batch_size, show_progress)

    def _begin_in_worker(self, train_data: Any, data_collator: Any, batch_size: int, show_progress: bool) -> None:
        """In an executor's worker (docs/scaling.md), trials of other workers share the
        cache's directory: with ``prefill`` the first worker fills it (on disk, whatever
        the memory budget) under a file lock while the others wait; then every worker maps
        the files read-only and never appends to them, so concurrent trials cannot
        corrupt each other's rows. Outputs not on disk are kept in this worker's memory."""
        cache = self.cache
        cache.disk_read_only = False
        root = cache.root
        if not cache.prefill or root is None:
            cache.reuse_from_disk()
            cache.disk_read_only = True
            return
        from filelock import FileLock

        os.makedirs(root, exist_ok=True)
        with FileLock(os.path.join(root, "prefill.lock")):
            cache.reuse_from_disk()
            memory_budget, cache.memory_budget = cache.memory_budget, 0  # shared only through files
            try:
                self._prefill(train_data, data_collator, batch_size, show_progress)
            finally:
                cache.memory_budget = memory_budget
        cache.disk_read_only = True

    def finish(self) -> dict:
        """End a run: make what is on disk reusable, and return the run's cache record
        (``enabled``, ``hits`` and ``misses`` counted in examples, bytes in memory and on
        disk; ``reason`` when off)."""
        hits, misses = self.hits - self._run_start[0], self.misses - self._run_start[1]
        record = run_record(self.cache, self.cache_off_reason, hits, misses, self._prefilled)
        self._prefilled = 0
        return record
