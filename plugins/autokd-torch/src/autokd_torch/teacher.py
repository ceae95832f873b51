"""The one place where the teacher's outputs for a batch are computed.

Every built-in training path (flash and regular stages, :class:`Distillation`,
``Trainer.autodistillation``) asks a :class:`TeacherForward` for the teacher's logits and
the processed intermediate features of a batch, passing the dataset indices of the
batch's examples. The frozen teacher's outputs depend only on the example, so the
teacher-output cache (issue #8, :mod:`autokd_torch.cache`) keyed by those indices stands
in for it without touching the criteria: what comes out is already processed by each
mapping's ``teacher_process``.

Per-token features are zeroed at padded positions, with or without the cache
(:mod:`autokd_torch.padding`): otherwise the teacher's targets there would depend on
which batch an example is in, and outputs rebuilt from the cache could not equal the
live teacher's.

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
- the batches are padded on the left.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import torch
from torch import nn

from autokd import AutoKDError
from autokd.config import TeacherCacheConfig
from autokd.worker import in_executor_worker

from .cache import LOGITS, CacheFingerprint, TeacherOutputCache, _KeyMeta, collator_fingerprint, dataset_fingerprint
from .cache import teacher_fingerprint as _teacher_fingerprint
from .data import call_model, logits_of
from .features import FeatureCapture, FeatureSpec, _spec_text, uses_attention_maps
from .padding import TokenPositions, repad_rows, shorten, slice_rows, token_positions, trim_row, zero_padded

__all__ = ["TeacherOutputs", "TeacherForward", "use_eager_attention"]

log = logging.getLogger("autokd.torch")


@attrs.frozen
class TeacherOutputs:
    """The teacher's logits and processed features (keyed by ``(layer, process)``) for
    one batch, in batch order.

    :ivar token_mask: ``(B, L)`` bool, True at real tokens, when the batch is padded
        (else None).
    :ivar token_dims: for each per-token output (a feature spec, or ``'logits'``), its
        dimensions that follow the padded length; the output is zero at padded positions
        there, and :meth:`mask_student` zeroes a student feature the same way.
    """

    logits: torch.Tensor | None
    features: Mapping[FeatureSpec, torch.Tensor] = attrs.field(factory=dict)
    token_mask: torch.Tensor | None = attrs.field(default=None, eq=False)
    token_dims: Mapping[Any, tuple[int, ...]] = attrs.field(factory=dict)

    def mask_student(self, key: Any, student: torch.Tensor) -> torch.Tensor:
        """``student`` (compared with the teacher output ``key``) zeroed at the positions
        where the teacher's output was zeroed, so padded positions add nothing to the
        loss."""
        dims = self.token_dims.get(key)
        if self.token_mask is None or not dims:
            return student
        teacher = self.logits if key == LOGITS else self.features.get(key)
        if teacher is None or tuple(student.shape) != tuple(teacher.shape):
            return student
        return zero_padded(student, self.token_mask, dims)


def use_eager_attention(model: nn.Module, role: str) -> None:
    """Switch a Hugging Face model to eager attention where it can be: sdpa returns no
    attention maps. (transformers 4 models that cannot switch fall back to eager by
    themselves when called with ``output_attentions=True``.)"""
    config = getattr(model, "config", None)
    current = getattr(config, "_attn_implementation", None)
    if current in (None, "eager") or not hasattr(model, "set_attn_implementation"):
        return
    with _quiet_transformers():
        try:
            model.set_attn_implementation("eager")
        except (ValueError, NotImplementedError):
            return
    if getattr(model.config, "_attn_implementation", None) == "eager":
        log.info("switched the %s from %s to eager attention: its attention maps are distilled", role, current)


class _quiet_transformers:
    """Silence transformers' warning that a model cannot switch attention at run time."""

    def __enter__(self):
        import transformers

        self._logger = transformers.logging.get_logger("transformers.modeling_utils")
        self._level = self._logger.level
        self._logger.setLevel("ERROR")

    def __exit__(self, *exc):
        self._logger.setLevel(self._level)


# Collators of transformers that mask tokens at random: the teacher's inputs change at
# every use, so its outputs cannot be cached.
_RANDOM_COLLATORS = ("DataCollatorForWholeWordMask", "DataCollatorForPermutationLanguageModeling")


def _random_collator(collate_fn: Any) -> bool:
    if collate_fn is None:
        return False
    if getattr(collate_fn, "random_augmentation", False):
        return True
    names = {cls.__name__ for cls in type(collate_fn).__mro__}
    if names.intersection(_RANDOM_COLLATORS):
        return True
    return "DataCollatorForLanguageModeling" in names and bool(getattr(collate_fn, "mlm", True))


def _weight_versions(model: nn.Module) -> tuple:
    """Which tensors hold the teacher's weights and their in-place version counters: any
    optimizer step or ``load_state_dict`` changes them (a cheap check before hashing)."""
    return tuple((name, id(t), t._version) for name, t in model.state_dict(keep_vars=True).items())


def _key_text(key: Any) -> str:
    return LOGITS if key == LOGITS else _spec_text(key)


def _device_of(inputs: Any, model: nn.Module) -> torch.device:
    if isinstance(inputs, torch.Tensor):
        return inputs.device
    values = inputs.values() if isinstance(inputs, Mapping) else inputs if isinstance(inputs, tuple | list) else ()
    for value in values:
        if isinstance(value, torch.Tensor):
            return value.device
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _batch_size(inputs: Any, positions: TokenPositions | None, indices: torch.Tensor | None) -> int:
    if indices is not None:
        return len(indices)
    if positions is not None:
        return len(positions.lengths)
    if isinstance(inputs, torch.Tensor):
        return int(inputs.shape[0])
    values = inputs.values() if isinstance(inputs, Mapping) else inputs if isinstance(inputs, tuple | list) else ()
    for value in values:
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return int(value.shape[0])
    return 0


def _make_cache(cache: Any) -> TeacherOutputCache | None:
    if cache is None or cache is False:
        return None
    if cache is True:
        return TeacherOutputCache()
    if isinstance(cache, TeacherOutputCache):
        return cache
    if isinstance(cache, TeacherCacheConfig | Mapping):
        return TeacherOutputCache.from_config(cache)
    raise AutoKDError(
        f"cache: expected a TeacherOutputCache, a train.teacher_cache config, True or None, got {type(cache).__name__}"
    )


class TeacherForward:
    """Runs the frozen teacher (eval mode, no grad) and returns :class:`TeacherOutputs`,
    from the teacher-output cache where it can.

    :param teacher_model: the teacher.
    :param feature_specs: ``(teacher_layer, teacher_process)`` pairs the layer mappings
        need; more are added by :meth:`require` (or by asking for them).
    :param logits: whether the teacher's logits are needed by a stage (output
        distillation): a prefill stores them too. (A call asks for them itself.)
    :param cache: None (no cache), a :class:`~autokd_torch.cache.TeacherOutputCache`, or
        ``train.teacher_cache`` (a ``TeacherCacheConfig`` or its dict).
    :param output_dir: the search's output directory: the cache's files go to
        ``<output_dir>/teacher_cache/`` unless ``train.teacher_cache.directory`` says
        otherwise.

    One ``TeacherForward`` can serve several train functions (e.g. one per trial, when
    the stages depend on the student): pass it as
    ``FlashDistillationTrainFunc(..., teacher_forward=shared)``; it serves the union of
    the features they ask for, and a trial asking for a feature not stored yet fills it.
    A train function calls :meth:`prepare` at the start of each trial (validity checks,
    optional prefill) and :meth:`finish` at its end (the trial's cache record).
    """

    def __init__(
        self,
        teacher_model: nn.Module,
        feature_specs: Iterable[FeatureSpec] = (),
        *,
        logits: bool = False,
        cache: Any = None,
        output_dir: str | os.PathLike | None = None,
    ):
        if teacher_model is None:
            raise AutoKDError("no teacher model: set teacher_model before distilling")
        self.teacher_model = teacher_model
        self.feature_specs: list[FeatureSpec] = []
        self._attention_specs: set[FeatureSpec] = set()
        self.logits = bool(logits)
        self.cache = _make_cache(cache)
        self.output_dir = None if output_dir is None else os.fspath(output_dir)
        # a teacher in training mode when handed over is being trained, not frozen
        self._handed_in_training = bool(teacher_model.training)
        self._off: str | None = None  # why the cache is off for good
        self._run_off: str | None = None  # why it is off for the current run
        self._logged: set[str] = set()
        self._layouts: dict[Any, tuple[int, ...] | None] = {}
        self._weights_hash: str | None = None
        self._weight_versions: tuple | None = None
        self._data: Any = None
        self._collate_fn: Any = None
        self._bound = False
        self._prefilled = 0
        self.hits = 0
        self.misses = 0
        self._run_start = (0, 0)
        self.require(feature_specs)

    # --- what is asked for ----------------------------------------------------------------
    def require(self, feature_specs: Iterable[FeatureSpec] = (), logits: bool = False) -> None:
        """Serve these features too (and the logits, with ``logits=True``)."""
        new = [s for s in dict.fromkeys(feature_specs) if s not in self.feature_specs]
        if new:
            self.feature_specs.extend(new)
            attention = {spec for spec in new if uses_attention_maps(self.teacher_model, [spec[0]])}
            if attention - self._attention_specs:
                use_eager_attention(self.teacher_model, "teacher")
            self._attention_specs |= attention
        self.logits = self.logits or bool(logits)

    def _keys(self) -> list[Any]:
        return list(self.feature_specs) + ([LOGITS] if self.logits else [])

    # --- validity -------------------------------------------------------------------------
    @property
    def cache_enabled(self) -> bool:
        """Whether the cache serves the current run."""
        return (
            self.cache is not None
            and self.cache.enabled
            and self._off is None
            and self._run_off is None
            and self._bound
        )

    @property
    def cache_off_reason(self) -> str | None:
        if self.cache is None:
            return "no teacher-output cache was configured"
        if not self.cache.enabled:
            return "disabled by train.teacher_cache.enabled: false"
        if self._off or self._run_off:
            return self._off or self._run_off
        if not self._bound:
            return "not prepared for a training dataset (TeacherForward.prepare)"
        return None

    def _turn_off(self, reason: str, for_good: bool, warn: bool = False) -> None:
        if for_good:
            self._off = reason
            if self.cache is not None:
                self.cache.clear()
            self._bound = False
            self._data = None
        else:
            self._run_off = reason
        if reason not in self._logged:
            self._logged.add(reason)
            (log.warning if warn else log.info)("teacher cache off: %s", reason)

    def _check_teacher(self) -> None:
        if self._off is not None:
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
        versions = _weight_versions(teacher)
        if self._weights_hash is None:
            self._weights_hash = _teacher_fingerprint(teacher)
        elif versions != self._weight_versions and _teacher_fingerprint(teacher) != self._weights_hash:
            self._turn_off(
                "the teacher's weights changed since its outputs were stored: it is not frozen, so its outputs "
                "cannot be reused",
                for_good=True,
                warn=True,
            )
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
        if _random_collator(collate_fn):
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
        self._run_off = None
        if output_dir is not None:
            self.output_dir = os.fspath(output_dir)
        cache = self.cache
        if cache is None:
            return
        if not cache.enabled:
            self._turn_off("disabled by train.teacher_cache.enabled: false", for_good=False)
            return
        self._check_teacher()
        if self._off is not None:
            return
        reason = self._check_data(train_data, data_collator)
        if reason is not None:
            self._turn_off(reason, for_good=False)
            return
        root = None if self.output_dir is None else os.path.join(self.output_dir, "teacher_cache")
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

    def _prefill(self, data: Any, collate_fn: Any, batch_size: int, show_progress: bool) -> None:
        from tqdm.auto import tqdm

        from .data import by_length, make_dataloader, split_batch, to_device

        keys = self._keys()
        cache = self.cache
        todo = [i for i in range(len(data)) if not all(cache.contains(k, i) for k in keys)]
        if not todo:
            return
        # examples of similar length together: each batch is padded to its longest only
        # (entries are stored per example, trimmed to its length, so order does not matter)
        todo = by_length(data, todo)
        device = next((p.device for p in self.teacher_model.parameters()), torch.device("cpu"))
        subset = torch.utils.data.Subset(data, todo)
        loader = make_dataloader(subset, batch_size, collate_fn=collate_fn, shuffle=False)
        counts = (self.hits, self.misses)
        bar = tqdm(total=len(todo), desc="teacher cache", unit="example", disable=not show_progress, leave=False)
        try:
            for item in loader:
                indices = torch.as_tensor([todo[i] for i in item.indices.tolist()], dtype=torch.long)
                _, teacher_inputs, _ = split_batch(to_device(item.batch, device))
                self(teacher_inputs, indices, self.feature_specs, self.logits)
                bar.update(len(indices))
                if not self.cache_enabled:
                    break
        finally:
            bar.close()
        self.hits, self.misses = counts
        self._prefilled += len(todo)
        cache.flush()
        log.info("teacher cache: prefilled %d examples", len(todo))

    def finish(self) -> dict:
        """End a run: make what is on disk reusable, and return the run's cache record
        (``enabled``, ``hits`` and ``misses`` counted in examples, bytes in memory and on
        disk; ``reason`` when off)."""
        hits, misses = self.hits - self._run_start[0], self.misses - self._run_start[1]
        record: dict[str, Any] = {"enabled": self.cache_enabled, "hits": hits, "misses": misses}
        reason = self.cache_off_reason
        if reason is not None:
            record["reason"] = reason
        if self.cache is not None:
            self.cache.flush()
            record.update(self.cache.stats())
            record["prefilled"] = self._prefilled
        self._prefilled = 0
        return record

    # --- the forward pass -----------------------------------------------------------------
    def __call__(
        self,
        inputs: Any,
        indices: torch.Tensor | None = None,
        features: Iterable[FeatureSpec] | None = None,
        logits: bool | None = None,
    ) -> TeacherOutputs:
        """The teacher's outputs for ``inputs`` (a batch without labels).

        :param indices: the dataset indices of the batch's examples (None when the data
            carries none: then the teacher runs).
        :param features: the specs this step needs (default: all ``feature_specs``); a
            flash stage asks only for its own block's features.
        :param logits: whether the logits are needed (default True).
        """
        specs = list(self.feature_specs) if features is None else list(dict.fromkeys(features))
        self.require(specs)
        want_logits = True if logits is None else bool(logits)
        keys = specs + ([LOGITS] if want_logits else [])
        teacher = self.teacher_model
        if teacher.training:
            teacher.eval()
        positions = token_positions(inputs)
        if positions is not None and not positions.right_padded and self.cache_enabled:
            self._turn_off(
                "the batches are padded on the left (attention_mask): per-token outputs are stored by their "
                "real tokens from the start; pad on the right",
                for_good=False,
            )
        if indices is not None and self.cache_enabled:
            values, layouts = self._cached(inputs, indices, keys, specs, positions)
        else:
            batch = _batch_size(inputs, positions, indices)
            values = self._run(inputs, specs, want_logits)
            layouts = {}
            if positions is not None and positions.padded:
                layouts = self._layouts_for(keys, inputs, positions)
                values = {k: zero_padded(v, positions.mask, layouts.get(k) or ()) for k, v in values.items()}
            self.misses += batch
        padded = positions is not None and positions.padded
        return TeacherOutputs(
            values.get(LOGITS),
            {spec: values[spec] for spec in specs},
            positions.mask if padded else None,
            {k: layouts[k] for k in keys if padded and layouts.get(k)},
        )

    def _run(self, inputs: Any, specs: list[FeatureSpec], want_logits: bool) -> dict[Any, torch.Tensor]:
        """The live teacher: its processed features (and logits) for ``inputs``."""
        kwargs = {"output_attentions": True} if self._attention_specs.intersection(specs) else {}
        teacher = self.teacher_model
        with torch.no_grad(), FeatureCapture(teacher, specs, "teacher", detach=True) as capture:
            outputs = call_model(teacher, inputs, **kwargs)
        missing = capture.missing()
        if missing:
            raise AutoKDError(
                f"the teacher's modules {[layer for layer, _ in missing]} did not run in its forward pass: "
                f"map layers that the forward pass uses"
            )
        values: dict[Any, torch.Tensor] = dict(capture.features)
        if want_logits:
            values[LOGITS] = logits_of(outputs).detach()
        return values

    def _layouts_for(
        self, keys: list[Any], inputs: Any, positions: TokenPositions | None
    ) -> dict[Any, tuple[int, ...] | None]:
        """Each output's per-token dimensions: measured once per output by running the
        teacher on the batch's first example at its padded length ``L`` and at ``L - 1``
        (the dimensions that shrink by one). None: the output's shape follows the
        padded length some other way, or its batch dimension is not first: not cached."""
        unknown = [k for k in keys if k not in self._layouts]
        if not unknown:
            return self._layouts
        if positions is None:
            # inputs other than dicts: stored as they are (their outputs must not depend
            # on how the batch is padded)
            self._layouts.update((k, ()) for k in unknown)
            return self._layouts
        seq_len = positions.seq_len
        if seq_len < 2:  # cannot shorten: decide on a later batch
            return {**self._layouts, **{k: None for k in unknown}}
        specs = [k for k in unknown if k != LOGITS]
        first = slice_rows(inputs, [0], len(positions.lengths))
        try:
            full = self._run(first, specs, LOGITS in unknown)
            short = self._run(shorten(first, seq_len), specs, LOGITS in unknown)
        except Exception as exc:  # a teacher that only takes one length: nothing per-token is cached
            log.info(
                "teacher cache: cannot run the teacher on a shortened example (%s): per-token outputs run live", exc
            )
            full, short = {}, {}
        for key in unknown:
            a = tuple(full[key].shape) if key in full else None
            b = tuple(short[key].shape) if key in short else None
            layout = None
            if a is not None and b is not None and len(a) == len(b) and a[0] == 1 and b[0] == 1:
                changed = tuple(d for d in range(1, len(a)) if a[d] != b[d])
                if all(a[d] == seq_len and b[d] == seq_len - 1 for d in changed):
                    layout = changed
            if layout is None and a is not None:
                log.info(
                    "teacher cache: the teacher's %s has shape %s for %d tokens and %s for %d: it does not follow "
                    "the padded length in a way the cache can store, so it runs live",
                    _key_text(key),
                    a,
                    seq_len,
                    b,
                    seq_len - 1,
                )
            self._layouts[key] = layout
        return self._layouts

    def _cached(
        self,
        inputs: Any,
        indices: torch.Tensor,
        keys: list[Any],
        specs: list[FeatureSpec],
        positions: TokenPositions | None,
    ) -> tuple[dict[Any, torch.Tensor], dict[Any, tuple[int, ...] | None]]:
        cache = self.cache
        idx = [int(i) for i in indices.tolist()]
        batch = len(idx)
        layouts = self._layouts_for(keys, inputs, positions)
        lengths = positions.lengths if positions is not None else None
        stored_keys = [k for k in keys if layouts.get(k) is not None]
        live_keys = [k for k in keys if layouts.get(k) is None]

        rows: dict[Any, list[torch.Tensor | None]] = {}
        for key in stored_keys:
            known = cache.layout(key, layouts[key])
            rows[key] = [cache.get(key, i) for i in idx] if known is not None else [None] * batch

        def usable(key: Any, row: torch.Tensor | None, j: int) -> bool:
            if row is None:
                return False
            dims = layouts[key]
            return not dims or lengths is None or row.shape[dims[0] - 1] == lengths[j]

        need = (
            list(range(batch))
            if live_keys
            else [j for j in range(batch) if not all(usable(k, rows[k][j], j) for k in stored_keys)]
        )
        live: dict[Any, torch.Tensor] = {}
        if need:
            sub = inputs if len(need) == batch else slice_rows(inputs, need, batch)
            live = self._run(sub, specs, LOGITS in keys)
            if positions is not None and positions.padded:
                mask = positions.mask if len(need) == batch else positions.mask[need]
                live = {k: zero_padded(v, mask, layouts.get(k) or ()) for k, v in live.items()}
            for key in stored_keys:
                if key not in cache.meta:
                    cache.describe(key, _KeyMeta(layouts[key], live[key].dtype))
            # example by example, so that what the budget holds are whole examples
            for jj, j in enumerate(need):
                for key in stored_keys:
                    dims = layouts[key]
                    row = live[key][jj]
                    if dims and lengths is not None:
                        row = trim_row(row, dims, lengths[j])
                    stored = cache.put(key, idx[j], row)
                    rows[key][j] = stored if stored is not None else row
        self.hits += batch - len(need)
        self.misses += len(need)

        values: dict[Any, torch.Tensor] = {}
        device = _device_of(inputs, self.teacher_model)
        seq_len = positions.seq_len if positions is not None else None
        ragged = []
        for key in keys:
            if key in live and (key in live_keys or (len(need) == batch and cache.storage_dtype == live[key].dtype)):
                values[key] = live[key]  # the batch's own live outputs: nothing to rebuild
            elif not layouts[key] and len({tuple(r.shape) for r in rows[key]}) > 1:
                ragged.append(key)  # rows stored from batches of other shapes (inputs without a mask)
            else:
                values[key] = repad_rows(rows[key], layouts[key], seq_len, cache.meta[key].out_dtype, device)
        if ragged:
            rerun = self._run(inputs, specs, LOGITS in ragged)
            values.update((key, rerun[key]) for key in ragged)
        return values, layouts
