"""A Keras MLP on scikit-learn's digits through the same API: a trained teacher, MLP
students of searched width, output distillation, accuracy on held-out digits."""

from __future__ import annotations

import json
import types

import pytest


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    return train_test_split(x, y.astype("int32"), test_size=0.25, random_state=0, stratify=y)


def mlp(tf, units, name):
    inputs = tf.keras.Input((64,), name=f"{name}_pixels")
    hidden = tf.keras.layers.Dense(units, activation="relu", name=f"{name}_hidden")(inputs)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(10, name=f"{name}_logits")(hidden), name=name)


def test_keras_mlp_students_on_digits(tf, digits, tmp_path):
    from autokd_tensorflow import AutoDistillationConfig, TFDistillationConfig, TFOptimization, metrics

    x_train, x_test, y_train, y_test = digits
    tf.keras.utils.set_random_seed(0)
    teacher = mlp(tf, 128, "teacher")
    teacher.compile(
        optimizer=tf.keras.optimizers.Adam(0.01),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    teacher.fit(x_train, y_train, epochs=8, batch_size=64, verbose=0)
    teacher_accuracy = teacher.evaluate(x_test, y_test, verbose=0)[1]
    assert teacher_accuracy > 0.9

    def model_builder(arch):
        return mlp(tf, arch["units"], f"student_{arch['units']}")

    optimizer = TFOptimization(
        model=teacher,
        args=types.SimpleNamespace(output_dir=str(tmp_path), per_device_train_batch_size=32, learning_rate=0.01),
        train_dataset=(x_train, y_train),
        eval_dataset=(x_test, y_test),
    )
    config = AutoDistillationConfig(
        search_space={"units": [4, 16, 64]},
        search_algorithm="grid",
        max_trials=3,
        metrics=[metrics.Metric("accuracy", greater_is_better=True)],
        knowledge_transfer=TFDistillationConfig(
            train_steps=[120], loss_types=["CE", "KL"], loss_weights=[0.5, 0.5], temperature=2.0
        ),
    )
    best = optimizer.autodistill(config, teacher, model_builder=model_builder)

    with open(tmp_path / "trials.jsonl", encoding="utf-8") as fh:
        trials = [json.loads(line) for line in fh]
    accuracy = {t["arch"]["units"]: t["metrics"]["accuracy"] for t in trials}
    assert sorted(accuracy) == [4, 16, 64]
    assert best == {"units": max(accuracy, key=accuracy.get)}
    # Distilled for 120 steps (about 8 epochs), the wide students come close to the teacher.
    assert accuracy[64] > 0.85 and accuracy[16] > 0.8
    # The eval function's accuracy is the plain share of correct predictions.
    from autokd_tensorflow.evaluation import evaluate

    assert evaluate(teacher, (x_test, y_test))["accuracy"] == pytest.approx(teacher_accuracy, abs=1e-6)
