"""Features from transformers TF model outputs, hooked sublayers and named layers of
Keras functional models."""

from __future__ import annotations

import numpy as np
import pytest

from autokd import ConfigError


@pytest.fixture(scope="module")
def batch(tf):
    from tf_helpers import text_data

    return {"input_ids": tf.constant(text_data(4)["input_ids"])}


def test_output_fields_and_hooked_layers_of_a_transformers_model(bert_teacher, batch):
    from autokd_tensorflow import FeatureExtractor

    reference = bert_teacher(batch, training=False, output_hidden_states=True, output_attentions=True)
    specs = [
        ("hidden_states", "2"),
        ("hidden_states.1", ""),
        ("attentions", "1"),
        ("bert.encoder.layer.0", "0"),  # attribute path
        ("bert.encoder.layer_._1", "0"),  # Keras layer name, with its dots
        ("", "logits"),
        ("logits", ""),
    ]
    with FeatureExtractor(bert_teacher, specs, "teacher") as extractor:
        output, features = extractor(batch, training=False)
    expected = [
        reference.hidden_states[2],
        reference.hidden_states[1],
        reference.attentions[1],
        reference.hidden_states[1],
        reference.hidden_states[2],
        reference.logits,
        reference.logits,
    ]
    for spec, got, want in zip(specs, features, expected):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6, err_msg=str(spec))
    assert features[2].shape == (4, 2, 8, 8)


def test_hooks_are_removed_on_close(bert_teacher, batch):
    from autokd_tensorflow import FeatureExtractor

    layer = bert_teacher.bert.encoder.layer[0]
    with FeatureExtractor(bert_teacher, [("bert.encoder.layer.0", "0")]):
        assert "call" in layer.__dict__
    assert "call" not in layer.__dict__
    bert_teacher(batch, training=False)  # still works unhooked


def test_named_layers_of_a_functional_model(tf):
    from autokd_tensorflow import FeatureExtractor

    inputs = tf.keras.Input((6,))
    hidden = tf.keras.layers.Dense(5, activation="relu", name="hidden")(inputs)
    outputs = tf.keras.layers.Dense(3, name="logits_layer")(hidden)
    model = tf.keras.Model(inputs, outputs)
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    with FeatureExtractor(model, [("hidden", ""), ("", ""), ("logits", "")]) as extractor:
        output, (h, whole, logits) = extractor(x)
    np.testing.assert_allclose(h, tf.keras.Model(inputs, hidden)(x), rtol=1e-6)
    np.testing.assert_allclose(whole, model(x), rtol=1e-6)
    np.testing.assert_allclose(logits, output, rtol=1e-6)


def test_an_unknown_layer_names_the_layers_and_output_fields(bert_teacher):
    from autokd_tensorflow import FeatureExtractor

    with pytest.raises(
        ConfigError,
        match=r"layer_mappings_for_knowledge_transfer: student layer 'bert.encoder.layer.7' not found in "
        r"TFBertForSequenceClassification: .*top-level layers: \['bert', 'dropout_\d+', 'classifier'\]",
    ):
        FeatureExtractor(bert_teacher, [("bert.encoder.layer.7", "")], "student")


def test_a_bad_process_says_what_the_output_has(bert_teacher, batch):
    from autokd import AutoKDError
    from autokd_tensorflow import FeatureExtractor

    with FeatureExtractor(bert_teacher, [("hidden_states", "9")]) as extractor:
        with pytest.raises(
            AutoKDError, match=r"output process: process '9' is out of range: the output is a tuple of 3 items"
        ):
            extractor(batch)
