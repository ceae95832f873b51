"""More training text for the same corpus: copies of the training utterances with some of
their words replaced by the teacher's nearest words (TinyBERT's data augmentation, with the
teacher's own input embeddings as the word similarity).

The teacher labels every copy (its outputs are what the student learns), so a copy needs
only to be plausible English, not to keep the utterance's meaning. Replacing words with
their neighbours in the teacher's word-embedding table keeps the sentence's form and topic
and brings words the 1,505 training utterances never use: 10% of the held-out utterances'
tokens and 28% of the general English sentences' are absent from them, and a factorised
student's rows for those tokens get no gradient without such copies.

Candidates are the teacher's whole-word vocabulary entries (alphabetic, one wordpiece)
among the ``COMMON_WORDS`` most frequent English words of ``wordfreq``; a token is replaced
only when it is such a word and a whole word in the utterance (no ``##`` piece before or
after it).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Mapping, Sequence

import torch

__all__ = ["COMMON_WORDS", "NEIGHBOURS", "NearestWordCopies", "nearest_words", "replace_words"]

COMMON_WORDS = 30_000  # how many of wordfreq's most frequent English words may be used
NEIGHBOURS = 12  # a word is replaced by one of its this many nearest words


@functools.cache
def nearest_words(neighbours: int = NEIGHBOURS, common_words: int = COMMON_WORDS) -> dict[int, tuple[int, ...]]:
    """``{token id: ids of its nearest words}`` by cosine of the teacher's input word
    embeddings, over the whole-word tokens of the ``common_words`` most frequent English
    words."""
    try:
        import wordfreq
    except ImportError as exc:  # a dependency of the example; say which package is missing
        from .data import MissingAssetError

        raise MissingAssetError(
            "the example's augmentation draws common English words from the PyPI package wordfreq, which is "
            "not installed: pip install wordfreq"
        ) from exc
    from .task import load_teacher, tokenizer

    vocab = tokenizer().get_vocab()
    ids = sorted({vocab[w] for w in wordfreq.top_n_list("en", common_words) if w.isalpha() and w in vocab})
    table = load_teacher().bert.embeddings.word_embeddings.weight.detach().float()
    words = torch.nn.functional.normalize(table[torch.tensor(ids)], dim=-1)
    similarity = words @ words.T
    similarity.fill_diagonal_(-2.0)  # never a word itself
    nearest = similarity.topk(neighbours, dim=-1).indices.tolist()
    return {ids[row]: tuple(ids[col] for col in cols) for row, cols in enumerate(nearest)}


@functools.cache
def _continuation_ids() -> frozenset[int]:
    from .task import tokenizer

    return frozenset(i for token, i in tokenizer().get_vocab().items() if token.startswith("##"))


def replace_words(
    input_ids: Sequence[int], rate: float, rng: random.Random, neighbours: Mapping[int, Sequence[int]]
) -> list[int]:
    """``input_ids`` (with ``[CLS]`` and ``[SEP]``) with each replaceable word swapped, with
    probability ``rate``, for one of its nearest words drawn by ``rng``."""
    pieces = _continuation_ids()
    ids = list(input_ids)
    out = list(ids)
    for j in range(1, len(ids) - 1):
        whole = ids[j] not in pieces and ids[j + 1] not in pieces
        if whole and ids[j] in neighbours and rng.random() < rate:
            out[j] = rng.choice(neighbours[ids[j]])
    return out


def check_augmentation(copies: int, rate: float) -> None:
    """Refuse a negative number of copies or a replacement chance outside [0, 1]."""
    if copies < 0 or not 0.0 <= rate <= 1.0:
        raise ValueError(f"augmentation: copies must be >= 0 and rate in [0, 1], got {copies=} {rate=}")


class NearestWordCopies(torch.utils.data.Dataset):
    """The examples of ``dataset`` (a ``TokenizedTexts``) followed by ``copies`` altered
    copies of each (``rate``: the chance that a replaceable word is replaced), drawn once
    from ``seed``: the same data on every machine and in every trial, so the teacher-output
    cache serves them all."""

    def __init__(self, dataset, copies: int, rate: float = 0.3, seed: int = 0):
        check_augmentation(copies, rate)
        self.utterances = dataset.utterances
        self.copies, self.rate = copies, rate
        neighbours = nearest_words() if copies else {}
        rng = random.Random(seed)
        self.examples = list(dataset.examples)
        for _ in range(copies):
            for example in dataset.examples:
                ids = replace_words(example["input_ids"].tolist(), rate, rng, neighbours)
                self.examples.append({**example, "input_ids": torch.tensor(ids, dtype=example["input_ids"].dtype)})

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        return self.examples[index]
