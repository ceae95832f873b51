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

When the cache serves a run, and why not, is :mod:`autokd_torch.cache_policy`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import torch
from torch import nn

from autokd import AutoKDError
from autokd.distill import token_dims

from .cache import LOGITS, KeyMeta, torch_dtype
from .cache_policy import CachePolicy
from .data import call_model, logits_of
from .features import FeatureCapture, FeatureSpec, spec_text, uses_attention_maps
from .hf_attention import use_eager_attention
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


def _key_text(key: Any) -> str:
    return LOGITS if key == LOGITS else spec_text(key)


def _device_of(inputs: Any, model: nn.Module) -> torch.device:
    if isinstance(inputs, torch.Tensor):
        return inputs.device
    values = inputs.values() if isinstance(inputs, Mapping) else inputs if isinstance(inputs, tuple | list) else ()
    for value in values:
        if isinstance(value, torch.Tensor):
            return value.device
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _to(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch rebuilt from cache entries, moved to ``device`` without blocking (from
    pinned memory to a CUDA device)."""
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


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


class TeacherForward(CachePolicy):
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
        output_dir: Any = None,
        write_files: bool = True,
    ):
        if teacher_model is None:
            raise AutoKDError("no teacher model: set teacher_model before distilling")
        self.teacher_model = teacher_model
        self.feature_specs: list[FeatureSpec] = []
        self._attention_specs: set[FeatureSpec] = set()
        self.logits = bool(logits)
        self._layouts: dict[Any, tuple[int, ...] | None] = {}
        self._init_policy(teacher_model, cache, output_dir, write_files)
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

    def place(self, device: torch.device) -> None:
        """Put the teacher on ``device`` (the student's); cache entries stay in host
        memory, pinned for a CUDA device."""
        device = torch.device(device)
        if next((p.device for p in self.teacher_model.parameters()), device) != device:
            self.teacher_model.to(device)
        if self.cache is not None:
            self.cache.pin_memory = device.type == "cuda"

    def _keys(self) -> list[Any]:
        return list(self.feature_specs) + ([LOGITS] if self.logits else [])

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
            if a is not None and b is not None and a[:1] == (1,):
                layout = token_dims(a, b, seq_len)  # the core's rule, shared with TensorFlow
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
                    cache.describe(key, KeyMeta(layouts[key], str(live[key].dtype)))
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
                values[key] = _to(
                    repad_rows(rows[key], layouts[key], seq_len, torch_dtype(cache.meta[key].out_dtype)), device
                )
        if ragged:
            rerun = self._run(inputs, specs, LOGITS in ragged)
            values.update((key, rerun[key]) for key in ragged)
        return values, layouts
