"""Flash then regular distillation: feature matchers trained, only the stage's block
trained, the regular stage continuing from the flash-distilled student, each stage a
tf.function training step."""

from __future__ import annotations

import numpy as np
import pytest
from tf_helpers import bert_config, text_data

from autokd import ConfigError, LayerMapping, Stage

NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


@pytest.fixture()
def student(tf):
    from transformers import TFBertForSequenceClassification

    tf.keras.utils.set_random_seed(1)
    model = TFBertForSequenceClassification(bert_config(hidden_size=16, intermediate_size=20, **NO_DROPOUT))
    model(model.dummy_inputs, training=False)
    return model


@pytest.fixture(scope="module")
def teacher(tf):
    from transformers import TFBertForSequenceClassification

    tf.keras.utils.set_random_seed(0)
    model = TFBertForSequenceClassification(bert_config(**NO_DROPOUT))
    model(model.dummy_inputs, training=False)
    return model


def snapshot(model):
    return {w.name: w.numpy().copy() for w in model.weights}


def flash_stage(block="bert.encoder.layer.0", steps=4):
    return Stage(block, (LayerMapping("hidden_states", "1", "hidden_states", "1"),), ("MSE",), (1.0,), False, steps)


def test_feature_matcher_is_made_for_mismatched_sizes_and_trained(student, teacher):
    from autokd_tensorflow import Distiller

    distiller = Distiller(
        student, teacher, flash_stage(None, 6), text_data(), {"Adam": {"learning_rate": 0.01}}, batch_size=8
    )
    result = distiller()
    (matcher,) = distiller.criterion.feature_matchers
    assert matcher.kernel.shape == (16, 32)  # student hidden 16 -> teacher hidden 32
    # The matcher's variables are trained with the student: trained = student + kernel + bias.
    assert result.trained_variables == len(student.trainable_variables) + 2
    assert result.losses[-1] < result.losses[0]
    assert result.traces == 1  # one tf.function trace, six steps


def test_only_the_stage_block_is_trained(student, teacher):
    from autokd_tensorflow import Distiller

    before = snapshot(student)
    result = Distiller(student, teacher, flash_stage(), text_data(), {"SGD": {"learning_rate": 0.1}}, batch_size=8)()
    after = snapshot(student)
    changed = {name for name in before if not np.array_equal(before[name], after[name])}
    in_block = {name for name in before if "/encoder/layer_._0/" in name}
    assert changed and changed <= in_block
    # Everything of layer 0 that its output depends on moved.
    assert {n for n in in_block if "kernel" in n} <= changed
    assert result.weights_before != result.weights_after


def test_a_block_the_features_do_not_depend_on_is_an_error(student, teacher):
    from autokd_tensorflow import Distiller

    with pytest.raises(
        ConfigError,
        match=r"flash\[0\]: no trained variable affects this stage's loss: the features it "
        r"distils do not depend on block 'bert.encoder.layer.1'",
    ):
        Distiller(
            student, teacher, flash_stage("bert.encoder.layer.1", 1), text_data(), batch_size=8, name="flash[0]"
        )()


def test_an_unknown_block_is_an_error(student, teacher):
    from autokd_tensorflow import Distiller

    with pytest.raises(
        ConfigError, match=r"flash\[0\].block_names: block 'bert.encoder.layer.5' not found in the student"
    ):
        Distiller(
            student, teacher, flash_stage("bert.encoder.layer.5", 1), text_data(), batch_size=8, name="flash[0]"
        )()


def test_regular_stage_continues_from_the_flash_distilled_student(student, teacher):
    from autokd_tensorflow import distill

    regular = Stage(None, (), ("CE", "KL"), (0.5, 0.5), False, 3, 2.0)
    flash_result, regular_result = distill(
        student, teacher, [flash_stage(steps=3)], [regular], text_data(), batch_size=8
    )
    assert regular_result.weights_before == flash_result.weights_after
    assert regular_result.weights_after != regular_result.weights_before
    assert (flash_result.traces, regular_result.traces) == (1, 1)


def test_the_stage_loss_is_the_criterion_on_both_models_logits(student, teacher, tf):
    from autokd_tensorflow import Distiller, KnowledgeDistillationLoss

    data = text_data(8)
    inputs = {"input_ids": data["input_ids"], "attention_mask": data["attention_mask"]}
    stage = Stage(None, (), ("CE", "KL"), (0.25, 0.75), False, 1, 3.0)
    expected = KnowledgeDistillationLoss(3.0, ["CE", "KL"], [0.25, 0.75])(
        student(inputs, training=False).logits, teacher(inputs, training=False).logits, data["labels"]
    )
    result = Distiller(student, teacher, stage, data, batch_size=8)()
    assert result.losses[0] == pytest.approx(float(expected), rel=1e-5)


def test_a_keras_functional_student_distils_a_named_layer_with_a_matcher(tf):
    from autokd_tensorflow import Distiller

    def mlp(width, prefix):
        inputs = tf.keras.Input((6,))
        hidden = tf.keras.layers.Dense(width, activation="relu", name=f"{prefix}_hidden")(inputs)
        return tf.keras.Model(inputs, tf.keras.layers.Dense(3, name=f"{prefix}_out")(hidden))

    tf.keras.utils.set_random_seed(3)
    teacher, student = mlp(12, "t"), mlp(4, "s")
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(32, 6)).astype("float32"), rng.integers(0, 3, 32).astype("int32"))
    stage = Stage("s_hidden", (LayerMapping("s_hidden", "", "t_hidden", ""),), ("MSE",), (1.0,), False, 20)
    out_kernel = student.get_layer("s_out").kernel.numpy().copy()
    distiller = Distiller(student, teacher, stage, data, {"Adam": {"learning_rate": 0.05}}, batch_size=8)
    result = distiller()
    assert distiller.criterion.feature_matchers[0].kernel.shape == (4, 12)
    assert np.array_equal(student.get_layer("s_out").kernel.numpy(), out_kernel)
    assert result.losses[-1] < result.losses[0]


def test_a_keras_3_model_is_refused_with_the_fix(tf):
    keras3 = pytest.importorskip("keras")
    if int(keras3.__version__.split(".")[0]) < 3:
        pytest.skip("keras is Keras 2 here")
    from autokd import AutoKDError
    from autokd_tensorflow import Distiller

    model = keras3.Sequential([keras3.Input((3,)), keras3.layers.Dense(2)])
    stage = Stage(None, (), ("CE", "KL"), (0.5, 0.5), False, 1)
    with pytest.raises(
        AutoKDError,
        match=r"the student is a Keras 3 model \(Sequential\); autokd-tensorflow trains Keras 2 "
        r"\(tf-keras\) models: set TF_USE_LEGACY_KERAS=1 before importing tensorflow",
    ):
        Distiller(model, model, stage, (np.zeros((4, 3), "float32"), np.zeros(4, "int32")))
