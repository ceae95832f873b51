"""Saved Keras students (``output.save``): a ``.keras`` file that ``load_model`` reloads
with the same outputs, and ``save_pretrained`` for a transformers TF model; with
``metrics.json`` and the model card beside them."""

from __future__ import annotations

import json
import os

import numpy as np

import autokd


def search(tmp_path, builder, eval_func, example_inputs=None):
    config = {
        "model": {"name": "keras-tiny", "framework": "tensorflow"},
        "auto_distillation": {
            "search": {
                "search_space": {"units": [4, 8]},
                "search_algorithm": "grid",
                "metrics": ["score"],
                "higher_is_better": [True],
                "max_trials": 2,
            }
        },
    }
    agent = autokd.AutoDistillation(builder, config)
    agent.train_func = lambda model: None
    agent.eval_func = eval_func
    agent.example_inputs = example_inputs
    agent.show_progress = False
    agent.search_loop(tmp_path / "out")
    return agent


def test_keras_student_saved_and_reloaded(tmp_path, tf):
    import tf_keras

    x = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")

    def build(arch):
        tf_keras.utils.set_random_seed(arch["units"])
        model = tf_keras.Sequential([tf_keras.layers.Dense(arch["units"], activation="relu"), tf_keras.layers.Dense(3)])
        model(x)
        return model

    def evaluate(model):
        return {"score": float(np.abs(model(x).numpy()).mean())}

    agent = search(tmp_path, build, evaluate)
    best = tmp_path / "out" / "best"
    assert sorted(os.listdir(best)) == ["README.md", "metrics.json", "model.keras"]
    trained = agent.trained_model(agent.summary()["best_trial"])
    reloaded = tf_keras.models.load_model(best / "model.keras")
    np.testing.assert_allclose(reloaded(x).numpy(), trained(x).numpy(), atol=1e-6)
    info = json.loads((best / "metrics.json").read_text())
    assert info["weights"]["format"] == "keras" and info["weights"]["files"] == ["model.keras"]
    assert info["arch"] == agent.best_model_arch and info["metrics"] == agent.summary()["best_metrics"]
    assert "tf_keras.models.load_model(" in (best / "README.md").read_text()


def test_transformers_tf_student_saved_with_save_pretrained(tmp_path, tf):
    from tf_helpers import bert_config
    from transformers import TFBertForSequenceClassification

    ids = tf.constant([[5, 6, 7, 8], [9, 10, 11, 12]])

    def build(arch):
        tf.keras.utils.set_random_seed(arch["units"])
        model = TFBertForSequenceClassification(bert_config())
        model(model.dummy_inputs, training=False)
        return model

    def evaluate(model):
        return {"score": float(tf.reduce_mean(tf.abs(model(input_ids=ids).logits)))}

    agent = search(tmp_path, build, evaluate)
    best = tmp_path / "out" / "best"
    assert {"config.json", "tf_model.h5"} <= set(os.listdir(best))
    trained = agent.trained_model(agent.summary()["best_trial"])
    reloaded = TFBertForSequenceClassification.from_pretrained(best)
    np.testing.assert_allclose(reloaded(input_ids=ids).logits.numpy(), trained(input_ids=ids).logits.numpy(), atol=1e-5)
    assert json.loads((best / "metrics.json").read_text())["weights"]["format"] == "transformers (TensorFlow)"
