"""Distillation (one run from the distillation YAML) and Scheduler (runs in order)."""

from __future__ import annotations

import copy
import textwrap

import pytest
import torch
from conftest import tiny_bert

import autokd
from autokd_torch import Distillation, IntermediateLayersKnowledgeDistillationLoss, KnowledgeDistillationLoss, Scheduler
from autokd_torch.data import make_dataloader
from autokd_torch.optim import build_optimizer

KD_YAML = """
model:
  name: tiny_bert_distillation
  framework: pytorch
distillation:
  train:
    optimizer:
      SGD:
        learning_rate: 0.1
    criterion:
      KnowledgeDistillationLoss:
        temperature: 2.0
        loss_types: ['CE', 'KL']
        loss_weights: [0.25, 0.75]
    batch_size: 8
    train_steps: 4
"""


def snapshot(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def feature_hooks(model):
    """autokd's feature-capture hooks left on a model (transformers adds hooks of its own)."""
    return [h for m in model.modules() for h in m._forward_hooks.values() if "FeatureCapture" in h.__qualname__]


def changed(before, model):
    return {name for name, p in model.named_parameters() if not torch.equal(before[name], p.detach())}


def test_distillation_from_the_kd_yaml_trains_the_student(tmp_path, token_data):
    path = tmp_path / "kd.yaml"
    path.write_text(KD_YAML)
    train, _ = token_data
    teacher, student = tiny_bert(seed=0), tiny_bert(seed=1)
    initial_student, teacher_before = copy.deepcopy(student), snapshot(teacher)

    distiller = Distillation(str(path))
    distiller.student_model, distiller.teacher_model, distiller.train_dataset = student, teacher, train
    assert distiller.fit() is student

    assert len(distiller.history) == 4
    assert isinstance(distiller.criterion, KnowledgeDistillationLoss)
    assert distiller.criterion.temperature == 2.0
    assert changed(teacher_before, teacher) == set()
    # the first step's loss is the KD formula on the first batch of the seeded loader
    first = next(iter(make_dataloader(train, 8, seed=None))).batch
    inputs = {k: v for k, v in first.items() if k != "labels"}
    with torch.no_grad():
        s = initial_student.train()(**inputs).logits
        t = teacher(**inputs).logits
    hard = torch.nn.functional.cross_entropy(s, first["labels"])
    soft = torch.nn.functional.kl_div(torch.log_softmax(s / 2, -1), torch.softmax(t / 2, -1), reduction="batchmean")
    assert distiller.history[0] == pytest.approx((0.25 * hard + 0.75 * 4 * soft).item(), rel=1e-5)
    assert distiller.history[-1] < distiller.history[0]


FLASH_YAML = """
model:
  name: tiny_bert_flash
  framework: pytorch
distillation:
  train:
    optimizer:
      Adam:
        learning_rate: 0.01
    criterion:
      IntermediateLayersKnowledgeDistillationLoss:
        layer_mappings_for_knowledge_transfer: [
          ['bert.encoder.layer.1.attention.self', '1', 'bert.encoder.layer.1.attention.self', '1'],
          ['bert.encoder.layer.1.output', 'bert.encoder.layer.1.output'],
        ]
        loss_types: ['KL', 'MSE']
        loss_weights: [0.5, 0.5]
        add_origin_loss: False
    batch_size: 8
    train_steps: 3
"""


def test_a_flash_stage_trains_only_its_block(tmp_path, token_data):
    path = tmp_path / "flash.yaml"
    path.write_text(FLASH_YAML)
    teacher, student = tiny_bert(seed=0), tiny_bert(seed=1, hidden_size=16, intermediate_size=20)
    before = snapshot(student)
    distiller = Distillation(str(path))
    distiller.block_name = "bert.encoder.layer.1"
    distiller.student_model, distiller.teacher_model, distiller.train_dataset = student, teacher, token_data[0]
    distiller.fit()

    assert isinstance(distiller.criterion, IntermediateLayersKnowledgeDistillationLoss)
    moved = changed(before, student)
    assert moved and all(name.startswith("bert.encoder.layer.1.") for name in moved)
    # the block's attention and output weights both learned
    assert "bert.encoder.layer.1.attention.self.query.weight" in moved
    assert "bert.encoder.layer.1.output.dense.weight" in moved
    assert all(p.requires_grad for p in student.parameters())  # unfrozen again
    assert not feature_hooks(student)
    # the hidden sizes differ (16 vs 32): the output mapping has a matcher, trained too
    assert list(distiller.criterion.feature_matchers) == ["1"]


def test_the_feature_matcher_reaches_the_optimizer(token_data):
    teacher, student = tiny_bert(seed=0), tiny_bert(seed=1, hidden_size=16, intermediate_size=20)
    criterion = IntermediateLayersKnowledgeDistillationLoss([("bert.pooler", "bert.pooler")], ["MSE"])
    initial = {}
    criterion.matcher_initializer = lambda mapping, linear: initial.setdefault("w", linear.weight.detach().clone())
    distiller = Distillation(criterion=criterion, train_steps=2)
    distiller.optimizer_config = {"SGD": {"learning_rate": 0.5}}
    distiller.student_model, distiller.teacher_model, distiller.train_dataset = student, teacher, token_data[0]
    distiller.fit()
    matcher = criterion.feature_matchers["0"]
    assert matcher.weight.shape == (32, 16)
    assert not torch.equal(initial["w"], matcher.weight.detach())


def test_the_scheduler_runs_distillers_in_order_on_the_same_student(token_data):
    teacher, student = tiny_bert(seed=0), tiny_bert(seed=1)
    order = []

    def make(name, block):
        criterion = IntermediateLayersKnowledgeDistillationLoss([(f"{block}.output", f"{block}.output")])
        distiller = Distillation(criterion=criterion, train_steps=2, block_name=block, name=name)
        distiller.teacher_model, distiller.train_dataset = teacher, token_data[0]
        fit = distiller.fit

        def recording_fit():
            order.append((name, distiller.student_model))
            return fit()

        distiller.fit = recording_fit
        return distiller

    scheduler = Scheduler()
    scheduler.combine(make("flash 1", "bert.encoder.layer.0"), make("flash 2", "bert.encoder.layer.1"))
    before = snapshot(student)
    assert scheduler(student) is student
    assert [name for name, _ in order] == ["flash 1", "flash 2"]
    assert all(model is student for _, model in order)
    moved = changed(before, student)
    assert any(n.startswith("bert.encoder.layer.0.") for n in moved)
    assert any(n.startswith("bert.encoder.layer.1.") for n in moved)
    assert not any(n.startswith(("bert.embeddings", "classifier", "bert.pooler")) for n in moved)


def test_a_user_train_func_replaces_the_loop():
    student = torch.nn.Linear(2, 2)
    distiller = Distillation()
    distiller.student_model = student
    distiller.train_func = lambda model: torch.nn.Sequential(model)
    trained = distiller.fit()
    assert isinstance(trained, torch.nn.Sequential) and trained[0] is student


def test_an_unknown_optimizer_lists_the_supported_ones():
    with pytest.raises(autokd.ConfigError) as err:
        build_optimizer(torch.nn.Linear(2, 2).parameters(), {"Ftrl": {"learning_rate": 0.1}})
    assert str(err.value) == (
        "invalid configuration: train.optimizer: optimizer 'Ftrl' is built only by the tensorflow backend; "
        "the pytorch backend supports SGD, Adam, AdamW, RMSprop, Adagrad, Adadelta, Adamax, Nadam, Adafactor"
    )


def test_an_unknown_optimizer_argument_is_named():
    with pytest.raises(
        autokd.ConfigError,
        match=r"train.optimizer.SGD.betas: unknown argument of SGD; it takes learning_rate, momentum",
    ):
        build_optimizer(torch.nn.Linear(2, 2).parameters(), {"SGD": {"learning_rate": 0.1, "betas": [0.9, 0.99]}})


def test_optimizer_arguments_reach_torch():
    opt = build_optimizer(
        torch.nn.Linear(2, 2).parameters(), {"adamw": {"learning_rate": 0.01, "weight_decay": 0.1, "betas": [0.8, 0.9]}}
    )
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["lr"] == 0.01 and opt.defaults["weight_decay"] == 0.1 and opt.defaults["betas"] == (0.8, 0.9)


def test_a_non_finite_loss_stops_the_run():
    class Exploding(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(2, 2)

        def forward(self, x):
            return self.linear(x) * float("inf")

    data = torch.utils.data.TensorDataset(torch.ones(4, 2), torch.tensor([0, 1, 0, 1]))
    distiller = Distillation(criterion=KnowledgeDistillationLoss(), train_steps=3, name="regular 1/1")
    distiller.student_model, distiller.teacher_model, distiller.train_dataset = Exploding(), torch.nn.Linear(2, 2), data
    with pytest.raises(FloatingPointError, match=r"regular 1/1: the loss is nan at step 1 of 3"):
        distiller.fit()


def test_an_unknown_block_name_names_the_nearest_module(token_data):
    distiller = Distillation(criterion=KnowledgeDistillationLoss(), train_steps=1, block_name="bert.encoder.layer.7")
    distiller.student_model, distiller.teacher_model = tiny_bert(seed=1), tiny_bert(seed=0)
    distiller.train_dataset = token_data[0]
    with pytest.raises(
        autokd.ConfigError,
        match=r"module 'bert.encoder.layer.7' not found in the student .*nearest names: bert.encoder.layer",
    ):
        distiller.fit()


def test_an_unknown_criterion_lists_the_registered_ones(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        textwrap.dedent("""
        distillation:
          train:
            criterion:
              PKDLoss: {}
    """)
    )
    distiller = Distillation(str(path))
    distiller.student_model = torch.nn.Linear(2, 2)
    distiller.train_dataset = [torch.ones(2)]
    with pytest.raises(
        autokd.UnknownNameError,
        match=r"unknown criterion 'PKDLoss' for framework 'pytorch'. Available: "
        r"IntermediateLayersKnowledgeDistillationLoss, KnowledgeDistillationLoss",
    ):
        distiller.fit()
