"""Both backends give the same numbers for the same losses on the same arrays: the
registered feature losses, KnowledgeDistillationLoss and the intermediate-layer
criterion, computed with autokd-torch and autokd-tensorflow side by side."""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

torch = pytest.importorskip("torch")
pytest.importorskip("tensorflow")
pytest.importorskip("autokd_torch")
pytest.importorskip("autokd_tensorflow")

import autokd  # noqa: E402

RNG = np.random.default_rng(7)


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype("float32")


ARRAYS = {
    "logits 2-D": (RNG.normal(size=(6, 5)), RNG.normal(size=(6, 5))),
    "hidden states 3-D": (RNG.normal(size=(2, 4, 8)), RNG.normal(size=(2, 4, 8))),
    "attention maps 4-D": (softmax(RNG.normal(size=(2, 2, 4, 4))), softmax(RNG.normal(size=(2, 2, 4, 4)))),
}
ARRAYS = {k: (s.astype("float32"), t.astype("float32")) for k, (s, t) in ARRAYS.items()}
LABELS = np.array([0, 4, 2, 1, 3, 3])


def both(value_torch, value_tf):
    return float(value_torch), float(np.asarray(value_tf))


@pytest.mark.parametrize("name", ["MSE", "L1", "KL", "CE"])
@pytest.mark.parametrize("arrays", list(ARRAYS))
def test_registered_losses_match(name, arrays):
    s, t = ARRAYS[arrays]
    losses = autokd.registry().losses
    got_torch, got_tf = both(
        losses.get(name, "pytorch")(torch.from_numpy(s), torch.from_numpy(t)),
        losses.get(name, "tensorflow")(s, t),
    )
    assert got_tf == pytest.approx(got_torch, rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("kind", ["CE", "KL", "MSE"])
@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_knowledge_distillation_loss_matches(kind, temperature):
    s, t = ARRAYS["logits 2-D"]
    criteria = autokd.registry().criteria
    kd_torch = criteria.get("KnowledgeDistillationLoss", "pytorch")(temperature, ["CE", kind], [0.4, 0.6])
    kd_tf = criteria.get("KnowledgeDistillationLoss", "tensorflow")(temperature, ["CE", kind], [0.4, 0.6])
    ts, tt, labels = torch.from_numpy(s), torch.from_numpy(t), torch.from_numpy(LABELS)

    pairs = [
        both(kd_torch.teacher_student_loss_cal(ts, tt), kd_tf.teacher_student_loss_cal(s, t)),
        both(kd_torch.student_targets_loss_cal(ts, labels), kd_tf.student_targets_loss_cal(s, LABELS)),
        both(kd_torch.loss_cal_sloss(ts, tt, torch.tensor(1.5)), kd_tf.loss_cal_sloss(s, t, 1.5)),
    ]
    kd_torch.teacher_outputs = tt
    kd_tf.teacher_outputs = t
    pairs.append(both(kd_torch.loss_cal(ts, labels), kd_tf.loss_cal(s, LABELS)))
    for got_torch, got_tf in pairs:
        assert got_tf == pytest.approx(got_torch, rel=1e-5, abs=1e-7)


def test_student_targets_mse_matches_for_regression():
    s, t = ARRAYS["logits 2-D"]
    s, t = s[:, :1], t[:, :1]
    targets = RNG.normal(size=6).astype("float32")
    criteria = autokd.registry().criteria
    kd_torch = criteria.get("KnowledgeDistillationLoss", "pytorch")(2.0, ["MSE", "MSE"], [0.5, 0.5])
    kd_tf = criteria.get("KnowledgeDistillationLoss", "tensorflow")(2.0, ["MSE", "MSE"], [0.5, 0.5])
    kd_torch.teacher_outputs = torch.from_numpy(t)
    kd_tf.teacher_outputs = t
    got_torch, got_tf = both(
        kd_torch.loss_cal(torch.from_numpy(s), torch.from_numpy(targets)), kd_tf.loss_cal(s, targets)
    )
    assert got_tf == pytest.approx(got_torch, rel=1e-5)


def test_intermediate_layers_criterion_matches_on_the_same_features():
    names = ["attention maps 4-D", "attention maps 4-D", "hidden states 3-D", "hidden states 3-D"]
    loss_types = ["KL", "CE", "MSE", "L1"]
    weights = [0.5, 0.25, 1.0, 2.0]
    mappings = [(f"s{i}", "", f"t{i}", "") for i in range(4)]
    criteria = autokd.registry().criteria
    il_torch = criteria.get("IntermediateLayersKnowledgeDistillationLoss", "pytorch")(mappings, loss_types, weights)
    il_tf = criteria.get("IntermediateLayersKnowledgeDistillationLoss", "tensorflow")(mappings, loss_types, weights)
    student = [ARRAYS[n][0] for n in names]
    teacher = [ARRAYS[n][1] for n in names]
    il_torch.student_features = {(m[0], m[1]): torch.from_numpy(x) for m, x in zip(mappings, student)}
    il_torch.teacher_features = {(m[2], m[3]): torch.from_numpy(x) for m, x in zip(mappings, teacher)}
    got_torch, got_tf = both(il_torch.loss_cal(), il_tf.loss_cal(student, teacher))
    assert got_tf == pytest.approx(got_torch, rel=1e-5)
