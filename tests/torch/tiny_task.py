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
