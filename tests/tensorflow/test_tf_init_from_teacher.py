"""init_from_teacher for TensorFlow BERT students: a student of the teacher's shape
reproduces it, a shallower one copies the selected layers, a narrower one is built
through the width basis with its heads and neurons."""

from __future__ import annotations

import numpy as np
import pytest
from tf_helpers import bert_config, text_data

NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}


def model(tf, seed, **overrides):
    from transformers import TFBertForSequenceClassification

    tf.keras.utils.set_random_seed(seed)
    m = TFBertForSequenceClassification(bert_config(**NO_DROPOUT, **overrides))
    m(m.dummy_inputs, training=False)
    return m


def inputs():
    data = text_data(8)
    return {"input_ids": data["input_ids"], "attention_mask": data["attention_mask"]}


def test_a_student_of_the_teachers_shape_reproduces_it(tf):
    from autokd_tensorflow.init_from_teacher import initialize_from_teacher

    teacher, student = model(tf, 0), model(tf, 1)
    assert not np.allclose(student(inputs()).logits, teacher(inputs()).logits, atol=1e-3)
    report = initialize_from_teacher(student, teacher)
    assert report["width"] == "identity" and report["layers"] == [0, 1] and report["not_initialised"] == []
    np.testing.assert_allclose(student(inputs()).logits, teacher(inputs()).logits, atol=1e-5)
    s_hidden = student(inputs(), output_hidden_states=True).hidden_states
    t_hidden = teacher(inputs(), output_hidden_states=True).hidden_states
    for a, b in zip(s_hidden, t_hidden):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_a_shallower_student_copies_the_uniformly_selected_layer(tf):
    from autokd_tensorflow.init_from_teacher import initialize_from_teacher

    teacher, student = model(tf, 0, num_hidden_layers=4), model(tf, 1, num_hidden_layers=2)
    report = initialize_from_teacher(student, teacher)
    assert report["layers"] == [1, 3]
    for s_layer, t_layer in zip(
        student.bert.encoder.layer, [teacher.bert.encoder.layer[1], teacher.bert.encoder.layer[3]]
    ):
        for a, b in zip(s_layer.weights, t_layer.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("width", ["pca_embeddings", "pca_hidden", "slice"])
def test_a_narrower_student_gets_projected_heads_and_the_top_neurons(tf, width):
    from autokd_tensorflow.init_from_teacher import initialize_from_teacher

    teacher = model(tf, 0)  # hidden 32, 2 heads of 16, 37 neurons
    student = model(tf, 1, hidden_size=16, intermediate_size=20)  # 2 heads of 8
    report = initialize_from_teacher(
        student, teacher, width=width, data=text_data(16) if width == "pca_hidden" else None
    )
    assert report["width"] == width and report["not_initialised"] == []
    assert 0.0 < report["explained_variance"] <= 1.0
    # the 20 kept neurons are the teacher's 20 with the largest weight norm, in order
    t_in = teacher.bert.encoder.layer[0].intermediate.dense
    t_out = teacher.bert.encoder.layer[0].bert_output.dense
    norms = (t_in.kernel.numpy() ** 2).sum(0) + (t_out.kernel.numpy() ** 2).sum(1)
    kept = sorted(np.argsort(-norms, kind="stable")[:20])
    np.testing.assert_allclose(
        student.bert.encoder.layer[0].intermediate.dense.bias.numpy(), t_in.bias.numpy()[kept], atol=1e-7
    )
    logits = student(inputs()).logits.numpy()
    assert np.all(np.isfinite(logits))
