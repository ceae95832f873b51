"""The built-in train function: the design's MobileBERT flash + regular config at 2 layers."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from conftest import MaskedLMDataset, bert_config, mobilebert_config, seed_style_config, seeded

import autokd
from autokd_torch import FlashDistillationTrainFunc
from autokd_torch.teacher import TeacherForward, TeacherOutputs

OPTIMIZER = {"Adam": {"learning_rate": 1e-3}}


def pretraining_pair():
    from transformers import BertForPreTraining, MobileBertForPreTraining

    teacher = seeded(lambda: BertForPreTraining(copy.deepcopy(bert_config(attn_implementation="eager"))), 0).eval()
    student = seeded(lambda: MobileBertForPreTraining(copy.deepcopy(mobilebert_config(hidden_size=24))), 1)
    return teacher, student


def snapshot(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def changed(before, model):
    return {name for name, p in model.named_parameters() if not torch.equal(before[name], p.detach())}


def test_the_design_config_runs_flash_stages_block_by_block_then_regular(caplog):
    teacher, student = pretraining_pair()
    config = autokd.load_config(seed_style_config(num_layers=2, flash_steps=2, regular_steps=3))
    train_func = FlashDistillationTrainFunc(
        config, teacher, MaskedLMDataset(32), batch_size=8, optimizer=OPTIMIZER, seed=0, show_progress=False
    )
    distillers = train_func.distillers()
    assert [d.name for d in distillers] == [
        "flash 1/2 mobilebert.encoder.layer.0",
        "flash 2/2 mobilebert.encoder.layer.1",
        "regular 1/1",
    ]
    before = snapshot(student)
    with caplog.at_level(logging.INFO, logger="autokd.torch"):
        assert train_func(student) is student
    started = [r.getMessage().split(":")[0] for r in caplog.records if "steps, training" in r.getMessage()]
    assert started == ["flash 1/2 mobilebert.encoder.layer.0", "flash 2/2 mobilebert.encoder.layer.1", "regular 1/1"]
    assert "regular 1/1: 3 steps, training the whole student" in caplog.text
    moved = changed(before, student)
    assert any(n.startswith("mobilebert.encoder.layer.0.") for n in moved)
    assert any(n.startswith("mobilebert.embeddings.") for n in moved)  # the regular stage trains everything


def test_a_flash_stage_leaves_everything_outside_its_block_unchanged():
    teacher, student = pretraining_pair()
    raw = seed_style_config(num_layers=2, flash_steps=3)
    flash = raw["flash_distillation"]["knowledge_transfer"]
    for key in ("block_names", "layer_mappings_for_knowledge_transfer", "loss_types", "loss_weights", "train_steps"):
        flash[key] = flash[key][1:]  # only the stage of block 1
    del raw["flash_distillation"]["regular_distillation"]
    train_func = FlashDistillationTrainFunc(
        autokd.load_config(raw),
        teacher,
        MaskedLMDataset(32),
        batch_size=8,
        optimizer=OPTIMIZER,
        seed=0,
        show_progress=False,
    )
    before = snapshot(student)
    train_func(student)
    moved = changed(before, student)
    assert moved and all(n.startswith("mobilebert.encoder.layer.1.") for n in moved)
    assert "mobilebert.encoder.layer.1.attention.self.query.weight" in moved  # the KL on attention maps trains it
    assert all(p.requires_grad for p in student.parameters())


def test_the_teacher_is_asked_once_per_step_with_the_examples_dataset_indices():
    teacher, student = pretraining_pair()
    data = MaskedLMDataset(20)
    config = autokd.load_config(seed_style_config(num_layers=2, flash_steps=2, regular_steps=2))
    train_func = FlashDistillationTrainFunc(
        config, teacher, data, batch_size=8, optimizer=OPTIMIZER, seed=3, show_progress=False
    )
    calls = []

    class RecordingTeacher(TeacherForward):
        def __call__(self, inputs, indices=None, features=None, logits=None):
            outputs = super().__call__(inputs, indices, features, logits)
            calls.append((inputs, indices, outputs))
            return outputs

    train_func.teacher = RecordingTeacher(teacher, train_func.teacher.feature_specs)
    assert all(d.teacher is train_func.teacher for d in train_func.distillers())  # one seam for every stage
    train_func(student)

    assert len(calls) == 6  # 2 + 2 flash steps, 2 regular steps
    seen = []
    layer = "bert.encoder.layer.{}."
    stage_features = [
        {(layer.format(0) + "attention.self", "1"), (layer.format(0) + "output", "")},
        {(layer.format(1) + "attention.self", "1"), (layer.format(1) + "output", "")},
        {("cls", "0")},
    ]
    for step, (inputs, indices, outputs) in enumerate(calls):
        assert "labels" not in inputs and "next_sentence_label" not in inputs
        assert torch.equal(inputs["input_ids"], torch.stack([data[i]["input_ids"] for i in indices.tolist()]))
        assert isinstance(outputs, TeacherOutputs)
        assert outputs.logits is None  # every stage distils features only: the logits are not asked for
        # each stage gets the features of its own mappings, processed: the attention map
        # itself, not the attention module's tuple
        assert set(outputs.features) == stage_features[step // 2]
        if step < 2:
            assert outputs.features[("bert.encoder.layer.0.attention.self", "1")].shape == (len(indices), 2, 8, 8)
        seen.extend(indices.tolist())
    # each stage draws 2 batches of 8 from its own stream of the seeded order: the same 16
    # different examples (a stage continued later by a budget sees what it would in one go)
    assert seen[:16] == seen[16:32] == seen[32:48] and len(set(seen[:16])) == 16


def test_a_config_without_stages_is_refused():
    config = autokd.load_config({"search": {"search_space": {"hidden_size": [8]}, "metrics": ["eval_loss"]}})
    with pytest.raises(autokd.AutoKDError, match=r"add e.g. regular_distillation: \{train_steps: \[500\]\}"):
        FlashDistillationTrainFunc(config, torch.nn.Linear(2, 2), [torch.ones(2)])


def test_the_whole_24_block_mobilebert_config_of_the_design_is_expressible():
    config = autokd.load_config(seed_style_config(num_layers=24, flash_steps=500, regular_steps=25000))
    train_func = FlashDistillationTrainFunc(config, torch.nn.Linear(2, 2), MaskedLMDataset(8), show_progress=False)
    distillers = train_func.distillers()
    assert len(distillers) == 25
    assert [d.block_name for d in distillers[:24]] == [f"mobilebert.encoder.layer.{i}" for i in range(24)]
    assert distillers[24].block_name is None and distillers[24].train_steps == 25000
    for i, d in enumerate(distillers[:24]):
        crit = d.criterion
        assert d.train_steps == 500
        assert [
            (m.student_layer, m.student_process, m.teacher_layer, m.teacher_process) for m in crit.layer_mappings
        ] == [
            (f"mobilebert.encoder.layer.{i}.attention.self", "1", f"bert.encoder.layer.{i}.attention.self", "1"),
            (f"mobilebert.encoder.layer.{i}.output", "", f"bert.encoder.layer.{i}.output", ""),
        ]
        assert crit.loss_types == ["KL", "MSE"] and crit.loss_weights == [0.5, 0.5] and not crit.add_origin_loss
    regular = distillers[24].criterion
    assert regular.loss_types == ["KL"] and regular.add_origin_loss
    assert len(train_func.teacher.feature_specs) == 24 * 2 + 1
