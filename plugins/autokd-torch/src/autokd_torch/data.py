"""Batches for the built-in training and evaluation.

Datasets are map-style: examples are dicts of tensors / lists (Hugging Face style:
``input_ids``, ``attention_mask``, ``labels`` ...) collated by a data collator
(``transformers.default_data_collator`` unless one is given), or plain tensors and
``(inputs, labels)`` tuples (collated by ``torch.utils.data.default_collate``) for models
that are called with positional tensors.

:func:`make_dataloader` wraps the dataset so each batch carries the dataset indices of
its examples (:class:`IndexedBatch`): the teacher's outputs are a function of the example,
so the indices are what a teacher-output cache keys on (issue #8).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import attrs
import torch
from torch.utils.data import DataLoader, Dataset

from autokd import AutoKDError
from autokd.distill import find_logits

__all__ = [
    "LABEL_KEYS",
    "IndexedBatch",
    "IndexedDataset",
    "make_dataloader",
    "split_batch",
    "call_model",
    "to_device",
    "logits_of",
    "first_batch",
    "repeat_batches",
    "example_length",
    "by_length",
    "LengthGroupedBatches",
]

# Keys of a Hugging Face batch that hold targets: the teacher is called without them.
LABEL_KEYS = ("labels", "label", "label_ids", "next_sentence_label", "start_positions", "end_positions")


@attrs.frozen
class IndexedBatch:
    """A collated batch and the dataset indices of its examples, in batch order."""

    indices: torch.Tensor
    batch: Any

    def pin_memory(self) -> IndexedBatch:
        """Called by a ``DataLoader(pin_memory=True)``: the batch's tensors in pinned memory."""
        return IndexedBatch(self.indices, _pinned(self.batch))


def _pinned(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.pin_memory()
    if isinstance(obj, Mapping):
        return {k: _pinned(v) for k, v in obj.items()}
    if isinstance(obj, tuple | list):
        return type(obj)(_pinned(v) for v in obj)
    return obj


class IndexedDataset(Dataset):
    """``dataset[i]`` as ``(i, dataset[i])``."""

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, Any]:
        return index, self.dataset[index]


def default_collator_for(example: Any) -> Callable[[list], Any]:
    if isinstance(example, Mapping):
        from transformers import default_data_collator

        return default_data_collator
    return torch.utils.data.default_collate


class _IndexedCollator:
    def __init__(self, collate_fn: Callable[[list], Any] | None):
        self.collate_fn = collate_fn

    def __call__(self, items: list[tuple[int, Any]]) -> IndexedBatch:
        indices = torch.tensor([i for i, _ in items], dtype=torch.long)
        examples = [ex for _, ex in items]
        collate = self.collate_fn or default_collator_for(examples[0])
        return IndexedBatch(indices, collate(examples))


def make_dataloader(
    dataset: Any,
    batch_size: int,
    *,
    collate_fn: Callable[[list], Any] | None = None,
    shuffle: bool = True,
    seed: int | None = None,
    num_workers: int = 0,
    pin_memory: bool = False,
    group_by_length: bool = False,
) -> DataLoader:
    """A loader of :class:`IndexedBatch` over a map-style ``dataset``; shuffling draws from
    its own generator seeded with ``seed`` (never the global RNG); ``num_workers`` and
    ``pin_memory`` as ``DataLoader``'s (pinning only when CUDA is there to copy to);
    ``group_by_length``: batches of similar length (:class:`LengthGroupedBatches`)."""
    if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
        raise AutoKDError(
            f"the dataset must be map-style (len() and [i]), got {type(dataset).__name__}; "
            f"wrap an iterable in a list or pass a DataLoader instead"
        )
    if len(dataset) == 0:
        raise AutoKDError("the dataset is empty")
    generator = torch.Generator()
    generator.manual_seed(0 if seed is None else int(seed))
    batching: dict[str, Any] = {"batch_size": batch_size, "shuffle": shuffle}
    if group_by_length:
        batching = {"batch_sampler": LengthGroupedBatches(dataset, batch_size, generator)}
    return DataLoader(
        IndexedDataset(dataset),
        **batching,
        collate_fn=_IndexedCollator(collate_fn),
        generator=generator,
        num_workers=num_workers,
        pin_memory=bool(pin_memory) and torch.cuda.is_available(),
    )


class LengthGroupedBatches(torch.utils.data.Sampler):
    """``train.group_by_length``: each epoch, batches of examples of similar length (so
    little padding) in a random order. The grouping is transformers' (the
    ``group_by_length`` of its ``Trainer``: a random permutation cut into mega-batches of
    up to 50 batches, each sorted by length); its batches, which it leaves longest first
    within each mega-batch, are then shuffled, so that a short stage (a low rung of a
    multi-fidelity search) does not see only the longest examples."""

    def __init__(self, dataset: Any, batch_size: int, generator: torch.Generator):
        lengths = _lengths(dataset, range(len(dataset)))
        if lengths is None:
            raise AutoKDError(
                "train.group_by_length: the examples have no input_ids or attention_mask to measure their length by; "
                "drop group_by_length, or give dict examples with input_ids"
            )
        self.lengths, self.batch_size, self.generator = lengths, int(batch_size), generator

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        from transformers.trainer_pt_utils import get_length_grouped_indices

        indices = get_length_grouped_indices(self.lengths, self.batch_size, generator=self.generator)
        batches = [indices[i : i + self.batch_size] for i in range(0, len(indices), self.batch_size)]
        for b in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[b]


def unwrap(item: Any) -> tuple[torch.Tensor | None, Any]:
    """``(indices, batch)`` of what a loader yields (indices None for plain loaders)."""
    if isinstance(item, IndexedBatch):
        return item.indices, item.batch
    return None, item


def split_batch(batch: Any) -> tuple[Any, Any, Any]:
    """``(student_inputs, teacher_inputs, targets)`` of a collated batch.

    A dict batch is given whole to the student (a Hugging Face model then computes its
    own loss from ``labels``) and without label keys to the teacher; a ``(inputs,
    labels)`` pair gives ``inputs`` to both; a tensor is the inputs, with no targets.
    """
    if isinstance(batch, Mapping):
        targets = batch.get("labels", batch.get("label"))
        teacher_inputs = {k: v for k, v in batch.items() if k not in LABEL_KEYS}
        return batch, teacher_inputs, targets
    if isinstance(batch, torch.Tensor):
        return batch, batch, None
    if isinstance(batch, tuple | list):
        if len(batch) == 2:
            return batch[0], batch[0], batch[1]
        if len(batch) == 1:
            return batch[0], batch[0], None
        raise AutoKDError(
            f"a tuple batch is (inputs, labels), got {len(batch)} items; "
            f"use a dict batch (keyword arguments of the model) for more inputs"
        )
    raise AutoKDError(
        f"unsupported batch type {type(batch).__name__}: use dicts of tensors, tensors or (inputs, labels)"
    )


def call_model(model: torch.nn.Module, inputs: Any, **kwargs: Any) -> Any:
    """Call ``model`` with a batch's inputs: keyword arguments for a dict, positional for a
    tuple, a single argument otherwise. ``kwargs`` go to Hugging Face models only."""
    if not _is_hf(model):
        kwargs = {}
    if isinstance(inputs, Mapping):
        return model(**inputs, **kwargs)
    if isinstance(inputs, tuple | list):
        return model(*inputs, **kwargs)
    return model(inputs, **kwargs)


def _is_hf(model: Any) -> bool:
    config = getattr(model, "config", None)
    return config is not None and hasattr(config, "output_attentions")


def to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, Mapping):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, tuple | list):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def logits_of(outputs: Any) -> torch.Tensor:
    """The logits of a model's outputs (:func:`autokd.distill.find_logits`: the tensor
    itself, ``logits`` or ``prediction_logits`` of a ``ModelOutput``/dict, or the first
    item of a tuple)."""
    return find_logits(outputs)


def first_batch(loader: Iterable) -> Any:
    for item in loader:
        return unwrap(item)[1]
    raise AutoKDError("the training data yields no batch")


def repeat_batches(loader: Iterable) -> Iterator[Any]:
    """The loader's batches, epoch after epoch (a loader that yields nothing is an error)."""
    while True:
        empty = True
        for item in loader:
            empty = False
            yield item
        if empty:
            raise AutoKDError("the training data yields no batch")


def example_length(example: Any) -> int | None:
    """The number of tokens of a Hugging Face style example (its ``attention_mask`` sum,
    else the length of its ``input_ids``); None when the example has no such key."""
    if not isinstance(example, Mapping):
        return None
    mask = example.get("attention_mask")
    if mask is not None:
        return int(torch.as_tensor(mask).sum())
    ids = example.get("input_ids")
    return None if ids is None else len(ids)


def by_length(dataset: Any, indices: list[int]) -> list[int]:
    """``indices`` ordered by example length, so that batches padded to their longest
    example carry little padding (inference only: the teacher's cache prefill, evaluation).
    Unchanged when the examples have no length."""
    lengths = _lengths(dataset, indices)
    if lengths is None:
        return list(indices)
    return [i for _, i in sorted(zip(lengths, indices))]


def _lengths(dataset: Any, indices: Iterable[int]) -> list[int] | None:
    """The token counts of ``dataset``'s examples at ``indices`` (:func:`example_length`);
    None when any example has no length."""
    lengths = [example_length(dataset[i]) for i in indices]
    return None if any(n is None for n in lengths) else lengths
