"""The built-in evaluation and the accuracy / eval_loss evaluators."""

from __future__ import annotations

import numpy as np
import pytest

import autokd


@pytest.fixture(scope="module")
def classifier(tf):
    tf.keras.utils.set_random_seed(5)
    inputs = tf.keras.Input((4,))
    return tf.keras.Model(inputs, tf.keras.layers.Dense(3)(inputs))


@pytest.fixture(scope="module")
def eval_arrays():
    rng = np.random.default_rng(3)
    return rng.normal(size=(10, 4)).astype("float32"), rng.integers(0, 3, 10).astype("int32")


def test_evaluate_computes_loss_accuracy_and_compute_metrics(classifier, eval_arrays):
    from autokd_tensorflow import evaluate

    x, y = eval_arrays
    logits = classifier(x).numpy().astype(np.float64)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    seen = {}

    def compute_metrics(prediction):
        seen["shapes"] = prediction.predictions.shape, prediction.label_ids.shape
        return {"f1": 0.25}

    metrics = evaluate(classifier, (x, y), compute_metrics, batch_size=4)
    assert metrics["eval_loss"] == pytest.approx(-np.mean(log_p[np.arange(10), y]), rel=1e-5)
    assert metrics["accuracy"] == metrics["eval_accuracy"] == pytest.approx(np.mean(logits.argmax(-1) == y))
    assert (metrics["f1"], metrics["eval_f1"]) == (0.25, 0.25)
    assert seen["shapes"] == ((10, 3), (10,))  # all batches, concatenated


def test_metrics_the_eval_func_leaves_out_come_from_the_evaluators(classifier, eval_arrays, tmp_path):
    from autokd_tensorflow import evaluate

    x, y = eval_arrays
    agent = autokd.AutoDistillation(
        lambda arch: classifier,
        {
            "model": {"framework": "tensorflow"},
            "auto_distillation": {
                "search": {
                    "search_space": {"units": [1]},
                    "search_algorithm": "grid",
                    "metrics": ["eval_loss", "accuracy"],
                    "max_trials": 1,
                }
            },
        },
    )
    agent.train_func = lambda model: model
    agent.eval_func = lambda model: {"eval_loss": 1.0}
    agent.eval_data = (x, y)
    agent.show_progress = False
    agent.search_loop(tmp_path)
    (record,) = agent.search_result
    assert record.metrics == {"eval_loss": 1.0, "accuracy": evaluate(classifier, (x, y))["accuracy"]}


def test_an_evaluator_without_eval_data_says_how_to_give_it(classifier):
    from autokd_tensorflow.evaluation import accuracy_evaluator

    with pytest.raises(
        autokd.AutoKDError,
        match=r"metric 'accuracy': no evaluation data to compute it on: give "
        r"eval_dataset \(TFOptimization\) or data.eval \(autokd run\)",
    ):
        accuracy_evaluator(classifier, autokd.EvalContext())
