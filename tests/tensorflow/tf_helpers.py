"""Tiny transformers TF model configs (hidden 32, 2 layers, vocab 99) and a tiny
in-memory text-classification set, shared by the autokd-tensorflow tests."""

from __future__ import annotations

import numpy as np
from autokd_testing import tiny_bert_options

VOCAB, SEQ_LEN, N_LABELS = 99, 8, 2


def bert_config(**overrides):
    from transformers import BertConfig

    values = tiny_bert_options(max_position_embeddings=64, num_labels=N_LABELS)
    values.update(overrides)
    return BertConfig(**values)


def distilbert_config(**overrides):
    from transformers import DistilBertConfig

    values = dict(
        dim=32, n_layers=2, n_heads=2, hidden_dim=37, vocab_size=VOCAB, max_position_embeddings=64, num_labels=N_LABELS
    )
    values.update(overrides)
    return DistilBertConfig(**values)


def text_data(n: int = 32, seed: int = 0) -> dict:
    """Token ids whose label is whether token 7 occurs: learnable by a tiny model."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(10, VOCAB, size=(n, SEQ_LEN)).astype("int32")
    labels = (np.arange(n) % 2).astype("int32")
    ids[labels == 1, rng.integers(0, SEQ_LEN)] = 7
    ids[labels == 0] = np.where(ids[labels == 0] == 7, 8, ids[labels == 0])
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "labels": labels}
