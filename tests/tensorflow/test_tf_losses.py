"""Every loss against its formula worked out by hand in numpy."""

from __future__ import annotations

import numpy as np
import pytest

import autokd
from autokd import ConfigError

RNG = np.random.default_rng(42)
S2 = RNG.normal(size=(4, 5)).astype("float32")  # student logits / 2-D features
T2 = RNG.normal(size=(4, 5)).astype("float32")
S3 = RNG.normal(size=(2, 3, 6)).astype("float32")  # (batch, positions, features)
T3 = RNG.normal(size=(2, 3, 6)).astype("float32")
LABELS = np.array([0, 4, 2, 1], dtype="int32")


def log_softmax(x):
    x = x.astype(np.float64)
    z = x - x.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def softmax(x):
    return np.exp(log_softmax(x))


def test_registry_holds_the_tensorflow_losses():
    names = autokd.registry().losses.names("tensorflow")
    assert {"MSE", "L1", "KL", "CE"} <= set(names)


@pytest.mark.parametrize("s, t", [(S2, T2), (S3, T3)])
def test_intermediate_losses_equal_their_formulas(s, t):
    losses = autokd.registry().losses
    positions = s.size // s.shape[-1]
    expected = {
        "MSE": np.mean((s.astype(np.float64) - t) ** 2),
        "L1": np.mean(np.abs(s.astype(np.float64) - t)),
        "KL": np.sum(softmax(t) * (log_softmax(t) - log_softmax(s))) / positions,
        "CE": -np.sum(softmax(t) * log_softmax(s)) / positions,
    }
    for name, value in expected.items():
        got = float(losses.get(name, "tensorflow")(s, t))
        assert got == pytest.approx(value, rel=1e-5, abs=1e-6), name


def test_kl_of_identical_features_is_zero_and_ce_is_their_entropy():
    losses = autokd.registry().losses
    assert float(losses.get("KL", "tensorflow")(S3, S3)) == pytest.approx(0.0, abs=1e-6)
    entropy = -np.sum(softmax(S3) * log_softmax(S3)) / 6
    assert float(losses.get("CE", "tensorflow")(S3, S3)) == pytest.approx(entropy, rel=1e-5)


def test_a_shape_mismatch_names_both_shapes():
    from autokd_tensorflow.losses import mse

    with pytest.raises(
        ValueError, match=r"MSE loss: the student feature has shape \[4, 5\] and the teacher feature \[4, 6\]"
    ):
        mse(S2, np.zeros((4, 6), "float32"))


@pytest.mark.parametrize("kind", ["CE", "KL", "MSE"])
@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_knowledge_distillation_loss_equals_its_formula(kind, temperature):
    from autokd_tensorflow import KnowledgeDistillationLoss

    loss = KnowledgeDistillationLoss(temperature, ["CE", kind], [0.3, 0.7])
    s, t = S2 / temperature, T2 / temperature
    if kind == "CE":
        distance = np.mean(-np.sum(softmax(t) * log_softmax(s), axis=-1))
    elif kind == "KL":
        distance = np.sum(softmax(t) * (log_softmax(t) - log_softmax(s))) / len(S2)
    else:
        distance = np.mean((s.astype(np.float64) - t) ** 2)
    teacher_student = temperature**2 * distance
    student_targets = -np.mean(log_softmax(S2)[np.arange(4), LABELS])
    assert float(loss.teacher_student_loss_cal(S2, T2)) == pytest.approx(teacher_student, rel=1e-5)
    assert float(loss.student_targets_loss_cal(S2, LABELS)) == pytest.approx(student_targets, rel=1e-5)
    assert float(loss(S2, T2, LABELS)) == pytest.approx(0.3 * student_targets + 0.7 * teacher_student, rel=1e-5)
    # the plain names give the same values as the design's names
    assert float(loss.distillation_loss(S2, T2)) == pytest.approx(teacher_student, rel=1e-5)
    assert float(loss.targets_loss(S2, LABELS)) == pytest.approx(student_targets, rel=1e-5)
    combined = loss.combined_loss(S2, T2, student_targets)
    assert float(combined) == pytest.approx(0.3 * student_targets + 0.7 * teacher_student, rel=1e-5)


def test_loss_cal_uses_the_teacher_outputs_of_teacher_model_forward(tf):
    from autokd_tensorflow import KnowledgeDistillationLoss

    teacher = tf.keras.Sequential([tf.keras.layers.Lambda(lambda x: x * 2.0)])
    loss = KnowledgeDistillationLoss(2.0, ["CE", "MSE"], [0.5, 0.5], teacher_model=teacher)
    np.testing.assert_allclose(loss.teacher_model_forward(T2), 2 * T2, rtol=1e-6)
    assert float(loss.loss_cal(S2, LABELS)) == pytest.approx(float(loss(S2, 2 * T2, LABELS)), rel=1e-6)
    expected = 0.5 * -np.mean(log_softmax(S2)[np.arange(4), LABELS]) + 0.5 * 4 * np.mean((S2 / 2 - T2) ** 2)
    assert float(loss.loss_cal(S2, LABELS)) == pytest.approx(expected, rel=1e-5)
    assert float(loss.total_loss(S2, LABELS)) == pytest.approx(expected, rel=1e-5)


def test_student_targets_mse_against_regression_labels():
    from autokd_tensorflow import KnowledgeDistillationLoss

    logits = S2[:, :1]  # a 1-wide regression head
    targets = np.array([0.5, -1.0, 2.0, 0.0], dtype="float32")
    loss = KnowledgeDistillationLoss(1.0, ["MSE", "MSE"], [1.0, 0.0])
    assert float(loss(logits, T2[:, :1], targets)) == pytest.approx(np.mean((logits[:, 0] - targets) ** 2), rel=1e-5)


def test_a_zero_weight_drops_the_labels_term():
    from autokd_tensorflow import KnowledgeDistillationLoss

    loss = KnowledgeDistillationLoss(2.0, ["CE", "KL"], [0.0, 1.0])
    expected = 4.0 * np.sum(softmax(T2 / 2) * (log_softmax(T2 / 2) - log_softmax(S2 / 2))) / 4
    assert float(loss(S2, T2)) == pytest.approx(expected, rel=1e-5)


def test_labels_are_required_when_their_term_has_weight():
    from autokd_tensorflow import KnowledgeDistillationLoss

    with pytest.raises(ConfigError, match="the student-vs-targets term has weight 0.5 but the batch has no labels"):
        KnowledgeDistillationLoss()(S2, T2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(loss_weights=[0.3, 0.3]),
            r"loss_weights: \[0.3, 0.3\] sum to 0.6; the weights of \[student-vs-targets, student-vs-teacher\] must sum to 1",
        ),
        (
            dict(loss_types=["KL", "CE"]),
            r"loss_types\[0\]: the student-vs-targets loss is 'CE' \(class labels\) or 'MSE' \(regression\), got 'KL'",
        ),
        (dict(loss_types=["CE"]), r"loss_types: output distillation takes 2 loss types"),
        (dict(temperature=0), r"temperature: must be a positive number, got 0"),
    ],
)
def test_bad_knowledge_distillation_settings_are_config_errors(kwargs, message):
    from autokd_tensorflow import KnowledgeDistillationLoss

    with pytest.raises(ConfigError, match=message):
        KnowledgeDistillationLoss(**kwargs)


def test_the_teacher_term_is_any_registered_loss():
    from autokd_tensorflow import KnowledgeDistillationLoss

    loss = KnowledgeDistillationLoss(2.0, ["CE", "L1"], [0.0, 1.0])
    assert float(loss(S2, T2)) == pytest.approx(4.0 * np.mean(np.abs(S2 / 2.0 - T2 / 2.0)), rel=1e-5)
    with pytest.raises(LookupError, match=r"loss_types\[1\]: unknown loss 'Cosine' for framework 'tensorflow'"):
        KnowledgeDistillationLoss(loss_types=["CE", "Cosine"])


def test_intermediate_criterion_weights_each_registered_loss():
    from autokd_tensorflow import IntermediateLayersKnowledgeDistillationLoss

    criterion = IntermediateLayersKnowledgeDistillationLoss(
        [["a", "x"], ["b", "y"]], loss_types=["KL", "L1"], loss_weights=[0.25, 2.0]
    )
    criterion.build([S3, S2], [T3, T2])
    assert criterion.feature_matchers == [None, None]
    expected = 0.25 * np.sum(softmax(T3) * (log_softmax(T3) - log_softmax(S3))) / 6 + 2.0 * np.mean(np.abs(S2 - T2))
    assert float(criterion([S3, S2], [T3, T2])) == pytest.approx(expected, rel=1e-5)


def test_attention_maps_enter_kl_and_ce_as_log_probabilities():
    from autokd_tensorflow import IntermediateLayersKnowledgeDistillationLoss

    p_s, p_t = softmax(S3).astype("float32"), softmax(T3).astype("float32")  # rows of probabilities
    criterion = IntermediateLayersKnowledgeDistillationLoss(
        [["a", "x"], ["b", "y"], ["c", "z"]], loss_types=["KL", "CE", "MSE"], loss_weights=[1.0, 1.0, 1.0]
    )
    criterion.build([p_s] * 3, [p_t] * 3)
    kl = np.sum(p_t * (np.log(p_t) - np.log(p_s))) / 6  # softmax(log p) = p: the maps themselves
    ce = -np.sum(p_t * np.log(p_s)) / 6
    mse = np.mean((p_s.astype(np.float64) - p_t) ** 2)  # MSE compares the maps as they are
    assert float(criterion([p_s] * 3, [p_t] * 3)) == pytest.approx(kl + ce + mse, rel=1e-5)


def test_unknown_loss_type_lists_the_available_ones():
    from autokd_tensorflow import IntermediateLayersKnowledgeDistillationLoss

    with pytest.raises(
        LookupError, match=r"loss_types: unknown loss 'Cosine' for framework 'tensorflow'. Available: CE, KL, L1, MSE"
    ):
        IntermediateLayersKnowledgeDistillationLoss([["a", "b"]], loss_types=["Cosine"])


def test_a_third_party_loss_is_used_by_name():
    import tensorflow as tf

    from autokd_tensorflow import IntermediateLayersKnowledgeDistillationLoss

    class CosinePlugin:
        @autokd.hookimpl
        def register_losses(self, register):
            def cosine_distance(student, teacher):
                s = tf.math.l2_normalize(tf.cast(student, tf.float32), -1)
                t = tf.math.l2_normalize(tf.cast(teacher, tf.float32), -1)
                return tf.reduce_mean(1.0 - tf.reduce_sum(s * t, -1))

            register("CosineDistance", cosine_distance, "tensorflow")

    autokd.plugins.add_plugin(CosinePlugin(), "cosine-test")
    try:
        criterion = IntermediateLayersKnowledgeDistillationLoss(
            [["a", "b"]], loss_types=["CosineDistance"], loss_weights=[1.0]
        )
        criterion.build([S2], [T2])
        cos = np.sum(S2 * T2, -1) / (np.linalg.norm(S2, axis=-1) * np.linalg.norm(T2, axis=-1))
        assert float(criterion([S2], [T2])) == pytest.approx(np.mean(1 - cos), rel=1e-5)
    finally:
        autokd.plugins.remove_plugin("cosine-test")
