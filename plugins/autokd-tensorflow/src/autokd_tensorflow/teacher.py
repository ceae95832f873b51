"""The teacher-output cache of the TensorFlow backend (issue #18): the frozen teacher's
logits and processed features, computed once per training example and fed to every
later step, stage and trial of a search from :class:`autokd.teacher_cache.TeacherOutputStore`
(the core's keys, fingerprint, memory / disk budgets and ``extras.teacher_cache`` record,
shared with autokd-torch).

A stage's teacher outputs are keyed by what they are (``logits`` for output
distillation, ``feature:<layer>[<process>]`` for each layer mapping) and by the
example's index in the training arrays. The first stage that needs an output runs the
teacher once over every example not stored yet (the *fill*: a Keras training step
cannot hand rows back to Python cheaply, so TensorFlow always fills up front); the
stage's batches then carry the stored rows, looked up per batch in the input pipeline,
and its training step uses them in place of the teacher. A batch with any example the
budgets left out runs the live teacher, so the outputs are always the teacher's: equal
to the live ones with ``dtype: float32``, rounded with ``float16``.

The cache serves only while it is valid; otherwise it is off, the log says why and so
does each trial's ``extras.teacher_cache``:

- ``train.teacher_cache.enabled: false``;
- the teacher's weights changed between trials (it is not frozen; checked at each trial);
- the training data is not a mapping of arrays or an ``(inputs, labels)`` pair (a
  ``tf.data.Dataset`` carries no example indices: pass the arrays to cache);
- the stage's criterion is not one of the built-in ones.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from autokd.cache_switch import WEIGHTS_CHANGED, CacheSwitch, run_record
from autokd.teacher_cache import (
    LOGITS,
    CacheFingerprint,
    KeyMeta,
    TeacherOutputStore,
    content_fingerprint,
    weights_fingerprint,
)

from . import _tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

# isort: split
import numpy as np
import tensorflow as tf

from .data import array_slices
from .features import logits_of

__all__ = ["TeacherForward", "teacher_fingerprint"]

log = logging.getLogger("autokd.tensorflow")

# How the arrays become batches (the collator of the fingerprint).
_COLLATOR = "autokd_tensorflow:tf.data.Dataset.from_tensor_slices.batch"


def teacher_fingerprint(model: Any) -> str:
    """A hash of the teacher's class and every weight (name, dtype, shape, values)."""
    kind = f"{type(model).__module__}.{type(model).__qualname__}"
    if not getattr(model, "built", True) and hasattr(model, "dummy_inputs"):
        model(model.dummy_inputs, training=False)  # a transformers model makes its weights on its first call
    return weights_fingerprint(kind, ((w.name, w.numpy()) for w in model.weights))


def _keys(criterion: Any) -> list | None:
    """The outputs a built-in criterion reads from the teacher; None for another one."""
    from .criteria import IntermediateLayersKnowledgeDistillationLoss, KnowledgeDistillationLoss

    if isinstance(criterion, IntermediateLayersKnowledgeDistillationLoss):
        return list(criterion.teacher_specs())
    if isinstance(criterion, KnowledgeDistillationLoss):
        return [LOGITS]
    return None


def _values(keys: list, output: Any, features: list) -> list:
    features = iter(features)
    return [tf.cast(logits_of(output), tf.float32) if key == LOGITS else next(features) for key in keys]


class TeacherForward:
    """The frozen teacher's outputs for the stages of a search, from the cache where it
    can.

    :param teacher_model: the teacher.
    :param cache: None (no cache), a :class:`~autokd.teacher_cache.TeacherOutputStore`,
        or ``train.teacher_cache`` (a ``TeacherCacheConfig`` or its dict).
    :param output_dir: the search's output directory: files beyond the memory budget go
        to ``<output_dir>/teacher_cache/`` unless ``train.teacher_cache.directory`` says
        otherwise.

    :func:`~autokd_tensorflow.distill` calls :meth:`prepare` at the start of each trial
    and :meth:`finish` at its end; each stage asks :meth:`stage_dataset` for its batches.
    """

    def __init__(self, teacher_model: Any, cache: Any = None, output_dir: str | os.PathLike | None = None):
        self.teacher_model = teacher_model
        self.store = TeacherOutputStore.coerce(cache)
        self.output_dir = None if output_dir is None else os.fspath(output_dir)
        self.hits = 0
        self.misses = 0
        self._run_start = (0, 0)
        self._switch = CacheSwitch(log)  # why the cache is off, for good or for this trial
        self._weights_hash: str | None = None
        self._data: Any = None
        self._arrays: tuple[Any, Any] | None = None
        self._shapes: dict[Any, tuple[int, ...]] = {}
        self._filled: dict[Any, set[int]] = {}  # examples the teacher ran on for each key (stored or not)
        self._prefilled = 0

    @property
    def cache_off_reason(self) -> str | None:
        return self._switch.reason(self.store, None if self._arrays is not None else "not prepared for training data")

    @property
    def cache_enabled(self) -> bool:
        return self.cache_off_reason is None

    def _turn_off(self, reason: str, for_good: bool) -> None:
        if for_good:
            if self.store is not None:
                self.store.clear()
            self._arrays, self._data = None, None
        self._switch.turn_off(reason, for_good, warn=for_good)

    # --- a trial --------------------------------------------------------------------------
    def prepare(self, train_data: Any, output_dir: str | os.PathLike | None = None) -> None:
        """Start a trial on ``train_data``: check the teacher is still frozen and the data
        carries example indices (arrays), and bind the store to them (reusing a matching
        store left on disk)."""
        self._run_start = (self.hits, self.misses)
        self._switch.new_run()
        if output_dir is not None:
            self.output_dir = os.fspath(output_dir)
        store = self.store
        if store is None or not store.enabled or self._switch.off is not None:
            return
        weights_hash = teacher_fingerprint(self.teacher_model)
        if self._weights_hash is None:
            self._weights_hash = weights_hash
        elif weights_hash != self._weights_hash:
            self._turn_off(WEIGHTS_CHANGED, for_good=True)
            return
        if train_data is self._data and self._arrays is not None:
            return
        arrays = array_slices(train_data)
        same = arrays is not None and self._arrays is not None and store.fingerprint is not None
        if same and content_fingerprint(arrays) == store.fingerprint.data:  # the same examples, another object
            self._data, self._arrays = train_data, arrays
            return
        if arrays is None:
            self._arrays = None
            self._turn_off(
                f"the training data ({type(train_data).__name__}) carries no example indices to key the cache by; "
                f"pass a mapping of arrays or an (inputs, labels) pair of arrays instead of a tf.data.Dataset",
                for_good=False,
            )
            return
        self._data, self._arrays = train_data, arrays
        self._shapes.clear()
        self._filled.clear()
        root = None if self.output_dir is None else os.path.join(self.output_dir, "teacher_cache")
        teacher_hash, dtype = self._weights_hash, store.dtype
        store.bind(lambda: CacheFingerprint(teacher_hash, content_fingerprint(arrays), _COLLATOR, dtype), root)
        store.reuse_from_disk()

    def finish(self) -> dict:
        """End a trial: make what is on disk reusable, and return the trial's record
        (``enabled``, ``hits`` and ``misses`` in examples, ``reason`` when off, the
        store's bytes in memory and on disk, ``prefilled``)."""
        hits, misses = self.hits - self._run_start[0], self.misses - self._run_start[1]
        record = run_record(self.store, self.cache_off_reason, hits, misses, self._prefilled)
        self._prefilled = 0
        return record

    # --- a stage --------------------------------------------------------------------------
    def stage_keys(self, criterion: Any) -> list | None:
        """The outputs the stage's criterion takes from the cache; None when the cache
        does not serve it."""
        if not self.cache_enabled:
            return None
        keys = _keys(criterion)
        if keys is None:
            self._turn_off(
                f"the criterion {type(criterion).__name__} is not a built-in one: its teacher outputs are "
                f"not known to the cache",
                for_good=False,
            )
        return keys

    def _fill(self, criterion: Any, keys: list, batch_size: int) -> None:
        """Run the teacher once over every example not stored yet for ``keys``."""
        store, (inputs, _labels) = self.store, self._arrays
        count = len(tf.nest.flatten(inputs)[0])
        for key in keys:
            store.layout(key, ())  # the layout of rows a former run left on disk
        # an example the budgets left out is not run again: it would not fit this time either
        todo = [i for i in range(count) if not all(store.contains(k, i) or i in self._filled.get(k, ()) for k in keys)]
        missing_shape = [k for k in keys if k not in self._shapes]
        if not todo and not missing_shape:
            return
        if not todo:  # rows from a former run: the shapes of a stored one
            for key in missing_shape:
                stored = next(i for i in range(count) if store.contains(key, i))
                self._shapes[key] = tuple(store.get(key, stored).shape)
            return

        @tf.function(reduce_retracing=True, autograph=False)
        def run(batch):
            # per example and with its padded positions: the step reduces a batch's
            # features to its real positions (criterion.real_positions), cached or live
            output, features = criterion.raw_teacher_outputs(batch)
            return _values(keys, output, features)

        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            batch = tf.nest.map_structure(lambda a, c=chunk: tf.gather(a, c), inputs)
            values = [v.numpy() for v in run(batch)]
            for key, value in zip(keys, values):
                if key not in store.meta:
                    store.describe(key, KeyMeta((), str(value.dtype)))
                self._shapes[key] = tuple(value.shape[1:])
                for j, index in enumerate(chunk):
                    store.put(key, index, value[j])
                self._filled.setdefault(key, set()).update(chunk)
        self._prefilled += len(todo)
        store.flush()
        log.info("teacher cache: filled %d examples for %s", len(todo), [str(k) for k in keys])

    def stage_dataset(self, criterion: Any, batch_size: int) -> Callable[[int, int], tf.data.Dataset] | None:
        """Fill the stage's outputs, and return ``batches(skip, accumulation)``: the
        stage's endless batches from batch ``skip`` on, as dicts ``{'inputs', 'labels'
        (when the data has them), 'teacher': one tensor per key, 'teacher_hit': whether
        every example of the batch was stored}`` (with ``accumulation`` > 1, tuples of that
        many consecutive batches); None when the cache does not serve the stage."""
        keys = self.stage_keys(criterion)
        if keys is None:
            return None
        self._fill(criterion, keys, batch_size)
        inputs, labels = self._arrays
        count = len(tf.nest.flatten(inputs)[0])
        element = {"inputs": inputs, "index": np.arange(count, dtype=np.int64)}
        if labels is not None:
            element["labels"] = labels
        store, shapes = self.store, [self._shapes[k] for k in keys]
        dtypes = [tf.as_dtype(store.meta[k].out_dtype) for k in keys]

        def lookup(indices):
            indices = indices.tolist()
            rows = [[store.get(key, i) for i in indices] for key in keys]
            if all(r is not None for per_key in rows for r in per_key):
                self.hits += len(indices)
                return [np.stack(r).astype(d.as_numpy_dtype) for r, d in zip(rows, dtypes)] + [np.bool_(True)]
            self.misses += len(indices)  # the live teacher runs for this batch
            return [np.zeros((len(indices), *s), d.as_numpy_dtype) for s, d in zip(shapes, dtypes)] + [np.bool_(False)]

        def with_teacher(batch):
            batch = dict(batch)
            *values, hit = tf.numpy_function(lookup, [batch.pop("index")], [*dtypes, tf.bool], stateful=True)
            for value, shape in zip(values, shapes):
                value.set_shape((None, *shape))
            hit.set_shape(())
            return {**batch, "teacher": tuple(values), "teacher_hit": hit}

        options = tf.data.Options()
        # no read-ahead: each batch is looked up when the step takes it, so the hit and
        # miss counts are the steps' own
        options.experimental_optimization.inject_prefetch = False
        options.autotune.enabled = False

        def batches(skip: int = 0, accumulation: int = 1) -> tf.data.Dataset:
            # skipped and sharded before the lookup: only the batches a step takes are looked up
            base = tf.data.Dataset.from_tensor_slices(element).batch(batch_size).repeat()
            if skip:
                base = base.skip(skip)
            if accumulation > 1:
                data = tf.data.Dataset.zip(
                    tuple(base.shard(accumulation, i).map(with_teacher) for i in range(accumulation))
                )
            else:
                data = base.map(with_teacher)
            return data.with_options(options)

        return batches

    def step_outputs(self, criterion: Any, batch: Mapping) -> tuple[Any, list]:
        """The teacher's output and features for one cached batch inside the training
        step: the stored rows, or the live teacher when the batch was not all stored."""
        keys = _keys(criterion)
        inputs = batch["inputs"]

        def live():
            output, features = criterion.raw_teacher_outputs(inputs)
            return _values(keys, output, features)

        values = tf.cond(batch["teacher_hit"], lambda: list(batch["teacher"]), live)
        values = [tf.stop_gradient(v) for v in values]
        if keys == [LOGITS]:
            return values[0], []
        return None, criterion.real_positions(inputs, values)
