"""Import targets of the `autokd run` configs in test_backend.py: a tiny BERT teacher and a
token classification task, as a user's own module would provide them."""

from __future__ import annotations

from conftest import TokenDataset, tiny_bert


def teacher():
    return tiny_bert(seed=0)


def train_data(size=32):
    return TokenDataset(size, seed=1)


def eval_data(size=32):
    return TokenDataset(size // 2, seed=2)


def deep_teacher():
    """A 4-layer tiny BERT: students of 2 or 3 layers pair with teacher layers [1, 3] / [1, 2, 3]."""
    return tiny_bert(seed=0, num_hidden_layers=4, attn_implementation="eager")
