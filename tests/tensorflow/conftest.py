"""Shared fixtures of the autokd-tensorflow tests."""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # transformers 4.x TF models are Keras 2 models
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
from tf_helpers import bert_config  # noqa: E402


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


@pytest.fixture(scope="session", autouse=True)
def _fast_graphs(tf):
    # Grappler's graph rewrites cost seconds on the first call of each traced training
    # step and nothing the tests measure depends on them.
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
