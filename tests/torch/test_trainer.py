"""Trainer.autodistillation end to end: the design's OOB and advanced modes on tiny BERT and
MobileBERT models built from configs, a search of 3 trials each, results file checked."""

from __future__ import annotations

import copy
import json

import numpy as np
import torch
from autokd_testing import design_stages
from conftest import TokenDataset, bert_config, mobilebert_config, seeded, tiny_bert

import autokd
from autokd_torch import Distillation, KnowledgeDistillationLoss, Trainer


def training_args(tmp_path, **overrides):
    from transformers import TrainingArguments

    options = dict(
        output_dir=str(tmp_path / "search"),
        per_device_train_batch_size=8,
        per_device_eval_batch_size=16,
        learning_rate=1e-3,
        report_to=[],
        disable_tqdm=True,
        use_cpu=True,
        seed=7,
    )
    options.update(overrides)
    return TrainingArguments(**options)


def compute_metrics(prediction):
    return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}


given = []  # what recording_compute_metrics returned, call by call


def recording_compute_metrics(prediction):
    metrics = compute_metrics(prediction)
    given.append(metrics["accuracy"])
    return metrics


def read_trials(path):
    with open(path) as fh:
        return [json.loads(line) for line in fh]


def mobilebert_student():
    from transformers import MobileBertForSequenceClassification

    return seeded(lambda: MobileBertForSequenceClassification(copy.deepcopy(mobilebert_config())), 1)


def oob_config(num_layers=2):
    return {
        "search": {
            "search_space": {"intra_bottleneck_size": [8, 16], "intermediate_size": [16, 24]},
            "search_algorithm": "grid",
            "metrics": ["accuracy", "eval_loss"],
            "higher_is_better": [True, False],
            "max_trials": 3,
            "seed": 42,
        },
        "flash_distillation": design_stages(
            num_layers, flash_steps=2, regular_steps=3, regular_mapping=("classifier", "classifier"), loss_weights=False
        ),
    }


def test_oob_mode_searches_mobilebert_students_of_a_bert_teacher(tmp_path):
    teacher = tiny_bert(seed=0)
    trainer = Trainer(
        model=mobilebert_student(),
        args=training_args(tmp_path),
        train_dataset=TokenDataset(32, seed=1),
        eval_dataset=TokenDataset(16, seed=2),
        compute_metrics=recording_compute_metrics,
    )
    given.clear()
    trainer.autodistillation_config = oob_config()
    best = trainer.autodistillation(teacher)

    trials = read_trials(tmp_path / "search" / "trials.jsonl")
    assert [t["arch"] for t in trials] == [
        {"intra_bottleneck_size": 8, "intermediate_size": 16},
        {"intra_bottleneck_size": 8, "intermediate_size": 24},
        {"intra_bottleneck_size": 16, "intermediate_size": 16},
    ]
    assert [t["status"] for t in trials] == ["ok", "ok", "ok"]
    for t in trials:
        assert 0.0 <= t["metrics"]["accuracy"] <= 1.0 and np.isfinite(t["metrics"]["eval_loss"])
        assert t["extras"]["builder"]["model_cls"] == "MobileBertForSequenceClassification"
        assert t["extras"]["builder"]["attn_implementation"] == "eager"
        assert [s["name"] for s in t["extras"]["stages"]] == [
            "flash 1/2 mobilebert.encoder.layer.0",
            "flash 2/2 mobilebert.encoder.layer.1",
            "regular 1/1",
        ]
        assert [s["steps"] for s in t["extras"]["stages"]] == [2, 2, 3]
    agent = trainer.autodistillation_agent
    assert best == agent.best_model_arch and best in [t["arch"] for t in trials]
    # the documented rule: best accuracy, ties broken by the lower eval_loss
    ranked = sorted(trials, key=lambda t: (-t["metrics"]["accuracy"], t["metrics"]["eval_loss"], t["trial"]))
    assert best == ranked[0]["arch"]
    summary = json.loads((tmp_path / "search" / "summary.json").read_text())
    assert summary["trials"] == 3 and summary["best_model_arch"] == best
    # the accuracy of each trial is the one the Trainer's compute_metrics gave for its student
    assert [t["metrics"]["accuracy"] for t in trials] == given[: len(trials)]
    assert agent.example_inputs["input_ids"].shape == (8, 8) and "labels" not in agent.example_inputs


def test_oob_mode_with_bert_students_and_output_distillation(tmp_path):
    teacher = tiny_bert(seed=0)
    trainer = Trainer(
        model=tiny_bert(seed=1, hidden_size=16, intermediate_size=20),
        args=training_args(tmp_path),
        train_dataset=TokenDataset(32, seed=1),
        eval_dataset=TokenDataset(16, seed=2),
    )
    trainer.autodistillation_config = {
        "search": {
            "search_space": {"hidden_size": [8, 16], "num_hidden_layers": [1, 2]},
            "search_algorithm": "random",
            "metrics": ["eval_accuracy"],
            "max_trials": 3,
            "seed": 3,
        },
        "flash_distillation": {
            "regular_distillation": {
                "loss_types": [["CE", "KL"]],
                "loss_weights": [[0.5, 0.5]],
                "train_steps": [2],
                "temperature": 2.0,
            }
        },
    }
    trainer.autodistillation(teacher)
    trials = read_trials(tmp_path / "search" / "trials.jsonl")
    assert len(trials) == 3 and len({json.dumps(t["arch"], sort_keys=True) for t in trials}) == 3
    for t in trials:
        # no compute_metrics: the built-in accuracy answers the config's eval_accuracy
        assert t["metrics"]["eval_accuracy"] == t["metrics"]["accuracy"]
        assert t["extras"]["builder"]["model_cls"] == "BertForSequenceClassification"
        assert t["extras"]["builder"]["arch_params"] == t["arch"]
        assert t["extras"]["builder"]["attn_implementation"] == "sdpa"  # no attention maps distilled


def test_advanced_mode_uses_the_users_functions(tmp_path):
    teacher = tiny_bert(seed=0)
    train_data, eval_data = TokenDataset(32, seed=1), TokenDataset(16, seed=2)
    built, returned = [], []

    def model_builder(model_arch_paras):
        from transformers import BertForSequenceClassification

        config = bert_config(
            hidden_size=model_arch_paras["hidden_size"], intermediate_size=model_arch_paras["intermediate_size"]
        )
        model = seeded(lambda: BertForSequenceClassification(config), 0)
        built.append(dict(model_arch_paras))
        return model

    def train_func(model):
        distiller = Distillation(criterion=KnowledgeDistillationLoss(2.0, ["CE", "KL"], [0.5, 0.5]), train_steps=2)
        distiller.optimizer_config = {"SGD": {"learning_rate": 0.05}}
        distiller.student_model, distiller.teacher_model, distiller.train_dataset = model, teacher, train_data
        distiller.show_progress = False
        return distiller.fit()

    def eval_func(model):
        from autokd_torch.evaluate import evaluate

        metrics = evaluate(model, eval_data)
        metrics["params"] = sum(p.numel() for p in model.parameters())
        returned.append(metrics)
        return metrics

    trainer = Trainer(
        model=tiny_bert(seed=1), args=training_args(tmp_path), train_dataset=train_data, eval_dataset=eval_data
    )
    trainer.autodistillation_config = {
        "search": {
            "search_space": {"hidden_size": [8, 16], "intermediate_size": [12]},
            "search_algorithm": "grid",
            "metrics": ["accuracy", "params"],
            "higher_is_better": [True, False],
            "max_trials": 3,
        }
    }
    best = trainer.autodistillation(teacher, model_builder, train_func=train_func, eval_func=eval_func)
    trials = read_trials(tmp_path / "search" / "trials.jsonl")
    # the grid has 2 points: the search stops when the space is exhausted
    assert (
        [t["arch"] for t in trials]
        == built
        == [{"hidden_size": 8, "intermediate_size": 12}, {"hidden_size": 16, "intermediate_size": 12}]
    )
    # then, for the saved student's card, the same eval function measures the teacher
    assert [t["metrics"] for t in trials] == returned[:-1]
    assert returned[-1]["params"] == sum(p.numel() for p in teacher.parameters())
    card_teacher = json.loads((tmp_path / "search" / "best" / "metrics.json").read_text())["teacher_metrics"]
    assert card_teacher == returned[-1]
    assert trials[0]["metrics"]["params"] < trials[1]["metrics"]["params"]
    assert best in built

    # accuracy up, params down: the front is every trial no other one dominates
    def dominates(a, b):
        (acc_a, p_a), (acc_b, p_b) = ((t["metrics"]["accuracy"], t["metrics"]["params"]) for t in (a, b))
        return acc_a >= acc_b and p_a <= p_b and (acc_a, p_a) != (acc_b, p_b)

    expected = {t["trial"] for t in trials if not any(dominates(u, t) for u in trials)}
    assert {f.trial for f in trainer.autodistillation_agent.pareto_front} == expected


class ExampleInputsEvaluatorPlugin:
    """A hardware-style evaluator: what it measures needs the search's example inputs."""

    seen = []

    @autokd.hookimpl
    def register_evaluators(self, register):
        def tokens_per_batch(model, context):
            self.seen.append(context.example_inputs)
            with torch.no_grad():
                model(**context.example_inputs)
            return float(context.example_inputs["input_ids"].numel())

        register("tokens_per_batch", tokens_per_batch, "pytorch", higher_is_better=False)


def test_registered_evaluators_get_example_inputs_and_eval_data(tmp_path, test_plugin):
    plugin = ExampleInputsEvaluatorPlugin()
    test_plugin(plugin, "tokens-evaluator")
    teacher = tiny_bert(seed=0)
    trainer = Trainer(
        model=tiny_bert(seed=1),
        args=training_args(tmp_path),
        train_dataset=TokenDataset(16, seed=1),
        eval_dataset=TokenDataset(8, seed=2),
    )
    trainer.autodistillation_config = {
        "search": {
            "search_space": {"hidden_size": [8]},
            "search_algorithm": "grid",
            "metrics": ["eval_loss", "tokens_per_batch"],
            "max_trials": 1,
        },
        "flash_distillation": {"regular_distillation": {"train_steps": [1]}},
    }
    trainer.autodistillation(teacher)
    trials = read_trials(tmp_path / "search" / "trials.jsonl")
    assert trials[0]["metrics"]["tokens_per_batch"] == 64.0  # 8 examples x 8 tokens
    assert set(plugin.seen[0]) == {"input_ids", "attention_mask"}
