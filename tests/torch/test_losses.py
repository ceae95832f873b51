"""The loss functions and KnowledgeDistillationLoss against formulas worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import ThirdPartyLossPlugin

import autokd
from autokd_torch import KnowledgeDistillationLoss
from autokd_torch.losses import kl_divergence, l1, mse, soft_cross_entropy

STUDENT = [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]
TEACHER = [[3.0, 2.0, 1.0], [1.0, 0.0, -1.0]]


def softmax(row, t=1.0):
    exps = [math.exp(v / t) for v in row]
    return [e / sum(exps) for e in exps]


def kl_by_hand(student_rows, teacher_rows, t=1.0):
    total = 0.0
    for s, q in zip(student_rows, teacher_rows):
        ps, pt = softmax(s, t), softmax(q, t)
        total += sum(b * math.log(b / a) for a, b in zip(ps, pt))
    return total / len(student_rows)


def ce_by_hand(student_rows, teacher_rows, t=1.0):
    total = 0.0
    for s, q in zip(student_rows, teacher_rows):
        ps, pt = softmax(s, t), softmax(q, t)
        total -= sum(b * math.log(a) for a, b in zip(ps, pt))
    return total / len(student_rows)


def test_kl_and_ce_of_a_two_class_example_by_hand():
    # student uniform, teacher [3/4, 1/4]
    student = torch.zeros(1, 2)
    teacher = torch.tensor([[math.log(3.0), 0.0]])
    assert soft_cross_entropy(student, teacher).item() == pytest.approx(math.log(2.0), abs=1e-6)
    expected_kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # 0.130812
    assert kl_divergence(student, teacher).item() == pytest.approx(expected_kl, abs=1e-6)
    assert expected_kl == pytest.approx(0.130812, abs=1e-6)


def test_losses_match_their_formulas_on_fixed_tensors():
    s, t = torch.tensor(STUDENT), torch.tensor(TEACHER)
    assert kl_divergence(s, t).item() == pytest.approx(kl_by_hand(STUDENT, TEACHER), rel=1e-5)
    assert soft_cross_entropy(s, t).item() == pytest.approx(ce_by_hand(STUDENT, TEACHER), rel=1e-5)
    diffs = [a - b for rs, rt in zip(STUDENT, TEACHER) for a, b in zip(rs, rt)]
    assert mse(s, t).item() == pytest.approx(sum(d * d for d in diffs) / 6, rel=1e-6)  # 26/6
    assert l1(s, t).item() == pytest.approx(sum(abs(d) for d in diffs) / 6, rel=1e-6)  # 10/6


def test_kl_and_ce_average_over_every_position_but_the_last_dimension():
    # the same two rows laid out as (2, 1, 3) and repeated: the average is unchanged
    s = torch.tensor(STUDENT).reshape(2, 1, 3).repeat(1, 4, 1)
    t = torch.tensor(TEACHER).reshape(2, 1, 3).repeat(1, 4, 1)
    assert kl_divergence(s, t).item() == pytest.approx(kl_by_hand(STUDENT, TEACHER), rel=1e-5)
    assert soft_cross_entropy(s, t).item() == pytest.approx(ce_by_hand(STUDENT, TEACHER), rel=1e-5)


def test_losses_reject_features_of_different_shapes():
    with pytest.raises(
        ValueError, match=r"KL loss needs features of the same shape, got student \(2, 3\) and teacher \(2, 4\)"
    ):
        kl_divergence(torch.zeros(2, 3), torch.zeros(2, 4))


@pytest.mark.parametrize("temperature", [1.0, 4.0])
@pytest.mark.parametrize("loss_type", ["CE", "KL", "MSE"])
def test_knowledge_distillation_loss_by_hand(loss_type, temperature):
    s, t = torch.tensor(STUDENT), torch.tensor(TEACHER)
    labels = torch.tensor([2, 0])
    kd = KnowledgeDistillationLoss(temperature, ["CE", loss_type], [0.3, 0.7])
    if loss_type == "KL":
        soft = kl_by_hand(STUDENT, TEACHER, temperature)
    elif loss_type == "CE":
        soft = ce_by_hand(STUDENT, TEACHER, temperature)
    else:
        diffs = [(a - b) / temperature for rs, rt in zip(STUDENT, TEACHER) for a, b in zip(rs, rt)]
        soft = sum(d * d for d in diffs) / 6
    hard = -(math.log(softmax(STUDENT[0])[2]) + math.log(softmax(STUDENT[1])[0])) / 2
    assert kd.teacher_student_loss_cal(s, t).item() == pytest.approx(temperature**2 * soft, rel=1e-5)
    assert kd.student_targets_loss_cal(s, labels).item() == pytest.approx(hard, rel=1e-5)
    kd.teacher_outputs = t
    expected = 0.3 * hard + 0.7 * temperature**2 * soft
    assert kd.loss_cal(s, labels).item() == pytest.approx(expected, rel=1e-5)
    assert kd.loss_cal_sloss(s, t, torch.tensor(hard)).item() == pytest.approx(expected, rel=1e-5)
    # the plain names give the same values as the design's names
    assert kd.distillation_loss(s, t).item() == pytest.approx(temperature**2 * soft, rel=1e-5)
    assert kd.targets_loss(s, labels).item() == pytest.approx(hard, rel=1e-5)
    assert kd.total_loss(s, labels).item() == pytest.approx(expected, rel=1e-5)
    assert kd.combined_loss(s, t, torch.tensor(hard)).item() == pytest.approx(expected, rel=1e-5)


def test_kl_at_temperature_4_of_the_two_class_example():
    # p_t = softmax([ln 3 / 4, 0]) = [0.568235, 0.431765]; 16 * KL(p_t || [0.5, 0.5])
    kd = KnowledgeDistillationLoss(4.0, ["CE", "KL"], [0.0, 1.0])
    value = kd.teacher_student_loss_cal(torch.zeros(1, 2), torch.tensor([[math.log(3.0), 0.0]])).item()
    p = 3**0.25 / (3**0.25 + 1)
    assert p == pytest.approx(0.568235, abs=1e-6)
    assert value == pytest.approx(16 * (p * math.log(2 * p) + (1 - p) * math.log(2 * (1 - p))), rel=1e-5)
    assert value == pytest.approx(0.149458, abs=1e-6)


def test_mse_against_regression_targets():
    kd = KnowledgeDistillationLoss(1.0, ["MSE", "MSE"], [1.0, 0.0])
    logits = torch.tensor([[1.0], [3.0]])
    assert kd.loss_cal(logits, torch.tensor([0.0, 1.0])).item() == pytest.approx((1 + 4) / 2)


def test_teacher_model_forward_runs_the_teacher_in_eval_mode_without_grad():
    teacher = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Dropout(0.9))
    teacher.train()
    kd = KnowledgeDistillationLoss(teacher_model=teacher)
    x = torch.ones(4, 3)
    logits = kd.teacher_model_forward(x)
    assert not teacher.training
    assert not logits.requires_grad
    assert torch.equal(logits, teacher[0](x).detach())
    assert kd.teacher_outputs is logits


def test_weights_that_do_not_sum_to_one_are_refused():
    with pytest.raises(autokd.ConfigError) as err:
        KnowledgeDistillationLoss(loss_weights=[0.5, 0.6])
    assert str(err.value) == (
        "invalid configuration: KnowledgeDistillationLoss.loss_weights: [0.5, 0.6] sum to 1.1; "
        "the weights of [student-vs-targets, student-vs-teacher] must sum to 1, e.g. [0.5, 0.5]"
    )


def test_an_unregistered_loss_type_is_refused_listing_the_registered_ones():
    with pytest.raises(autokd.UnknownNameError) as err:
        KnowledgeDistillationLoss(loss_types=["CE", "Cosine"])
    assert str(err.value).startswith(
        "KnowledgeDistillationLoss.loss_types[1]: unknown loss 'Cosine' for framework 'pytorch'. Available: "
    )
    assert "CE, " in str(err.value) and "KL, " in str(err.value) and "MSE" in str(err.value)


def test_a_student_targets_loss_other_than_ce_or_mse_is_refused():
    with pytest.raises(autokd.ConfigError, match=r"loss_types\[0\]: the student-vs-targets loss is 'CE'"):
        KnowledgeDistillationLoss(loss_types=["KL", "KL"])


def test_missing_labels_with_a_positive_student_weight_is_a_clear_error():
    kd = KnowledgeDistillationLoss()
    kd.teacher_outputs = torch.zeros(2, 3)
    with pytest.raises(autokd.AutoKDError, match=r"set loss_weights: \[0, 1\]"):
        kd.loss_cal(torch.zeros(2, 3), None)


def test_a_loss_registered_by_another_plugin_works_by_name(test_plugin):
    test_plugin(ThirdPartyLossPlugin(), "cosine-plugin")
    kd = KnowledgeDistillationLoss(1.0, ["CE", "ThirdPartyCosine"], [0.0, 1.0])
    s = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    t = torch.tensor([[0.0, 1.0], [2.0, 2.0]])
    # rows: orthogonal (distance 1) and parallel (distance 0)
    assert kd.teacher_student_loss_cal(s, t).item() == pytest.approx(0.5, abs=1e-6)
