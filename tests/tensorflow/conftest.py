"""Shared fixtures of the autokd-tensorflow tests: tiny transformers TF models built from
configs (hidden 32, 2 layers, vocab 99) and a tiny in-memory text-classification set."""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # transformers 4.x TF models are Keras 2 models
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

VOCAB, SEQ_LEN, N_LABELS = 99, 8, 2


def bert_config(**overrides):
    from transformers import BertConfig

    values = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                  vocab_size=VOCAB, max_position_embeddings=64, num_labels=N_LABELS)
    values.update(overrides)
    return BertConfig(**values)


def distilbert_config(**overrides):
    from transformers import DistilBertConfig

    values = dict(dim=32, n_layers=2, n_heads=2, hidden_dim=37, vocab_size=VOCAB,
                  max_position_embeddings=64, num_labels=N_LABELS)
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


@pytest.fixture(scope="session")
def tf():
    import tensorflow

    return tensorflow


@pytest.fixture(scope="session")
def bert_teacher(tf):
    from transformers import TFBertForSequenceClassification

    tf.keras.utils.set_random_seed(0)
    model = TFBertForSequenceClassification(bert_config())
    model(model.dummy_inputs, training=False)
    return model


@pytest.fixture()
def data():
    return text_data()


@pytest.fixture(scope="session", autouse=True)
def _fast_graphs(tf):
    # Grappler's graph rewrites cost seconds on the first call of each traced training
    # step and nothing the tests measure depends on them.
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
